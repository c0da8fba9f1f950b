"""The pack pipeline: reference photos in; a LoRA, disclosed and scored headshots, report.json and index.html out.

references (original bytes) -> training permission (their own credentials) -> scoring's reference check
-> identity (a trained LoRA, IP-Adapter FaceID on the ArcFace embedding, or both: generation/faceid.py)
-> render N per style and disclose every image -> score the disclosed files -> top k -> report + contact
sheet. The service runs the three parts as separate stages (train, render, score).
"""

import datetime as dt
import html
import io
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from generation.faceid import (
    IdentityError,
    IdentityMethod,
    face_encoder,
    identity_generator,
    likeness_backend,
    likeness_note,
)
from generation.permissions import training_permission
from generation.presets import StylePreset
from generation.training import (
    LikenessCheck,
    TrainingConfig,
    TrainingError,
    TrainingProgress,
    smoothed,
    train_identity_lora,
)
from provenance.files import write_atomically
from provenance.watermark import MIN_SIDE as WATERMARK_MIN_SIDE

UNWATERMARKED = f"images under {WATERMARK_MIN_SIDE} px are too small to carry one"
CONTACT_SHEET_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(220px, 1fr)); gap: 1rem; }
figure { margin: 0; border: 2px solid #ccc; padding: .5rem; }
figure.kept { border-color: #2a7; }
figure img { width: 100%; image-rendering: auto; }
figcaption { font-size: .85rem; }
"""  # index.html's one style block (the service serves it under a policy allowing exactly this block)
TINY_MODEL_NOTE = (
    "These images come from a tiny random test model: they are noise, not headshots, and their likeness and "
    "checks say nothing about a real pack."
)


class PackError(ValueError):
    """The pack cannot be made from these inputs; the message says why and what to do."""


@dataclass(frozen=True)
class ReferenceInput:
    name: str
    data: bytes  # the photo's bytes (as uploaded, or a stored copy with its location removed)
    licence_note: str | None = None
    original_sha256: str | None = None  # the photo's identity; default: the SHA-256 of `data`

    @property
    def sha256(self) -> str:
        return self.original_sha256 or _sha256(self.data)


@dataclass(frozen=True)
class PackSettings:
    styles: Sequence[StylePreset]
    count: int = 4
    inference_steps: int = 30
    size: int = 1024
    seed: int = 0
    top_k: int = 10
    training: TrainingConfig = field(default_factory=TrainingConfig)
    identity: IdentityMethod = field(default_factory=IdentityMethod)


@dataclass
class Provenance:
    """What disclosure needs, composed by the caller (service/CLI): signing identity, registry, trust, limits."""

    signing_identity: object
    registry: object
    trust: object
    limits: object


def accept_references(references: Sequence[ReferenceInput], provenance: Provenance, backend):
    """Check each photo's training permission, then scoring's reference checks. Returns (identity, decisions)."""
    from provenance import ImageInputError, verify_image
    from provenance.images import decode_image
    from scoring.score import ScoringError, build_identity

    decisions, usable = [], []
    for reference in references:
        decision = {"name": reference.name, "sha256": reference.sha256}
        try:
            credentials = verify_image(reference.data, provenance.trust, provenance.limits).c2pa
            permission = training_permission(credentials, reference.licence_note)
            image = decode_image(reference.data, provenance.limits)
        except ImageInputError as exc:
            decisions.append({**decision, "accepted": False, "reason": f"cannot be read: {exc}"})
            continue
        decision.update(training_permission=permission.reason, licence_note=permission.licence_note)
        if not permission.allowed:
            decisions.append({**decision, "accepted": False, "reason": permission.reason})
            continue
        usable.append((reference, image))
        decisions.append(decision)
    if not usable:
        raise PackError(
            "no reference photo may be used: " + "; ".join(f"{d['name']}: {d['reason']}" for d in decisions)
        )
    try:
        identity = build_identity([(reference.name, image) for reference, image in usable], backend)
    except ScoringError as exc:
        raise PackError(str(exc)) from None
    verdicts = {reference.name: reference for reference in identity.references}
    for decision in decisions:
        if "accepted" not in decision:
            reference = verdicts[decision["name"]]
            decision.update(accepted=reference.accepted, reason=reference.reason)
    images = {reference.name: image for reference, image in usable}
    accepted = [(reference, images[reference.name]) for reference, _ in usable if verdicts[reference.name].accepted]
    return identity, decisions, accepted


@dataclass(frozen=True)
class DisclosedImage:
    """A rendered image as it leaves memory: signed, watermarked and registered (there is no other form)."""

    name: str  # <style>-<seed>.png
    data: bytes
    style: str
    seed: int
    parameters: dict
    manifest_label: str
    payload: int
    watermarked: bool

    def describe(self) -> dict:
        """What a stage hands to the next one beside the file itself (JSON)."""
        return {
            "name": self.name,
            "style": self.style,
            "seed": self.seed,
            "parameters": self.parameters,
            "manifest_label": self.manifest_label,
            "payload": self.payload,
            "watermarked": self.watermarked,
        }

    @classmethod
    def described(cls, description: dict, data: bytes) -> "DisclosedImage":
        return cls(data=data, **description)


@dataclass(frozen=True)
class RenderedPack:
    model: dict  # source, sha256, device, dtype
    lora: dict | None  # file, sha256 of the identity LoRA, when one was used
    images: list[DisclosedImage]
    identity: dict = field(default_factory=lambda: {"method": "lora", "adapter": None})  # the method, its adapter


def make_pack(
    model,
    references: Sequence[ReferenceInput],
    out_dir: Path,
    settings: PackSettings,
    provenance: Provenance,
    backend,
    on_training: Callable[[TrainingProgress], None] | None = None,
    on_image: Callable[[int, int], None] | None = None,
    trained_lora: Path | None = None,
    on_references: Callable[[list[dict]], None] | None = None,
) -> dict:
    """Train (unless `trained_lora` is given, or the identity method needs no LoRA), render and disclose,
    then score a pack into `out_dir`. `on_references` gets the reference decisions before training starts.
    Returns the report, also written to report.json next to index.html.
    """
    out_dir = Path(out_dir)
    method = settings.identity
    try:  # the adapter's files and face encoder, before anything is trained or written
        method.check()
        encoder = face_encoder(method.insightface_pack) if method.uses_adapter else None
    except IdentityError as exc:
        raise PackError(str(exc)) from None
    backend = likeness_backend(backend, method)
    identity, decisions, accepted = accept_references(references, provenance, backend)
    out_dir.mkdir(parents=True, exist_ok=True)
    if on_references:
        on_references(decisions)

    if not method.trains_lora:
        lora_dir = None
    elif trained_lora is None:
        lora_dir = out_dir / "lora"
        try:
            training = train_identity_lora(
                model.pipeline,
                [image for _, image in accepted],
                lora_dir,
                settings.training,
                progress=on_training,
                record=model_record(model, decisions),
                check=LikenessCheck(identity, backend),
                names=[reference.name for reference, _ in accepted],
            )
        except TrainingError as exc:
            raise PackError(str(exc)) from None
        if training.lora_path is None:
            raise PackError(f"training stopped at step {training.steps_done}; run again to resume from the checkpoint")
    else:
        lora_dir = Path(trained_lora)
    generator = identity_generator(model, method, lora_dir, settings.training, encoder)
    reference_hashes = [reference.sha256 for reference, _ in accepted]
    images = [image for _, image in accepted]
    rendered = render_disclosed(generator, reference_hashes, settings, provenance, on_image, images)
    images_dir = out_dir / "images"
    images_dir.mkdir(exist_ok=True)
    for image in rendered.images:
        write_atomically(images_dir / image.name, image.data)
    entries = score_disclosed(rendered.images, identity, backend, settings.top_k, provenance)
    training = training_record(lora_dir) if lora_dir is not None else {}
    report = pack_report(rendered, decisions, identity, training, entries)
    (out_dir / "report.json").write_text(json.dumps(report, indent=2))
    (out_dir / "index.html").write_text(contact_sheet(report))
    return report


def model_record(model, decisions: list[dict]) -> dict:
    """What a LoRA's training.json keeps: its base model and the reference photos (hashes, reasons, licences)."""
    return {"base_model": {"source": str(model.source), "sha256": model.sha256}, "references": decisions}


def training_record(lora_dir: Path) -> dict:
    """The training.json of a LoRA trained earlier (`headshot train`, or a train stage)."""
    from generation.lora_files import LORA_FILE

    if not (Path(lora_dir) / LORA_FILE).exists():
        raise PackError(f"no {LORA_FILE} in {lora_dir}; train one with `headshot train --out {lora_dir}`")
    try:
        return json.loads((Path(lora_dir) / "training.json").read_text())
    except (OSError, ValueError):
        return {}


def trained_subject(lora_dir: Path, default: str) -> str:
    """The identifier and class word the LoRA was trained with (its training.json), e.g. `hsk woman`."""
    config = training_record(lora_dir).get("config", {})
    if isinstance(config.get("token"), str) and isinstance(config.get("class_word"), str):
        return f"{config['token']} {config['class_word']}"
    return default


def render_disclosed(
    generator,
    reference_hashes: Sequence[str],
    settings: PackSettings,
    provenance: Provenance,
    on_image: Callable[[int, int], None] | None = None,
    references: Sequence = (),
) -> RenderedPack:
    """Render `settings.count` images per style with `generator` (generation/generator.py) and disclose each one.

    Pixels never leave this function undisclosed: each image is watermarked, signed (reference photos as
    ingredients, the identity method and the hash of every model part used) and registered before it is
    returned. `references` are the accepted photos, for a generator that conditions on them (faceid).
    """
    from generation.generator import RenderSettings
    from provenance import disclose_image

    rendering = generator.render(
        references,
        settings.styles,
        RenderSettings(settings.count, settings.inference_steps, settings.size, settings.seed),
        progress=on_image,
    )
    model_hashes = {part.role: part.sha256 for part in rendering.parts}
    images = []
    for image in rendering.images:
        buffer = io.BytesIO()
        image.pixels.save(buffer, "PNG")
        disclosure = disclose_image(
            buffer.getvalue(),
            provenance.signing_identity,
            provenance.registry,
            reference_hashes=reference_hashes,
            generator=rendering.description,
            model_hashes=model_hashes,
            generation_parameters={"identity_method": rendering.method},
            limits=provenance.limits,
        )
        images.append(
            DisclosedImage(
                name=f"{image.style}-{image.seed}.png",
                data=disclosure.data,
                style=image.style,
                seed=image.seed,
                parameters={**image.parameters, "identity": rendering.method},
                manifest_label=disclosure.manifest_label,
                payload=disclosure.payload,
                watermarked=disclosure.watermarked,
            )
        )
    model = generator.model
    described = {
        "source": str(model.source),
        "sha256": model.sha256,
        "device": model.device,
        "dtype": model.dtype_name,
        "test_model": model.is_test_model,
    }
    lora = next(({"file": p.source, "sha256": p.sha256} for p in rendering.parts if p.role == "identity-lora"), None)
    identity = {"method": rendering.method, "adapter": rendering.details.get("adapter")}
    return RenderedPack(described, lora, images, identity)


def score_disclosed(
    images: Sequence[DisclosedImage], identity, backend, top_k: int, provenance: Provenance
) -> list[dict]:
    """Score the disclosed files (what the person receives), rank them and keep the top k; one entry each."""
    from provenance import verify_image
    from provenance.images import decode_image
    from scoring.score import score_candidate, select_top

    reports = select_top(
        [
            score_candidate(
                image.name, decode_image(image.data, provenance.limits), identity, backend, style=image.style
            )
            for image in images
        ],
        top_k,
    )
    by_name = {report.file: report for report in reports}
    entries = []
    for image in images:
        verdict = verify_image(image.data, provenance.trust, provenance.limits)
        entries.append(
            {
                **by_name[image.name].as_dict(),
                "file": f"images/{image.name}",
                "style": image.style,
                "seed": image.seed,
                "parameters": image.parameters,
                "method": image.parameters.get("identity", "lora"),
                "label": verdict.label,
                "manifest_label": image.manifest_label,
                "watermark_payload": f"{image.payload:016x}",
                "watermarked": image.watermarked,
            }
        )
    return sorted(entries, key=lambda entry: entry["rank"])


def pack_report(rendered: RenderedPack, decisions: list[dict], identity, training: dict, entries: list[dict]) -> dict:
    """report.json: the references and their verdicts, the identity method, its model parts (base, LoRA,
    adapter and face encoder), the training curve, how likeness was measured, and every image."""
    from scoring.score import HANDS_LIMITS_NOTE

    losses = training.get("losses", [])
    return {
        "created_at": dt.datetime.now(dt.UTC).isoformat(),
        "references": decisions,
        "identity": {"backend": identity.backend, "accepted": len(identity.accepted), "spread": identity.spread},
        "model": rendered.model,
        "method": rendered.identity["method"],
        "lora": rendered.lora,
        "adapter": rendered.identity.get("adapter"),
        "likeness": likeness_note(IdentityMethod(rendered.identity["method"]), identity.backend),
        "training": {
            "config": training.get("config", {}),
            "loss": losses,
            "loss_smoothed": smoothed(losses),
            "resumed_from": training.get("resumed_from", 0),
            "steps": training.get("steps"),
            "checkpoints": training.get("checkpoints", []),
            "chosen_checkpoint": training.get("chosen_checkpoint"),
        },
        "images": entries,
        "top_k": [image["file"] for image in entries if image["kept"]],
        "notes": [HANDS_LIMITS_NOTE] + ([TINY_MODEL_NOTE] if rendered.model.get("test_model") else []),
    }


def contact_sheet(report: dict, links: Mapping[str, str] | None = None) -> str:
    """index.html: every image with its scores and labels, kept ones first; it states what report.json records.

    `links` maps an image's `file` to the address it is shown from (the service's download endpoint); by
    default the file's path beside index.html.
    """
    links = links or {}
    cards = []
    for image in report["images"]:
        likeness = image["likeness"]
        failed = [check["name"] for check in image["checks"] if not check["passed"]]
        likeness_text = f"{likeness['band']} ({likeness['confidence']:.2f})" if likeness else "no face"
        watermark = "yes" if image["watermarked"] else f"none ({UNWATERMARKED})"
        source = links.get(image["file"], image["file"])
        alt = html.escape(f"{image['style']} seed {image['seed']}")
        cards.append(
            f"""<figure class="{"kept" if image["kept"] else "dropped"}">
  <a href="{html.escape(source)}"><img src="{html.escape(source)}" alt="{alt}"></a>
  <figcaption><b>#{image["rank"]} {html.escape(image["style"])}</b> seed {image["seed"]}<br>
  made by <b>{html.escape(image["method"])}</b> · score {image["score"]:.1f} ·
  kept: {html.escape(image["kept_reason"])}<br>
  likeness: {html.escape(likeness_text)}<br>
  failed checks: {html.escape(", ".join(failed)) or "none"}<br>
  invisible watermark: {html.escape(watermark)}<br>
  verify: <code>{html.escape(image["label"])}</code></figcaption>
</figure>"""
        )
    references = "".join(f"<li>{html.escape(reference_line(r))}</li>" for r in report["references"])
    parts = "".join(
        f", {name} <code>{part['sha256'][:16]}…</code>"
        for name, part in (("IP-Adapter FaceID", report["adapter"]),)
        if part
    )
    encoder = report["likeness"]["conditioning_encoder"]
    conditioning = f", not with {html.escape(encoder)}, which conditioned the adapter" if encoder else ""
    smoothed_losses = report["training"]["loss_smoothed"]
    final_loss = (
        f"final training loss (smoothed) {smoothed_losses[-1]:.4f}" if smoothed_losses else "no training record"
    )
    lora = f"identity LoRA <code>{report['lora']['sha256'][:16]}…</code>" if report["lora"] else "no identity LoRA"
    notes = "".join(f"<p>{html.escape(note)}</p>" for note in report["notes"])
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>headshot pack</title>
<style>{CONTACT_SHEET_STYLE}</style></head><body>
<h1>Headshot pack</h1>
<p>{html.escape(disclosure_summary(report["images"]))} {len(report["top_k"])} kept of {len(report["images"])}.</p>
{notes}
<p>Identity method <b>{html.escape(report["method"])}</b>.
Base model <code>{report["model"]["sha256"][:16]}…</code>, {lora}{parts},
{final_loss}. Likeness measured with {html.escape(report["likeness"]["encoder"])}{conditioning}.</p>
<h2>Reference photos</h2><ul>{references}</ul>
<h2>Images</h2><div class="grid">
{chr(10).join(cards)}
</div></body></html>
"""


def disclosure_summary(images: Sequence[dict]) -> str:
    """What every image carries, as report.json records it (the watermark only where the image was large enough)."""
    watermarked = sum(bool(image["watermarked"]) for image in images)
    if watermarked == len(images):
        watermark = "an invisible watermark"
    elif watermarked == 0:
        watermark = f"no invisible watermark ({UNWATERMARKED})"
    else:
        watermark = f"an invisible watermark in {watermarked} of {len(images)} ({UNWATERMARKED} for the others)"
    return (
        "Every image here is AI-generated and carries Content Credentials that say so, "
        f"{watermark}, and a fingerprint in the registry."
    )


def reference_line(decision: dict) -> str:
    """`NAME: accepted` or `NAME: rejected (why)`, with the training permission when it is not the plain default."""
    if not decision["accepted"]:
        return f"{decision['name']}: rejected ({decision['reason']})"
    licence = decision.get("licence_note")
    return f"{decision['name']}: accepted" + (f" (licensed: {licence})" if licence else "")


def _sha256(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()
