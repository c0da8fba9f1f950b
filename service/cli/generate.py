"""`headshot train`, `headshot pack` and `headshot generate`: making headshots (by any identity method)."""

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from generation.training import TrainingConfig
from service.cli.common import app, console, errors, fail, read_image, reports_errors, services

ModelOption = Annotated[Path | None, typer.Option("--model", help="SDXL diffusers folder or .safetensors file.")]
ConfigOption = Annotated[Path | None, typer.Option("--config", help="Diffusers config folder for a single file.")]
ReferenceOption = Annotated[list[Path], typer.Option("--reference", help="A photo of the person (repeat).")]
LicensedOption = Annotated[
    list[Path] | None, typer.Option("--licensed", help="A reference whose credentials forbid training, licensed.")
]
LicenceNoteOption = Annotated[str | None, typer.Option("--licence-note", help="The licence for --licensed photos.")]


class ClassWord(StrEnum):
    person = "person"
    woman = "woman"
    man = "man"


class ExportFormat(StrEnum):
    kohya = "kohya"


StepsOption = Annotated[
    int | None, typer.Option(min=1, help="Training steps (default: scaled by the number of accepted photos).")
]
BatchSizeOption = Annotated[
    int, typer.Option("--batch-size", min=1, max=16, help="Photos per training step (their latents are cached).")
]
ClassWordOption = Annotated[
    ClassWord, typer.Option("--class-word", help="Who the photos show; the caption is 'a photo of hsk CLASS-WORD'.")
]


class Identity(StrEnum):
    lora = "lora"
    faceid = "faceid"
    hybrid = "hybrid"


IdentityOption = Annotated[
    Identity,
    typer.Option(
        "--identity",
        help="lora: train an identity LoRA; faceid: no training, IP-Adapter FaceID on the ArcFace embedding "
        "(needs --ip-adapter and HEADSHOT_INSIGHTFACE_PACK; research-only weights); hybrid: both.",
    ),
]
IPAdapterOption = Annotated[
    Path | None,
    typer.Option("--ip-adapter", help="IP-Adapter FaceID weights for SDXL, file or folder (HEADSHOT_IP_ADAPTER)."),
]
AdapterScaleOption = Annotated[
    float | None,
    typer.Option("--adapter-scale", min=0, max=2, help="IP-Adapter strength (default: faceid 1.0, hybrid 0.5)."),
]
ExportOption = Annotated[
    ExportFormat | None,
    typer.Option("--export", help="Also write the LoRA as kohya (what AUTOMATIC1111 and ComfyUI load)."),
]


@app.command()
@reports_errors
def train(
    reference: ReferenceOption,
    out: Annotated[Path, typer.Option("--out", help="Folder for the LoRA and its checkpoints.")],
    model: ModelOption = None,
    config: ConfigOption = None,
    steps: StepsOption = None,
    batch_size: BatchSizeOption = TrainingConfig.batch_size,
    class_word: ClassWordOption = ClassWord.person,
    rank: Annotated[int, typer.Option(min=1)] = TrainingConfig.rank,
    alpha: Annotated[int, typer.Option(min=1)] = TrainingConfig.alpha,
    learning_rate: Annotated[float, typer.Option("--lr", min=0)] = TrainingConfig.learning_rate,
    resolution: Annotated[int, typer.Option(min=32)] = TrainingConfig.resolution,
    seed: int = 0,
    checkpoint_every: Annotated[int, typer.Option(min=1)] = TrainingConfig.checkpoint_every,
    export: ExportOption = None,
    licensed: LicensedOption = None,
    licence_note: LicenceNoteOption = None,
) -> None:
    """Train an identity LoRA from the reference photos (resumes from the last checkpoint in --out)."""
    from generation.pack import accept_references, model_record
    from generation.training import LikenessCheck, train_identity_lora

    command_services = services()
    training = TrainingConfig(
        steps=steps,
        rank=rank,
        alpha=alpha,
        learning_rate=learning_rate,
        resolution=resolution,
        seed=seed,
        class_word=class_word.value,
        checkpoint_every=checkpoint_every,
        batch_size=batch_size,
        gradient_checkpointing=command_services.settings.gradient_checkpointing,
    )
    loaded = command_services.load_sdxl(model, config)
    backend = command_services.face_backend
    identity, decisions, accepted = accept_references(
        _reference_inputs(reference, licensed, licence_note, command_services), _provenance(command_services), backend
    )
    _print_decisions(decisions)
    with _training_progress() as on_step:
        result = train_identity_lora(
            loaded.pipeline,
            [image for _, image in accepted],
            out,
            training,
            on_step,
            record=model_record(loaded, decisions),
            check=LikenessCheck(identity, backend),
            names=[reference.name for reference, _ in accepted],
        )
    chosen = json.loads((out / "training.json").read_text())["chosen_checkpoint"]
    console.print(
        f"LoRA {result.lora_path} (sha256 {result.lora_sha256}), {result.steps_done} steps, loss "
        f"{result.losses[0]:.4f} -> {result.losses[-1]:.4f}"
        + (f", resumed from step {result.resumed_from}" if result.resumed_from else "")
        + f"; checkpoint of step {chosen['step']} kept ({chosen['reason']})",
        highlight=False,
    )
    if export is ExportFormat.kohya:
        _export_kohya(out, loaded)


