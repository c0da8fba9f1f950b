"""`headshot train`, `headshot pack`, `headshot generate` and `headshot models tiny`: making headshots."""

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from generation.training import TrainingConfig
from service.cli.common import app, console, errors, fail, read_image, reports_errors, services
from service.cli.progress import WorkProgress
from service.job_parameters import JobParameters

DEFAULTS = JobParameters()  # the job API's defaults: one set for both

ModelOption = Annotated[
    Path | None, typer.Option("--model", metavar="M", help="SDXL diffusers folder or .safetensors file.")
]
ConfigOption = Annotated[
    Path | None, typer.Option("--config", metavar="DIR", help="Diffusers config folder for a single file.")
]
ReferenceOption = Annotated[
    list[Path], typer.Option("--reference", metavar="PHOTO", help="A photo of the person (repeat).")
]
OutOption = Annotated[Path, typer.Option("--out", metavar="DIR", help="Folder for the results.")]
LicensedOption = Annotated[
    list[Path] | None,
    typer.Option("--licensed", metavar="PHOTO", help="A reference whose credentials forbid training, licensed."),
]
LicenceNoteOption = Annotated[
    str | None, typer.Option("--licence-note", metavar="TEXT", help="The licence for --licensed photos.")
]


class ClassWord(StrEnum):
    person = "person"
    woman = "woman"
    man = "man"


DEFAULT_CLASS_WORD = ClassWord(DEFAULTS.class_word)


class ExportFormat(StrEnum):
    kohya = "kohya"


# Training: the names of the job API's `parameters` (service/job_parameters.py), in CLI spelling.
StepsOption = Annotated[
    int | None,
    typer.Option(metavar="N", min=1, help="Training steps (default: scaled by the number of accepted photos)."),
]
BatchSizeOption = Annotated[
    int,
    typer.Option(
        "--batch-size", metavar="B", min=1, max=16, help="Photos per training step (their latents are cached)."
    ),
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
    typer.Option(
        "--ip-adapter", metavar="PATH", help="IP-Adapter FaceID weights for SDXL, file or folder (HEADSHOT_IP_ADAPTER)."
    ),
]
AdapterScaleOption = Annotated[
    float | None,
    typer.Option(
        "--adapter-scale", metavar="F", min=0, max=2, help="IP-Adapter strength (default: faceid 1.0, hybrid 0.5)."
    ),
]
RankOption = Annotated[int, typer.Option(metavar="R", min=1, help="LoRA rank.")]
AlphaOption = Annotated[int, typer.Option(metavar="A", min=1, help="LoRA alpha.")]
LearningRateOption = Annotated[float, typer.Option("--learning-rate", metavar="F", min=0, help="AdamW learning rate.")]
CheckpointEveryOption = Annotated[
    int, typer.Option(metavar="N", min=1, help="Training steps between checkpoints (a rerun resumes from the last).")
]
SeedOption = Annotated[int, typer.Option(metavar="N", help="Seed of training and of image i of style j (+1000 j + i).")]
ExportOption = Annotated[
    ExportFormat | None,
    typer.Option("--export", help="Also write the LoRA as kohya (what AUTOMATIC1111 and ComfyUI load)."),
]
# Rendering
StylesOption = Annotated[
    str | None, typer.Option(metavar="A,B", help="Comma-separated style preset names (default: all).")
]
CountOption = Annotated[int, typer.Option(metavar="N", help="Images per style.", min=1)]
InferenceStepsOption = Annotated[int, typer.Option(metavar="N", help="Denoising steps per image.", min=1)]
SizeOption = Annotated[int, typer.Option(metavar="PX", help="Image size in px.", min=32)]
TopKOption = Annotated[int, typer.Option("--top-k", metavar="K", help="How many images to keep.", min=1)]


