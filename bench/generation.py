"""The whole pack on the tiny random SDXL: time, loss curve, peak memory, memory options.

    .venv/bin/python bench/generation.py [--model DIR] [--steps 50] [--count 2] [--size 64]

Without --model it writes the tiny model to a temporary folder. Device and precision are chosen as the
product chooses them (CUDA bf16/fp16 when there is a GPU, else CPU fp32), so the same command measures a GPU.
Target on the 2-core CPU machines: 5 reference photos, 50 training steps and 4 images at 64 px under 60 s.
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rich.console import Console
from rich.table import Table

FACES = Path(__file__).resolve().parents[2] / "shared" / "data" / "faces"
PHOTOS = ["img1.jpg", "img2.jpg", "img4.jpg", "img5.jpg", "img6.jpg"]


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--count", type=int, default=2, help="images per style (two styles)")
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args()

    import torch

    from generation.models import MemoryOptions, load_model
    from generation.pack import PackSettings, Provenance, ReferenceInput, make_pack
    from generation.presets import load_presets, select_presets
    from generation.tiny import write_tiny_model
    from generation.training import TrainingConfig
    from provenance import CredentialStore, ImageLimits
    from provenance.registry import InMemoryRegistry
    from scoring.faces import DlibBackend

    with tempfile.TemporaryDirectory() as directory:
        work = Path(directory)
        started = time.perf_counter()
        model_path = args.model or write_tiny_model(work / "tiny")
        model = load_model(model_path, cache_dir=work / "cache")
        loaded = time.perf_counter()
        store = CredentialStore(work / "credentials")
        provenance = Provenance(store.signing_identity(), InMemoryRegistry(), store.trust_anchors(), ImageLimits())
        settings = PackSettings(
            select_presets(load_presets(), ["corporate-grey", "outdoor-natural"]),
            count=args.count,
            inference_steps=4,
            size=args.size,
            top_k=args.count,
            training=TrainingConfig(steps=args.steps, rank=4, alpha=4, learning_rate=1e-3, resolution=args.size),
        )
        marks = {}
        references = [ReferenceInput(name, (FACES / name).read_bytes()) for name in PHOTOS]
        report = make_pack(
            model,
            references,
            work / "pack",
            settings,
            provenance,
            DlibBackend(),
            on_training=lambda p: marks.setdefault("training_done", time.perf_counter()) if p.step == p.total else None,
        )
        finished = time.perf_counter()
        peak = peak_rss_mb()

        tiled = load_model(
            model_path, memory=MemoryOptions(vae_tiling=True, vae_slicing=True), cache_dir=work / "cache"
        )
        options = (
            f"{', '.join(tiled.applied)} (vae.use_tiling={tiled.pipeline.vae.use_tiling}, "
            f"vae.use_slicing={tiled.pipeline.vae.use_slicing})"
        )

    losses = report["training"]["loss"]
    head, tail = losses[: max(1, len(losses) // 5)], losses[-max(1, len(losses) // 5) :]
    table = Table(title=f"headshot pack on {args.model or 'the tiny model'} ({model.device}, {model.dtype_name})")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("torch threads", str(torch.get_num_threads()))
    table.add_row("write + load model", f"{loaded - started:.1f} s")
    table.add_row(
        f"training ({args.steps} steps, {len(PHOTOS)} photos, {args.size} px)",
        f"{marks.get('training_done', finished) - loaded:.1f} s",
    )
    table.add_row(
        f"render + score + disclose {len(report['images'])} images",
        f"{finished - marks.get('training_done', loaded):.1f} s",
    )
    table.add_row("whole pack (model load to report.json)", f"{finished - started:.1f} s (target < 60 s on CPU)")
    table.add_row("loss, mean of first / last fifth", f"{sum(head) / len(head):.4f} -> {sum(tail) / len(tail):.4f}")
    table.add_row("peak RSS of the process", f"{peak:.0f} MB")
    table.add_row(
        "images verifying as ai_verified",
        f"{sum(i['label'] == 'ai_verified' for i in report['images'])} of {len(report['images'])}",
    )
    table.add_row("memory options applied", options)
    Console(width=130).print(table)


if __name__ == "__main__":
    main()
