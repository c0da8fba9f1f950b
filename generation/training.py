"""Identity training: a DreamBooth-style LoRA on the SDXL UNet (peft), from a person's accepted photos.

Each step draws its noise and timesteps from a generator seeded with (seed, step), so a run resumed from
a checkpoint produces exactly the LoRA an uninterrupted run would have.
"""

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from PIL import Image

LORA_FILE = "pytorch_lora_weights.safetensors"
TARGET_MODULES = ["to_k", "to_q", "to_v", "to_out.0"]
KEEP_CHECKPOINTS = 2  # older ones are removed as new ones are written


@dataclass(frozen=True)
class TrainingConfig:
    steps: int = 400
    rank: int = 16
    alpha: int = 16
    learning_rate: float = 1e-4
    resolution: int = 1024
    seed: int = 0
    token: str = "hsk"  # a rare identifier token
    class_word: str = "person"
    checkpoint_every: int = 100
    gradient_checkpointing: bool = True  # used on GPU only
    mixed_precision: bool = True  # bf16/fp16 autocast on GPU only

    @property
    def subject(self) -> str:
        return f"{self.token} {self.class_word}"


@dataclass(frozen=True)
class TrainingProgress:
    step: int
    total: int
    loss: float
    eta_seconds: float


@dataclass
class TrainingResult:
    lora_path: Path | None  # None when the run was stopped before the last step
    lora_sha256: str | None
    steps_done: int
    losses: list[float] = field(default_factory=list)
    resumed_from: int = 0


class TrainingStopped(Exception):
    """Raised by a progress callback to stop training after the current step (a checkpoint is written)."""


def face_crops(images: Sequence[Image.Image], resolution: int) -> list[Image.Image]:
    """Square crops centred on each photo's face (about 2.2 face widths wide), at the training resolution."""
    from scoring.faces import detect_faces

    crops = []
    for image in images:
        rgb = image.convert("RGB")
        faces = detect_faces(rgb)
        if faces:
            left, top, right, bottom = faces[0].box
            centre_x, centre_y = (left + right) / 2, (top + bottom) / 2 - 0.1 * (bottom - top)
            half = min(1.1 * (right - left), rgb.width / 2, rgb.height / 2)
            centre_x = min(max(centre_x, half), rgb.width - half)
            centre_y = min(max(centre_y, half), rgb.height - half)
            box = (centre_x - half, centre_y - half, centre_x + half, centre_y + half)
        else:
            side = min(rgb.size)
            box = ((rgb.width - side) / 2, (rgb.height - side) / 2, (rgb.width + side) / 2, (rgb.height + side) / 2)
        crops.append(rgb.crop(tuple(round(v) for v in box)).resize((resolution, resolution), Image.Resampling.LANCZOS))
    return crops