@app.command()
@reports_errors
def train(
    reference: ReferenceOption,
    out: OutOption,
    model: ModelOption = None,
    config: ConfigOption = None,
    steps: StepsOption = DEFAULTS.steps,
    batch_size: BatchSizeOption = DEFAULTS.batch_size,
    class_word: ClassWordOption = DEFAULT_CLASS_WORD,
    rank: RankOption = DEFAULTS.rank,
    alpha: AlphaOption = DEFAULTS.alpha,
    learning_rate: LearningRateOption = DEFAULTS.learning_rate,
    resolution: Annotated[int, typer.Option(metavar="PX", min=32, help="Training resolution.")] = (
        TrainingConfig.resolution
    ),
    seed: SeedOption = DEFAULTS.seed,
    checkpoint_every: CheckpointEveryOption = DEFAULTS.checkpoint_every,
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
    with WorkProgress(errors) as progress:
        result = train_identity_lora(
            loaded.pipeline,
            [image for _, image in accepted],
            out,
            training,
            progress.training,
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
    out: OutOption,
    model: ModelOption = None,
    config: ConfigOption = None,
    styles: StylesOption = None,
    count: CountOption = DEFAULTS.count,
    steps: StepsOption = DEFAULTS.steps,
    batch_size: BatchSizeOption = DEFAULTS.batch_size,
    class_word: ClassWordOption = DEFAULT_CLASS_WORD,
    rank: RankOption = DEFAULTS.rank,
    alpha: AlphaOption = DEFAULTS.alpha,
    learning_rate: LearningRateOption = DEFAULTS.learning_rate,
    resolution: Annotated[
        int | None, typer.Option(metavar="PX", min=32, help="Training resolution (default: --size).")
    ] = DEFAULTS.resolution,
    checkpoint_every: CheckpointEveryOption = DEFAULTS.checkpoint_every,
    inference_steps: InferenceStepsOption = DEFAULTS.inference_steps,
    size: SizeOption = DEFAULTS.size,
    seed: SeedOption = DEFAULTS.seed,
    top_k: TopKOption = DEFAULTS.top_k,
    identity: IdentityOption = Identity.lora,
    ip_adapter: IPAdapterOption = None,
    adapter_scale: AdapterScaleOption = None,
    export: ExportOption = None,
    licensed: LicensedOption = None,
    licence_note: LicenceNoteOption = None,
) -> None:
    """Train (lora, hybrid), render, score and disclose a headshot pack: images, report.json and index.html."""
    training = {
        "steps": steps,
        "batch_size": batch_size,
        "class_word": class_word.value,
        "rank": rank,
        "alpha": alpha,
        "learning_rate": learning_rate,
        "resolution": resolution or size,
        "checkpoint_every": checkpoint_every,
    }
    rendering = {"styles": styles, "count": count, "inference_steps": inference_steps, "size": size, "seed": seed}
    method = (identity.value, ip_adapter, adapter_scale)
    _run_pack(reference, out, model, config, rendering, training, top_k, licensed, licence_note, method, export=export)


@app.command()
@reports_errors
def generate(
    reference: ReferenceOption,
    out: OutOption,
    lora: Annotated[
        Path | None,
        typer.Option("--lora", metavar="DIR", help="Folder of a LoRA made by `headshot train` (lora, hybrid)."),
    ] = None,
    model: ModelOption = None,
    config: ConfigOption = None,
    styles: StylesOption = None,
    count: CountOption = DEFAULTS.count,
    inference_steps: InferenceStepsOption = DEFAULTS.inference_steps,
    size: SizeOption = DEFAULTS.size,
    seed: SeedOption = DEFAULTS.seed,
    top_k: TopKOption = DEFAULTS.top_k,
    identity: IdentityOption = Identity.lora,
    ip_adapter: IPAdapterOption = None,
    adapter_scale: AdapterScaleOption = None,
    class_word: ClassWordOption = DEFAULT_CLASS_WORD,
) -> None:
    """Render, score and disclose headshots with a trained LoRA and/or IP-Adapter FaceID (no training)."""
    if identity is not Identity.faceid and lora is None:
        fail(f"--identity {identity.value} renders with a trained LoRA: pass --lora DIR (or use --identity faceid)")
    if identity is Identity.faceid and lora is not None:
        fail("--identity faceid uses no LoRA: drop --lora, or use --identity hybrid")
    rendering = {"styles": styles, "count": count, "inference_steps": inference_steps, "size": size, "seed": seed}
    training = {"steps": 1, "class_word": class_word.value}
    method = (identity.value, ip_adapter, adapter_scale)
    _run_pack(reference, out, model, config, rendering, training, top_k, None, None, method, trained_lora=lora)


def _run_pack(
    reference,
    out,
    model,
    config,
    rendering: dict,
    training: dict,
    top_k,
    licensed,
    licence_note,
    identity: tuple,
    trained_lora=None,
    export=None,
) -> None:
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
        resolution=training.pop("resolution", rendering["size"]),
        seed=rendering["seed"],
        gradient_checkpointing=settings.gradient_checkpointing,
        **training,
    )
    pack_settings = PackSettings(
        presets,
        rendering["count"],
        rendering["inference_steps"],
        rendering["size"],
        rendering["seed"],
        top_k,
        config_for_training,
        method,
    )
    with WorkProgress(errors) as progress:
        report = make_pack(
            loaded,
            _reference_inputs(reference, licensed, licence_note, command_services),
            out,
            pack_settings,
            _provenance(command_services),
            command_services.face_backend,
            on_training=progress.training,
            on_image=progress.rendering,
            trained_lora=trained_lora,
            on_references=_print_decisions,  # before training: a bad reference stops the user early
        )
    if export is ExportFormat.kohya:
        _export_kohya(Path(out) / "lora", loaded)
    kept = [image for image in report["images"] if image["kept"]]
    console.print(
        f"{out}: {len(report['images'])} disclosed images made by {report['method']}, {len(kept)} kept "
        f"({sum(image['passed'] for image in kept)} passing the quality gate); report.json and index.html written",
        highlight=False,
    )
    for note in report["notes"][1:]:  # the first, on hands, is in the contact sheet; the others matter now
        console.print(f"note: {note}", highlight=False)


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
    from generation.pack import reference_line

    for decision in decisions:
        line = reference_line(decision)
        console.print(f"reference {line}", style=None if decision["accepted"] else "red", markup=False, highlight=False)
