"""A whole pack: time, loss, likeness per training checkpoint, memory; on the tiny model or on real SDXL on a GPU.

    .venv/bin/python bench/generation.py [--model DIR] [--steps 50] [--count 2] [--size 64]
    .venv/bin/python bench/generation.py --gpu --model /models/sdxl-base-1.0 [--count 8] [--steps N]
    .venv/bin/python bench/generation.py --gpu-path-on-cpu
    .venv/bin/python bench/generation.py --methods lora,faceid,hybrid
    .venv/bin/python bench/generation.py --methods lora,faceid,hybrid --gpu --model /models/sdxl-base-1.0 \
        --ip-adapter /models/ip-adapter-faceid_sdxl.bin --insightface-pack /models/buffalo_l

Default: the tiny random SDXL (written to a temporary folder), 5 photos, 2 styles, 64 px; device and
precision as the product chooses them. Target on the 2-core CPU machines: 50 training steps and 4 images
at 64 px under 60 s.

--gpu: the recipe as a user runs it, on a CUDA GPU with real SDXL weights (a local diffusers folder or a
single file with --config): the 8 photos of one person in shared/data/faces, steps scaled by the photos,
batch 2, 1024 px, a checkpoint with 4 validation renders scored for likeness every 100 steps, then 8 images
in each of the 5 styles (40) at 30 denoising steps, each disclosed and scored. It prints the time of
training plus the 40 images (the issue's estimate: 3-5 minutes on one H200), the likeness of every
checkpoint, the one kept, and peak GPU memory. --gpu-path-on-cpu runs that same code on the tiny model on
the CPU, at 64 px and a few steps, to check it without a GPU (its likeness is 0: the tiny model renders noise).

--methods: one pack per identity method (lora: trained LoRA; faceid: IP-Adapter FaceID, no training;
hybrid: both), each in a process of its own so that its peak RSS is its own: time until the first batch of
images (up to 4, one style) is rendered, training, rendering per image, the whole pack, peak RSS (and GPU
memory), and the likeness of its images to the references, scored by dlib (never by the ArcFace that
conditions the adapter). On the tiny models
(written with the tiny FaceID and insightface pack) by default; with --gpu, on real SDXL, FaceID and
insightface weights, 5 styles x --count images (default 4) at 1024 px. "per image" is the time between the
first and the last batch of images over the images in between: rendering alone.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rich.console import Console
from rich.table import Table

FACES = Path(__file__).resolve().parents[2] / "shared" / "data" / "faces"
PHOTOS = ["img1.jpg", "img2.jpg", "img4.jpg", "img5.jpg", "img6.jpg"]
# every photo of that person in master.csv's "same person" pairs
PERSON = ["img1.jpg", "img2.jpg", "img4.jpg", "img5.jpg", "img6.jpg", "img7.jpg", "img10.jpg", "img11.jpg"]
ALL_STYLES = ["corporate-grey", "outdoor-natural", "modern-office", "black-white-studio", "casual-creative"]
METHODS = ("lora", "faceid", "hybrid")


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@dataclass
class PackRun:
    """What one pack took: marks in seconds from the start, the report and the training record."""

    report: dict
    training: dict
    model: object
    loaded: float
    pack_started: float = 0.0
    training_done: float = 0.0
    rendered: float = 0.0
    finished: float = 0.0
    marks: dict = field(default_factory=dict)


def run_pack(model_path: Path, work: Path, photos: list[str], styles: list[str], count: int, size: int, **options):
    """Load the model, make a pack, and note when each part ended (training, rendering, scoring)."""
    import json

    from generation.models import load_model
    from generation.pack import PackSettings, Provenance, ReferenceInput, make_pack
    from generation.presets import load_presets, select_presets
    from generation.training import TrainingConfig
    from provenance import CredentialStore, ImageLimits
    from provenance.registry import InMemoryRegistry
    from scoring.faces import DlibBackend

    identity = options.pop("identity", None)
    started = time.perf_counter()
    model = load_model(model_path, config=options.pop("config", None), cache_dir=work / "cache")
    loaded = time.perf_counter() - started
    store = CredentialStore(work / "credentials")
    provenance = Provenance(store.signing_identity(), InMemoryRegistry(), store.trust_anchors(), ImageLimits())
    inference_steps = options.pop("inference_steps")
    settings = PackSettings(
        select_presets(load_presets(), styles),
        count=count,
        inference_steps=inference_steps,
        size=size,
        top_k=min(10, count * len(styles)),
        training=TrainingConfig(resolution=size, **options),
        **({"identity": identity} if identity else {}),
    )
    marks: dict[str, float] = {}

    def on_training(progress):
        marks.setdefault("first_step", time.perf_counter() - started)
        if progress.step == progress.total:
            marks["training_done"] = time.perf_counter() - started

    def on_image(done, total):
        marks.setdefault("first_image", time.perf_counter() - started)
        marks.setdefault("batches", []).append((time.perf_counter() - started, done))
        if done == total:
            marks["rendered"] = time.perf_counter() - started

    start_pack = time.perf_counter()
    references = [ReferenceInput(name, (FACES / name).read_bytes()) for name in photos]
    backend = DlibBackend()
    report = make_pack(
        model, references, work / "pack", settings, provenance, backend, on_training=on_training, on_image=on_image
    )
    finished = time.perf_counter() - started
    record = work / "pack" / "lora" / "training.json"
    training = json.loads(record.read_text()) if record.exists() else {}
    run = PackRun(report, training, model, loaded, start_pack - started, finished=finished, marks=marks)
    run.training_done = marks.get("training_done", run.pack_started)
    run.rendered = marks.get("rendered", finished)
    return run


def checkpoint_rows(table: Table, training: dict) -> None:
    for checkpoint in training.get("checkpoints", []):
        distance = checkpoint["median_distance"]
        table.add_row(
            f"  checkpoint step {checkpoint['step']}",
            f"likeness {checkpoint['likeness']:.3f}, faces {checkpoint['faces']}/{checkpoint['images']}, "
            + (f"median distance {distance:.3f}, " if distance is not None else "")
            + f"near copies {checkpoint['near_copies']}, {checkpoint['seconds']:.1f} s",
        )
    chosen = training.get("chosen_checkpoint") or {}
    table.add_row("checkpoint kept", f"step {chosen.get('step')}: {chosen.get('reason')}")


def tiny_table(args) -> None:
    import torch

    from generation.models import MemoryOptions, load_model
    from generation.tiny import write_tiny_model

    with tempfile.TemporaryDirectory() as directory:
        work = Path(directory)
        written = time.perf_counter()
        model_path = args.model or write_tiny_model(work / "tiny")
        written = time.perf_counter() - written
        run = run_pack(
            model_path,
            work,
            PHOTOS,
            ALL_STYLES[:2],
            args.count,
            args.size,
            inference_steps=4,
            steps=args.steps,
            rank=4,
            alpha=4,
            learning_rate=1e-3,
            validation_steps=4,
        )
        peak = peak_rss_mb()
        tiled = load_model(
            model_path, memory=MemoryOptions(vae_tiling=True, vae_slicing=True), cache_dir=work / "cache"
        )
        options = (
            f"{', '.join(tiled.applied)} (vae.use_tiling={tiled.pipeline.vae.use_tiling}, "
            f"vae.use_slicing={tiled.pipeline.vae.use_slicing})"
        )

    report, training = run.report, run.training
    losses = report["training"]["loss"]
    head, tail = losses[: max(1, len(losses) // 5)], losses[-max(1, len(losses) // 5) :]
    validation = sum(checkpoint["seconds"] for checkpoint in training["checkpoints"])
    batch = training["config"]["batch_size"]
    title = f"headshot pack on {args.model or 'the tiny model'} ({run.model.device}, {run.model.dtype_name})"
    table = Table(title=title)
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("torch threads", str(torch.get_num_threads()))
    table.add_row("write + load model", f"{written + run.loaded:.1f} s")
    table.add_row(
        f"training ({training['steps']} steps of {batch} photos, {len(PHOTOS)} photos, {args.size} px)",
        f"{run.training_done - run.pack_started:.1f} s (of which validation renders {validation:.1f} s)",
    )
    table.add_row(
        f"render + score + disclose {len(report['images'])} images", f"{run.finished - run.training_done:.1f} s"
    )
    table.add_row("whole pack (model load to report.json)", f"{written + run.finished:.1f} s (target < 60 s on CPU)")
    table.add_row("loss, mean of first / last fifth", f"{sum(head) / len(head):.4f} -> {sum(tail) / len(tail):.4f}")
    checkpoint_rows(table, training)
    table.add_row("peak RSS of the process", f"{peak:.0f} MB")
    table.add_row(
        "images verifying as ai_verified",
        f"{sum(i['label'] == 'ai_verified' for i in report['images'])} of {len(report['images'])}",
    )
    table.add_row("memory options applied", options)
    Console(width=150).print(table)


def gpu_table(args, on_cpu: bool) -> None:
    import diffusers
    import torch

    from generation.tiny import write_tiny_model

    if not on_cpu:
        if not torch.cuda.is_available():
            sys.exit("--gpu needs a CUDA GPU; use --gpu-path-on-cpu to check this script on the tiny model")
        if args.model is None:
            sys.exit("--gpu needs --model: a local SDXL diffusers folder or single file (with --config)")
        torch.cuda.reset_peak_memory_stats()
    with tempfile.TemporaryDirectory() as directory:
        work = Path(directory)
        model_path = write_tiny_model(work / "tiny") if on_cpu else args.model
        size = 64 if on_cpu else args.size
        run = run_pack(
            model_path,
            work,
            PERSON,
            ALL_STYLES,
            1 if on_cpu else args.count,
            size,
            config=None if on_cpu else args.config,
            inference_steps=2 if on_cpu else args.inference_steps,
            steps=6 if on_cpu else args.steps,
            checkpoint_every=3 if on_cpu else args.checkpoint_every,
            validation_steps=2 if on_cpu else 20,
        )
    report, training = run.report, run.training
    images = report["images"]
    steps, batch = training["steps"], training["config"]["batch_size"]
    validation = sum(checkpoint["seconds"] for checkpoint in training["checkpoints"])
    training_seconds = run.training_done - run.pack_started
    first_step = run.marks.get("first_step", run.pack_started) - run.pack_started
    per_step = (training_seconds - first_step - validation) / max(1, steps - 1)
    total = run.finished - run.pack_started
    device = torch.cuda.get_device_name() if not on_cpu else "CPU (the GPU path, checked on the tiny model)"
    table = Table(title=f"identity LoRA + {len(images)} headshots on {device}")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("model", f"{model_path} ({run.model.device}, {run.model.dtype_name})")
    table.add_row("torch / diffusers", f"{torch.__version__} / {diffusers.__version__}")
    table.add_row("load model", f"{run.loaded:.1f} s")
    used = [photo for photo in training["photos"] if photo["used"]]
    crops = [crop["side"] for photo in used for crop in photo["crops"]]
    table.add_row(
        "photos: accepted, used for training, crops",
        f"{sum(r['accepted'] for r in report['references'])} of {len(PERSON)}, {len(used)}, {len(crops)} "
        f"(real sides {min(crops)}-{max(crops)} px)",
    )
    table.add_row("references checked, crops and latents made, first step", f"{first_step:.1f} s")
    table.add_row(
        f"training: {steps} steps ({training['steps_chosen_by']}), batch {batch}, {size} px",
        f"{training_seconds:.1f} s ({per_step:.3f} s a step; validation renders {validation:.1f} s)",
    )
    checkpoint_rows(table, training)
    table.add_row(f"render + disclose {len(images)} images", f"{run.rendered - run.training_done:.1f} s")
    table.add_row(f"score {len(images)} images, report", f"{run.finished - run.rendered:.1f} s")
    table.add_row(
        f"training + {len(images)} images (from accepted photos to report.json)",
        f"{total:.1f} s = {total / 60:.1f} min (estimate: 3-5 min)",
    )
    likeness = [image["likeness"]["confidence"] for image in images if image["likeness"]]
    bands = [image["likeness"]["band"] for image in images if image["likeness"]]
    table.add_row(
        "likeness of the headshots",
        (
            f"median confidence {statistics.median(likeness):.3f}; same {bands.count('same')}, uncertain "
            f"{bands.count('uncertain')}, different {bands.count('different')}, no face {len(images) - len(bands)}"
        )
        if likeness
        else f"no face in any of the {len(images)} images",
    )
    passing = sum(image["passed"] for image in images)
    table.add_row("kept (top k), passing the quality gate", f"{len(report['top_k'])}, {passing}")
    if not on_cpu:
        gib = 1024**3
        table.add_row(
            "peak GPU memory allocated / reserved",
            f"{torch.cuda.max_memory_allocated() / gib:.1f} / {torch.cuda.max_memory_reserved() / gib:.1f} GiB",
        )
    table.add_row("peak RSS of the process", f"{peak_rss_mb():.0f} MB")
    Console(width=160).print(table)


def method_table(args) -> None:
    """One pack per identity method, each in a fresh process; a row each."""
    with tempfile.TemporaryDirectory() as directory:
        work = Path(directory)
        model, adapter, pack = args.model, args.ip_adapter, args.insightface_pack
        if not args.gpu:
            from generation.tiny import write_tiny_model
            from generation.tiny_faceid import write_tiny_faceid_adapter
            from scoring.tiny_insightface import write_tiny_insightface_pack

            model = write_tiny_model(work / "tiny")
            adapter = write_tiny_faceid_adapter(work / "ip-adapter-faceid", model)
            pack = write_tiny_insightface_pack(work / "insightface")
        elif None in (model, adapter, pack):
            sys.exit("--methods --gpu needs --model, --ip-adapter and --insightface-pack (local files)")
        rows = []
        for method in args.methods.split(","):
            command = [sys.executable, __file__, "--one-method", method, "--work", str(work / method)]
            command += ["--model", str(model), "--ip-adapter", str(adapter), "--insightface-pack", str(pack)]
            command += ["--count", str(args.count), "--size", str(args.size), "--steps", str(args.steps or 0)]
            command += ["--inference-steps", str(args.inference_steps)] + (["--gpu"] if args.gpu else [])
            command += ["--config", str(args.config)] if args.config else []
            finished = subprocess.run(command, capture_output=True, text=True)
            if finished.returncode:
                sys.exit(f"{method} failed:\n{finished.stderr[-3000:]}")
            rows.append(json.loads(finished.stdout.strip().splitlines()[-1]))
    first = rows[0]
    table = Table(title=f"identity methods on {first['device']} ({first['model']}, {args.size} px)")
    for column in ("method", "first batch", "training", "per image", "whole pack", "peak RSS", "peak GPU", "likeness"):
        table.add_column(column, justify="left" if column in ("method", "likeness") else "right")
    for row in rows:
        table.add_row(
            row["method"],
            f"{row['first_image']:.1f} s",
            f"{row['training']:.1f} s ({row['training_steps']} steps)" if row["training_steps"] else "none",
            f"{row['per_image']:.2f} s",
            f"{row['total']:.1f} s",
            f"{row['peak_rss_mb']:.0f} MB",
            f"{row['peak_gpu_gib']:.1f} GiB" if row["peak_gpu_gib"] is not None else "-",
            row["likeness"],
        )
    Console(width=170).print(table)
    print(
        f"{first['images']} images per method ({first['styles']} styles), {first['verified']} of them ai_verified "
        f"in each; likeness scored by {first['likeness_encoder']} against {first['references']} reference photos."
    )


def one_method(args) -> None:
    """Run one identity method's pack (a child of method_table) and print its measures as one JSON line."""
    import torch

    from generation.faceid import IdentityMethod

    if args.gpu and not torch.cuda.is_available():
        sys.exit("--gpu needs a CUDA GPU")
    if args.gpu:
        torch.cuda.reset_peak_memory_stats()
    identity = IdentityMethod(args.one_method, args.ip_adapter, args.insightface_pack)
    styles = ALL_STYLES if args.gpu else ALL_STYLES[:2]
    photos = PERSON if args.gpu else PHOTOS
    tiny = {} if args.gpu else {"rank": 4, "alpha": 4, "learning_rate": 1e-3, "validation_steps": 4}
    run = run_pack(
        args.model,
        args.work,
        photos,
        styles,
        args.count,
        args.size,
        config=args.config,
        inference_steps=args.inference_steps if args.gpu else 4,
        steps=args.steps or None,
        identity=identity,
        **tiny,
    )
    images = run.report["images"]
    confidences = [image["likeness"]["confidence"] for image in images if image["likeness"]]
    bands = [image["likeness"]["band"] for image in images if image["likeness"]]
    likeness = (
        f"median {statistics.median(confidences):.3f}; same {bands.count('same')}, uncertain "
        f"{bands.count('uncertain')}, different {bands.count('different')}, no face {len(images) - len(bands)}"
        if confidences
        else f"no face in any of {len(images)} images"
    )
    trained = identity.trains_lora
    batches = run.marks["batches"]
    if len(batches) > 1:  # between the first and the last batch: rendering alone, whatever came before
        per_image = (batches[-1][0] - batches[0][0]) / (batches[-1][1] - batches[0][1])
    else:
        per_image = (run.rendered - (run.training_done if trained else run.pack_started)) / len(images)
    measures = {
        "method": args.one_method,
        "device": torch.cuda.get_device_name() if args.gpu else f"CPU ({torch.get_num_threads()} threads)",
        "model": Path(args.model).name,
        "first_image": run.marks.get("first_image", run.rendered) - run.pack_started,
        "training": (run.training_done - run.pack_started) if trained else 0.0,
        "training_steps": run.training.get("steps") if trained else 0,
        "per_image": per_image,
        "total": run.finished - run.pack_started,
        "peak_rss_mb": peak_rss_mb(),
        "peak_gpu_gib": torch.cuda.max_memory_allocated() / 1024**3 if args.gpu else None,
        "likeness": likeness,
        "likeness_encoder": run.report["likeness"]["encoder"],
        "images": len(images),
        "styles": len(styles),
        "references": sum(reference["accepted"] for reference in run.report["references"]),
        "verified": sum(image["label"] == "ai_verified" for image in images),
    }
    print(json.dumps(measures))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path)
    parser.add_argument("--config", type=Path, help="diffusers config folder, for a single-file --model")
    parser.add_argument("--gpu", action="store_true", help="the full recipe with real SDXL weights on CUDA")
    parser.add_argument("--gpu-path-on-cpu", action="store_true", help="run the --gpu code on the tiny model")
    parser.add_argument("--steps", type=int, help="training steps (default: 50 on the tiny model; --gpu: auto)")
    parser.add_argument("--count", type=int, help="images per style (default 2 on the tiny model; --gpu: 8)")
    parser.add_argument("--size", type=int, help="image and training size in px (default 64; --gpu: 1024)")
    parser.add_argument("--inference-steps", type=int, default=30, help="--gpu: denoising steps per image")
    parser.add_argument("--checkpoint-every", type=int, default=100, help="--gpu: steps between checkpoints")
    parser.add_argument("--methods", help="compare identity methods, e.g. lora,faceid,hybrid (one pack each)")
    parser.add_argument("--ip-adapter", type=Path, help="--methods --gpu: IP-Adapter FaceID SDXL weights")
    parser.add_argument("--insightface-pack", type=Path, help="--methods --gpu: insightface pack (buffalo_l)")
    parser.add_argument("--one-method", choices=METHODS, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one_method:
        one_method(args)
    elif args.methods:
        args.count, args.size = args.count or 4, args.size or (1024 if args.gpu else 64)
        args.steps = args.steps or (None if args.gpu else 50)
        method_table(args)
    elif args.gpu or args.gpu_path_on_cpu:
        args.count, args.size = args.count or 8, args.size or 1024
        gpu_table(args, on_cpu=args.gpu_path_on_cpu)
    else:
        args.steps, args.count, args.size = args.steps or 50, args.count or 2, args.size or 64
        tiny_table(args)


if __name__ == "__main__":
    main()
