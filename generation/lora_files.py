"""A LoRA's files: the weights diffusers loads, the training checkpoints it resumes from, and their hashes."""

from collections.abc import Sequence
from pathlib import Path

LORA_FILE = "pytorch_lora_weights.safetensors"
CHECKPOINT_PATTERN = "step-*"
KEEP_CHECKPOINTS = 2  # older ones are removed as new ones are written


def choose_checkpoint(checkpoints: Sequence[dict]) -> dict | None:
    """The checkpoint whose validation renders look most like the person: the highest mean likeness, the
    later one on a tie (so the last when no render showed the person)."""
    if not checkpoints:
        return None
    best = max(checkpoints, key=lambda checkpoint: (checkpoint["likeness"], checkpoint["step"]))
    if best["likeness"] > 0:
        reason = f"highest mean likeness of its {best['images']} validation renders"
    else:
        reason = "no validation render showed the person (a face like theirs, not a copy of a photo): the last"
    return {"step": best["step"], "likeness": best["likeness"], "reason": reason}


def cpu_copy(state: dict) -> dict:
    return {key: value.detach().to("cpu", copy=True) for key, value in state.items()}


def latest_checkpoint(directory: Path) -> Path | None:
    candidates = [path for path in directory.glob(CHECKPOINT_PATTERN) if (path / "state.pt").exists()]
    return max(candidates, key=lambda path: int(path.name.removeprefix("step-")), default=None)


def write_checkpoint(directory: Path, step: int, state: dict, on_checkpoint=None) -> None:
    """Write to a temporary folder and rename it, so an interrupted write never looks like a checkpoint."""
    import shutil

    import torch

    final = directory / f"step-{step:06d}"
    if final.exists():
        return
    partial = directory / f".step-{step:06d}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    torch.save(state, partial / "state.pt")
    partial.rename(final)
    for older in sorted(directory.glob(CHECKPOINT_PATTERN))[:-KEEP_CHECKPOINTS]:
        shutil.rmtree(older, ignore_errors=True)
    if on_checkpoint:
        on_checkpoint(final)


def use_saved_lora(pipeline, lora_dir: Path) -> None:
    """Replace the adapter being trained by the saved LoRA file, so images come from exactly that file."""
    from diffusers.utils import logging

    if "default" in getattr(pipeline.unet, "peft_config", {}):
        pipeline.unet.delete_adapters("default")
    if "identity" in getattr(pipeline.unet, "peft_config", {}):
        pipeline.unet.delete_adapters("identity")
    verbosity = logging.get_verbosity()
    logging.set_verbosity_error()  # "no LoRA keys for the text encoders": expected, only the UNet is trained
    try:
        pipeline.load_lora_weights(str(lora_dir), weight_name=LORA_FILE, adapter_name="identity")
    finally:
        logging.set_verbosity(verbosity)


def save_lora(pipeline, output_dir: Path, lora_config, get_state) -> Path:
    from diffusers.utils import convert_state_dict_to_diffusers

    layers = convert_state_dict_to_diffusers(get_state(pipeline.unet))
    pipeline.save_lora_weights(
        output_dir, unet_lora_layers=layers, unet_lora_adapter_metadata=lora_config.to_dict(), safe_serialization=True
    )
    return output_dir / LORA_FILE


def file_sha256(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