def _export_kohya(lora_dir: Path, loaded) -> None:
    from generation.kohya import export_kohya

    console.print(f"kohya LoRA {export_kohya(lora_dir, loaded.pipeline.unet.config)}", highlight=False)


@app.command()
@reports_errors
def pack(
    reference: ReferenceOption,
    out: Annotated[Path, typer.Option("--out", help="Folder for the pack.")],
    model: ModelOption = None,
    config: ConfigOption = None,
    styles: Annotated[str | None, typer.Option(help="Comma-separated preset names (default: all).")] = None,
    count: Annotated[int, typer.Option(help="Images per style.", min=1)] = 4,
    steps: StepsOption = None,
    batch_size: BatchSizeOption = TrainingConfig.batch_size,
    class_word: ClassWordOption = ClassWord.person,
    inference_steps: Annotated[int, typer.Option(help="Denoising steps per image.", min=1)] = 30,
    size: Annotated[int, typer.Option(help="Image size in px.", min=32)] = 1024,
    seed: int = 0,
    top: Annotated[int, typer.Option(help="How many images to keep.", min=1)] = 10,
    identity: IdentityOption = Identity.lora,
    ip_adapter: IPAdapterOption = None,
    adapter_scale: AdapterScaleOption = None,
    export: ExportOption = None,
    licensed: LicensedOption = None,
    licence_note: LicenceNoteOption = None,
) -> None:
    """Train (lora, hybrid), render, score and disclose a headshot pack: images, report.json and index.html."""
    training = {"steps": steps, "batch_size": batch_size, "class_word": class_word.value}
    rendering = {"styles": styles, "count": count, "inference_steps": inference_steps, "size": size, "seed": seed}
    method = (identity.value, ip_adapter, adapter_scale)
    _run_pack(reference, out, model, config, rendering, training, top, licensed, licence_note, method, export=export)


@app.command()
@reports_errors
def generate(
    reference: ReferenceOption,
    out: Annotated[Path, typer.Option("--out", help="Folder for the images, report.json and index.html.")],
    lora: Annotated[
        Path | None, typer.Option("--lora", help="Folder of a LoRA made by `headshot train` (lora, hybrid).")
    ] = None,
    model: ModelOption = None,
    config: ConfigOption = None,
    styles: Annotated[str | None, typer.Option(help="Comma-separated preset names (default: all).")] = None,
    count: Annotated[int, typer.Option(help="Images per style.", min=1)] = 4,
    steps: Annotated[int, typer.Option(help="Denoising steps per image.", min=1)] = 30,
    size: Annotated[int, typer.Option(help="Image size in px.", min=32)] = 1024,
    seed: int = 0,
    top: Annotated[int, typer.Option(help="How many images to keep.", min=1)] = 10,
    identity: IdentityOption = Identity.lora,
    ip_adapter: IPAdapterOption = None,
    adapter_scale: AdapterScaleOption = None,
    class_word: ClassWordOption = ClassWord.person,
) -> None:
    """Render, score and disclose headshots with a trained LoRA and/or IP-Adapter FaceID (no training)."""
    if identity is not Identity.faceid and lora is None:
        fail(f"--identity {identity.value} renders with a trained LoRA: pass --lora DIR (or use --identity faceid)")
    if identity is Identity.faceid and lora is not None:
        fail("--identity faceid uses no LoRA: drop --lora, or use --identity hybrid")
    rendering = {"styles": styles, "count": count, "inference_steps": steps, "size": size, "seed": seed}
    training = {"steps": 1, "class_word": class_word.value}
    method = (identity.value, ip_adapter, adapter_scale)
    _run_pack(reference, out, model, config, rendering, training, top, None, None, method, trained_lora=lora)