def train_identity_lora(
    pipeline,
    photos: Sequence[Image.Image],
    output_dir: Path,
    config: TrainingConfig = TrainingConfig(),
    progress: Callable[[TrainingProgress], None] | None = None,
    resume: bool = True,
    record: dict | None = None,
    on_checkpoint: Callable[[Path], None] | None = None,
    stop_requested: Callable[[], bool] | None = None,
) -> TrainingResult:
    """Train and save a LoRA (diffusers format, with adapter metadata) into `output_dir`.

    Checkpoints go to `output_dir/checkpoints/` every `config.checkpoint_every` steps and when a progress
    callback raises TrainingStopped (the latest KEEP_CHECKPOINTS are kept); with `resume`, the latest
    checkpoint is picked up; `on_checkpoint` is called with each new checkpoint folder (to copy it to shared
    storage). `stop_requested`, if given, is asked before the photos are encoded and before every step: once
    it answers True, training stops there (no LoRA in the result; a checkpoint if steps were done).
    `record` (e.g. the reference photos' hashes, acceptance reasons and licence notes, the base model's hash)
    is written into `training.json` beside the LoRA, the model's record.
    """
    import torch
    import torch.nn.functional as functional
    from diffusers import DDPMScheduler
    from peft import LoraConfig, set_peft_model_state_dict
    from peft.utils import get_peft_model_state_dict

    def stopped() -> bool:
        return stop_requested is not None and stop_requested()

    if stopped():
        return TrainingResult(None, None, 0)
    output_dir = Path(output_dir)
    checkpoints = output_dir / "checkpoints"
    checkpoints.mkdir(parents=True, exist_ok=True)
    device = pipeline.unet.device
    on_gpu = device.type == "cuda"
    weight_dtype = pipeline.unet.dtype

    unet, vae = pipeline.unet, pipeline.vae
    for module in (unet, vae, pipeline.text_encoder, pipeline.text_encoder_2):
        module.requires_grad_(False)
    lora_config = LoraConfig(
        r=config.rank, lora_alpha=config.alpha, init_lora_weights="gaussian", target_modules=TARGET_MODULES
    )
    torch.manual_seed(config.seed)  # the LoRA's initial weights
    unet.add_adapter(lora_config)
    lora_parameters = [p for p in unet.parameters() if p.requires_grad]
    for parameter in lora_parameters:  # train the adapter in float32 even when the base runs in bf16/fp16
        parameter.data = parameter.data.float()
    if on_gpu and config.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    optimizer = torch.optim.AdamW(lora_parameters, lr=config.learning_rate)
    scheduler = DDPMScheduler.from_config(pipeline.scheduler.config)

    crops = face_crops(photos, config.resolution)
    with torch.no_grad():
        pixels = torch.stack([_to_tensor(crop) for crop in crops]).to(device, dtype=vae.dtype)
        latents_all = vae.encode(pixels).latent_dist.mode() * vae.config.scaling_factor
        prompt = f"a photo of {config.subject}"
        prompt_embeds, _, pooled_embeds, _ = pipeline.encode_prompt(
            prompt, device=device, num_images_per_prompt=1, do_classifier_free_guidance=False
        )
    size = config.resolution
    time_ids = torch.tensor([[size, size, 0, 0, size, size]], device=device, dtype=prompt_embeds.dtype)

    start_step, losses = 0, []
    latest = _latest_checkpoint(checkpoints) if resume else None
    if latest is not None:
        state = torch.load(latest / "state.pt", map_location=device, weights_only=False)
        set_peft_model_state_dict(unet, state["lora"])
        optimizer.load_state_dict(state["optimizer"])
        start_step, losses = state["step"], state["losses"]
        for parameter in lora_parameters:
            parameter.data = parameter.data.float()

    unet.train()
    started = time.monotonic()
    step = start_step
    try:
        while step < config.steps:
            if stopped():
                raise TrainingStopped
            # seeds range over 0..2^63-1; a torch generator takes 64 bits
            generator = torch.Generator(device="cpu").manual_seed((config.seed * 1_000_003 + step) % 2**64)
            index = int(torch.randint(len(crops), (1,), generator=generator))
            latents = latents_all[index : index + 1].float()
            noise = torch.randn(latents.shape, generator=generator).to(device)
            timestep = torch.randint(0, scheduler.config.num_train_timesteps, (1,), generator=generator).to(device)
            noisy = scheduler.add_noise(latents, noise, timestep)
            target = (
                noise
                if scheduler.config.prediction_type == "epsilon"
                else scheduler.get_velocity(latents, noise, timestep)
            )
            with torch.autocast(device.type, dtype=weight_dtype, enabled=on_gpu and config.mixed_precision):
                prediction = unet(
                    noisy.to(weight_dtype),
                    timestep,
                    encoder_hidden_states=prompt_embeds,
                    added_cond_kwargs={"text_embeds": pooled_embeds, "time_ids": time_ids},
                ).sample
            loss = functional.mse_loss(prediction.float(), target.float())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            losses.append(loss.item())
            if step % config.checkpoint_every == 0 or step == config.steps:
                _save_checkpoint(checkpoints, step, unet, optimizer, losses, get_peft_model_state_dict, on_checkpoint)
            if progress:
                elapsed = time.monotonic() - started
                eta = elapsed / (step - start_step) * (config.steps - step)
                progress(TrainingProgress(step, config.steps, losses[-1], eta))
    except TrainingStopped:
        if step > start_step:
            _save_checkpoint(checkpoints, step, unet, optimizer, losses, get_peft_model_state_dict, on_checkpoint)
        unet.eval()
        return TrainingResult(None, None, step, losses, start_step)
    unet.eval()

    lora_path = _save_lora(pipeline, output_dir, lora_config, get_peft_model_state_dict)
    lora_sha256 = file_sha256(lora_path)
    (output_dir / "training.json").write_text(
        json.dumps(
            {
                **(record or {}),
                "lora_sha256": lora_sha256,
                "config": asdict(config),
                "losses": losses,
                "resumed_from": start_step,
            },
            indent=2,
        )
    )
    return TrainingResult(lora_path, lora_sha256, step, losses, start_step)


def smoothed(losses: Sequence[float], window: int = 10) -> list[float]:
    """Moving average of a loss curve, for reports (single diffusion losses are noisy)."""
    window = max(1, min(window, len(losses)))
    return [sum(losses[max(0, i - window + 1) : i + 1]) / (i - max(0, i - window + 1) + 1) for i in range(len(losses))]


def _to_tensor(image: Image.Image):
    import numpy as np
    import torch

    array = np.asarray(image, dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(array).permute(2, 0, 1)


def _latest_checkpoint(directory: Path) -> Path | None:
    candidates = [path for path in directory.glob("step-*") if (path / "state.pt").exists()]
    return max(candidates, key=lambda path: int(path.name.removeprefix("step-")), default=None)


def _save_checkpoint(directory: Path, step: int, unet, optimizer, losses, get_state, on_checkpoint=None) -> None:
    """Write to a temporary folder and rename it, so an interrupted write never looks like a checkpoint."""
    import shutil

    import torch

    final = directory / f"step-{step:06d}"
    if final.exists():
        return
    partial = directory / f".step-{step:06d}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    torch.save(
        {"step": step, "lora": get_state(unet), "optimizer": optimizer.state_dict(), "losses": list(losses)},
        partial / "state.pt",
    )
    partial.rename(final)
    steps = sorted(directory.glob("step-*"), key=lambda path: int(path.name.removeprefix("step-")))
    for older in steps[:-KEEP_CHECKPOINTS]:
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


def _save_lora(pipeline, output_dir: Path, lora_config, get_state) -> Path:
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