def _run_pack(
    reference,
    out,
    model,
    config,
    rendering: dict,
    training: dict,
    top,
    licensed,
    licence_note,
    identity: tuple,
    trained_lora=None,
    export=None,
) -> None:
    from rich.progress import Progress

    from generation.pack import PackSettings, make_pack
    from generation.presets import load_presets, select_presets

    command_services = services()
    settings = command_services.settings
    styles = rendering["styles"]
    presets = select_presets(load_presets(settings.presets_file), styles.split(",") if styles else None)
    method = command_services.identity_method(*identity)
    if export is not None and not method.trains_lora:
        fail(f"--export {export.value} exports the identity LoRA, which --identity {method.name} does not train")
    loaded = command_services.load_sdxl(model, config)
    config_for_training = TrainingConfig(
        resolution=rendering["size"],
        seed=rendering["seed"],
        gradient_checkpointing=settings.gradient_checkpointing,
        **training,
    )
    count = rendering["count"]
    pack_settings = PackSettings(
        presets,
        count,
        rendering["inference_steps"],
        rendering["size"],
        rendering["seed"],
        top,
        config_for_training,
        method,
    )
    with Progress(console=errors, transient=True) as bar:
        training_task = bar.add_task("training", total=None, visible=trained_lora is None and method.trains_lora)
        render_task = bar.add_task("rendering", total=count * len(presets))
        report = make_pack(
            loaded,
            _reference_inputs(reference, licensed, licence_note, command_services),
            out,
            pack_settings,
            _provenance(command_services),
            command_services.face_backend,
            on_training=lambda p: bar.update(training_task, completed=p.step, total=p.total, **_loss_description(p)),
            on_image=lambda done, total: bar.update(render_task, completed=done),
            trained_lora=trained_lora,
        )
    _print_decisions(report["references"])
    if export is ExportFormat.kohya:
        _export_kohya(Path(out) / "lora", loaded)
    kept = [image for image in report["images"] if image["kept"]]
    console.print(
        f"{out}: {len(report['images'])} disclosed images made by {report['method']}, {len(kept)} kept "
        f"({sum(image['passed'] for image in kept)} passing the quality gate); report.json and index.html written",
        highlight=False,
    )


def _reference_inputs(paths: list[Path], licensed: list[Path] | None, note: str | None, command_services):
    from generation.pack import ReferenceInput

    licensed = {path.resolve() for path in licensed or []}
    if licensed and not note:
        fail("--licensed needs --licence-note TEXT saying under which licence the photos are used")
    limits = command_services.settings.image_limits
    return [
        ReferenceInput(str(path), read_image(path, limits, "reference "), note if path.resolve() in licensed else None)
        for path in paths
    ]


def _provenance(command_services):
    from generation.pack import Provenance

    return Provenance(
        command_services.credentials.signing_identity(),
        command_services.registry,
        command_services.trust(),
        command_services.settings.image_limits,
    )


def _print_decisions(decisions: list[dict]) -> None:
    for decision in decisions:
        mark = "accepted" if decision["accepted"] else "[red]rejected[/red]"
        console.print(f"reference {decision['name']}: {mark} ({decision['reason']})", highlight=False)


def _training_progress():
    from contextlib import contextmanager

    from rich.progress import Progress

    @contextmanager
    def progress():
        with Progress(console=errors, transient=True) as bar:
            task = bar.add_task("training", total=None)
            yield lambda p: bar.update(task, completed=p.step, total=p.total, **_loss_description(p))

    return progress()


def _loss_description(progress) -> dict:
    """The bar's label, updated when training reads the loss back from the device (every few steps)."""
    return {"description": f"training loss {progress.loss:.4f}"} if progress.loss is not None else {}
