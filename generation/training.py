"""Identity training: a DreamBooth-style LoRA on the SDXL UNet (peft), from a person's accepted photos.

The recipe (the README's "Training recipe" explains each choice and its setting):

- data: up to MAX_TRAINING_PHOTOS photos (those with the largest faces); from each, square crops centred on
  the face at 2.2, 3 and 4 face widths, resized to the training resolution. A crop whose side in the photo
  is under `min_crop_side` (a quarter of the resolution by default) is not used, and each crop's real side
  goes to the UNet as SDXL's `original_size`, so upscaled crops do not teach that blur is full resolution.
- caption: `a photo of <token> <class word>` (`hsk person` by default), the identifier checked against both
  tokenizers; encoded once. Latents are encoded once, in chunks, in float32 (SDXL's VAE overflows in fp16).
- steps: given, or VIEWS_PER_PHOTO views of each photo at `batch_size` photos a step (bounded); photos
  are drawn without replacement (every photo once per epoch, one of its crops at random).
- loss: MSE weighted toward a dilated face mask (the background counts `background_loss_weight`),
  min-SNR weighted (gamma 5), gradients clipped at norm 1, AdamW; a loss that stops being finite stops
  training with an error, and nothing from the diverged steps is saved.
- checkpoints every `checkpoint_every` steps; at each, validation renders at fixed seeds are scored for
  likeness by `scoring`, every checkpoint's likeness goes into training.json and the best one becomes the
  LoRA.

Each step draws its photos, latents, noise and timesteps from generators seeded with (seed, step), so a
run resumed from a checkpoint produces exactly the LoRA an uninterrupted run would have on that device.
The loss is read back from the GPU only every `log_every` steps and at checkpoints.
"""

import json
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from PIL import Image

from generation.lora_files import (
    choose_checkpoint,
    cpu_copy,
    file_sha256,
    latest_checkpoint,
    save_lora,
    write_checkpoint,
)
from generation.training_data import (
    MAX_STEPS,
    MIN_STEPS,
    VIEWS_PER_PHOTO,
    auto_steps,
    encode_latents,
    face_weights,
    prepare_crops,
    sample_schedule,
)

TARGET_MODULES = ["to_k", "to_q", "to_v", "to_out.0"]
CLASS_WORDS = ("person", "woman", "man")
CAPTION = "a photo of {subject}"
MAX_IDENTIFIER_PIECES = 3
LOWER_THE_RATE = (
    "Lower the learning rate (--learning-rate); if it happens at the default, run in float32 (HEADSHOT_DTYPE=float32)"
)


@dataclass(frozen=True)
class TrainingConfig:
    steps: int | None = None  # None: scaled by the number of photos (auto_steps)
    rank: int = 16
    alpha: int = 16
    learning_rate: float = 1e-4
    resolution: int = 1024
    seed: int = 0
    token: str = "hsk"  # a rare identifier, checked against both tokenizers
    class_word: str = "person"  # one of CLASS_WORDS
    checkpoint_every: int = 100
    gradient_checkpointing: bool = False  # recompute activations: far less GPU memory, about 30% slower
    mixed_precision: bool = True  # bf16/fp16 autocast on CUDA (with a gradient scaler in fp16)
    batch_size: int = 2
    log_every: int = 10  # steps between reads of the loss from the device
    crop_face_widths: tuple[float, ...] = (2.2, 3.0, 4.0)
    min_crop_side: int | None = None  # None: a quarter of the resolution
    background_loss_weight: float = 0.25  # the loss weight outside the dilated face mask (inside: 1)
    snr_gamma: float | None = 5.0  # min-SNR weighting; None: plain MSE
    max_grad_norm: float = 1.0
    validation_images: int = 4
    validation_steps: int = 20
    validation_seed: int = 1000
    validation_prompt: str = "a close-up headshot photo of {subject}, looking at the camera, plain background"

    def __post_init__(self):
        if self.class_word not in CLASS_WORDS:
            raise TrainingError(f"unknown class word {self.class_word!r}: use {', '.join(CLASS_WORDS)}")
        if not re.fullmatch(r"[a-z][a-z0-9]{1,15}", self.token):
            raise TrainingError(f"the identifier {self.token!r} must be 2-16 lower-case letters or digits")
        if self.batch_size < 1 or (self.steps is not None and self.steps < 1):
            raise TrainingError("steps and batch size must be at least 1")

    @property
    def subject(self) -> str:
        return f"{self.token} {self.class_word}"

    @property
    def smallest_crop(self) -> int:
        return self.min_crop_side if self.min_crop_side is not None else self.resolution // 4


@dataclass(frozen=True)
class TrainingProgress:
    step: int
    total: int
    loss: float | None  # mean loss since the last report; None between reads from the device
    eta_seconds: float


@dataclass
class TrainingResult:
    lora_path: Path | None  # None when the run was stopped before the last step
    lora_sha256: str | None
    steps_done: int
    losses: list[float] = field(default_factory=list)
    resumed_from: int = 0
    checkpoints: list[dict] = field(default_factory=list)  # each checkpoint's step and validation likeness
    chosen_step: int | None = None  # the checkpoint the LoRA is


class TrainingStopped(Exception):
    """Raised by a progress callback to stop training after the current step (a checkpoint is written)."""


class TrainingError(ValueError):
    """Training cannot go on (unusable photos, identifier or settings, a diverged loss); the message says
    why and what to do."""


@dataclass(frozen=True)
class LikenessCheck:
    """What validation renders are scored against: scoring's identity of the person and its face backend."""

    identity: object  # scoring.score.Identity
    backend: object  # scoring.faces.FaceBackend


def check_identifier(pipeline, config: TrainingConfig) -> dict:
    """Check the identifier and class word against both tokenizers; return how each tokenizes them.

    The identifier must read the same in both (SDXL conditions on both encoders), hold no unknown token, be
    at most MAX_IDENTIFIER_PIECES pieces (a long word splits into pieces with meanings of their own) and
    contain no piece that is a class word or a caption word; the class word must be one known token.
    """
    caption_words = set(CAPTION.replace("{subject}", "").split()) | set(CLASS_WORDS)
    pieces = {}
    for name in ("tokenizer", "tokenizer_2"):
        tokenizer = getattr(pipeline, name)
        token_ids = tokenizer(config.token, add_special_tokens=False).input_ids
        class_ids = tokenizer(config.class_word, add_special_tokens=False).input_ids
        pieces[name] = tokenizer.convert_ids_to_tokens(token_ids)
        if tokenizer.unk_token_id in token_ids or not token_ids:
            raise TrainingError(f"{name} does not know the identifier {config.token!r}: choose another rare word")
        if len(class_ids) != 1 or tokenizer.unk_token_id in class_ids:
            raise TrainingError(
                f"{name} does not read the class word {config.class_word!r} as one token: is this an SDXL model?"
            )
    if pieces["tokenizer"] != pieces["tokenizer_2"]:
        raise TrainingError(
            f"the two tokenizers split the identifier {config.token!r} differently ({pieces['tokenizer']} and "
            f"{pieces['tokenizer_2']}): choose an identifier both read the same way"
        )
    split = pieces["tokenizer"]
    if len(split) > MAX_IDENTIFIER_PIECES:
        raise TrainingError(
            f"the identifier {config.token!r} splits into {len(split)} pieces ({', '.join(split)}), each with a "
            f"meaning of its own: choose a shorter rare word (at most {MAX_IDENTIFIER_PIECES} pieces)"
        )
    common = [piece for piece in split if piece.removesuffix("</w>") in caption_words]
    if common:
        raise TrainingError(
            f"the identifier {config.token!r} contains the common word(s) {', '.join(common)}: choose a rare word"
        )
    return {"token": config.token, "class_word": config.class_word, "pieces": pieces}


def train_identity_lora(
    pipeline,
    photos: Sequence[Image.Image],
    output_dir: Path,
    config: TrainingConfig = TrainingConfig(),
    progress: Callable[[TrainingProgress], None] | None = None,
    resume: bool = True,
    record: dict | None = None,
    on_checkpoint: Callable[[Path], None] | None = None,
    check: LikenessCheck | None = None,
    names: Sequence[str] | None = None,
    stop_requested: Callable[[], bool] | None = None,
) -> TrainingResult:
    """Train and save a LoRA (diffusers format, with adapter metadata) into `output_dir`.

    Checkpoints go to `output_dir/checkpoints/` every `config.checkpoint_every` steps and when a progress
    callback raises TrainingStopped (the latest KEEP_CHECKPOINTS are kept); with `resume`, the latest
    checkpoint is picked up; `on_checkpoint` is called with each new checkpoint folder (to copy it to shared
    storage). `stop_requested`, if given, is asked before the photos are encoded and before every step: once
    it answers True, training stops there (no LoRA in the result; a checkpoint if steps were done). With
    `check`, each scheduled checkpoint's validation renders are scored for likeness and the best checkpoint
    becomes the LoRA. `record` (e.g. the reference photos' hashes, acceptance reasons and licence notes, the
    base model's hash) is written into `training.json` beside the LoRA, the model's record. Raises
    TrainingError for unusable inputs or a loss that is no longer finite.
    """
    import numpy as np
    import torch
    from diffusers import DDPMScheduler
    from peft import LoraConfig, set_peft_model_state_dict
    from peft.utils import get_peft_model_state_dict

    def stopped() -> bool:
        return stop_requested is not None and stop_requested()

    output_dir = Path(output_dir)
    checkpoints_dir = output_dir / "checkpoints"
    # The pipeline's execution device: under CPU offload the UNet's weights sit on the CPU between calls,
    # but everything runs (and so every tensor here lives) on the GPU.
    device = pipeline._execution_device
    on_gpu = device.type == "cuda"
    unet, vae = pipeline.unet, pipeline.vae
    weight_dtype = unet.dtype
    identifier = check_identifier(pipeline, config)
    crops, photo_records = prepare_crops(photos, config, names)
    used_photos = sum(record["used"] for record in photo_records)
    total = config.steps or auto_steps(used_photos, config.batch_size)

    if stopped():
        return TrainingResult(None, None, 0)
    checkpoints_dir.mkdir(parents=True, exist_ok=True)
    for module in (unet, vae, pipeline.text_encoder, pipeline.text_encoder_2):
        module.requires_grad_(False)
    latent_mean, latent_std = encode_latents(vae, crops, device)
    scaling = vae.config.scaling_factor
    with torch.no_grad():
        caption = CAPTION.format(subject=config.subject)
        prompt_embeds, _, pooled_embeds, _ = pipeline.encode_prompt(
            caption, device=device, num_images_per_prompt=1, do_classifier_free_guidance=False
        )
    prompt_embeds = prompt_embeds.to(weight_dtype).expand(config.batch_size, -1, -1)
    pooled_embeds = pooled_embeds.to(weight_dtype).expand(config.batch_size, -1)
    time_ids = torch.tensor([crop.time_ids(config.resolution) for crop in crops], device=device, dtype=weight_dtype)
    latent_size = tuple(latent_mean.shape[-2:])
    weights = np.stack(
        [face_weights(crop, latent_size, config.resolution, config.background_loss_weight) for crop in crops]
    )
    loss_weights = torch.from_numpy(weights)[:, None].to(device)
    crops_per_photo = [
        [index for index, crop in enumerate(crops) if crop.photo == photo]
        for photo in sorted({crop.photo for crop in crops})
    ]
    schedule = torch.tensor(sample_schedule(crops_per_photo, total, config.batch_size, config.seed), device=device)

    lora_config = LoraConfig(
        r=config.rank, lora_alpha=config.alpha, init_lora_weights="gaussian", target_modules=TARGET_MODULES
    )
    torch.manual_seed(config.seed)  # the LoRA's initial weights
    unet.add_adapter(lora_config)
    unet.to(device)  # under CPU offload, so that the optimizer's state is made (and restored) on the GPU
    lora_parameters = [p for p in unet.parameters() if p.requires_grad]
    for parameter in lora_parameters:  # train the adapter in float32 even when the base runs in bf16/fp16
        parameter.data = parameter.data.float()
    if config.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    autocast = on_gpu and config.mixed_precision and weight_dtype in (torch.float16, torch.bfloat16)
    # fp16 gradients underflow without loss scaling; the fused AdamW takes the scaler's inf check on the GPU
    scaler = torch.amp.GradScaler("cuda", enabled=autocast and weight_dtype == torch.float16)
    optimizer = torch.optim.AdamW(lora_parameters, lr=config.learning_rate, fused=on_gpu)
    scheduler = DDPMScheduler.from_config(pipeline.scheduler.config)
    snr_weights = _snr_weights(scheduler, config.snr_gamma).to(device)

    start_step, losses, validations, best = 0, [], [], None
    latest = latest_checkpoint(checkpoints_dir) if resume else None
    if latest is not None:
        state = torch.load(latest / "state.pt", map_location=device, weights_only=False)
        set_peft_model_state_dict(unet, state["lora"])
        optimizer.load_state_dict(state["optimizer"])
        if state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        start_step, losses, validations = state["step"], state["losses"], state.get("validation", [])
        if state.get("best") is not None:
            best = {**state["best"], "lora": state["best"]["lora"] or cpu_copy(state["lora"])}
        for parameter in lora_parameters:
            parameter.data = parameter.data.float()

    def save_checkpoint(step: int) -> None:
        _check_weights(lora_parameters, step)
        lora_state = get_peft_model_state_dict(unet)
        kept = None if best is None else {**best, "lora": None if best["step"] == step else best["lora"]}
        state = {
            "step": step,
            "lora": lora_state,
            "optimizer": optimizer.state_dict(),
            "scaler": scaler.state_dict(),
            "losses": list(losses),
            "validation": list(validations),
            "best": kept,
        }
        write_checkpoint(checkpoints_dir, step, state, on_checkpoint)

    unet.train()
    started = time.monotonic()
    step, pending = start_step, []
    try:
        while step < total:
            if stopped():
                raise TrainingStopped
            # seeds range over 0..2^63-1; a torch generator takes 64 bits
            generator = torch.Generator(device=device).manual_seed((config.seed * 1_000_003 + step) % 2**64)
            batch = schedule[step]
            shape = (config.batch_size, *latent_mean.shape[1:])
            sampled = latent_mean[batch] + latent_std[batch] * torch.randn(shape, generator=generator, device=device)
            latents = sampled * scaling
            noise = torch.randn(shape, generator=generator, device=device)
            timesteps = torch.randint(
                0, scheduler.config.num_train_timesteps, (config.batch_size,), generator=generator, device=device
            )
            noisy = scheduler.add_noise(latents, noise, timesteps)
            target = (
                noise
                if scheduler.config.prediction_type == "epsilon"
                else scheduler.get_velocity(latents, noise, timesteps)
            )
            with torch.autocast(device.type, dtype=weight_dtype, enabled=autocast):
                prediction = unet(
                    noisy.to(weight_dtype),
                    timesteps,
                    encoder_hidden_states=prompt_embeds,
                    added_cond_kwargs={"text_embeds": pooled_embeds, "time_ids": time_ids[batch]},
                ).sample
            squared = (prediction.float() - target.float()) ** 2
            weight = loss_weights[batch]
            per_sample = (squared * weight).sum(dim=(1, 2, 3)) / (weight.sum(dim=(1, 2, 3)) * squared.shape[1])
            loss = (per_sample * snr_weights[timesteps]).mean()
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(lora_parameters, config.max_grad_norm)
            scaler.step(optimizer)
            scaler.update()
            pending.append(loss.detach())
            step += 1

            checkpoint_due = step % config.checkpoint_every == 0 or step == total
            reported = None
            if checkpoint_due or step % config.log_every == 0:
                reported = _read_losses(pending, losses, step)
            if checkpoint_due:
                if check is not None:
                    unet.eval()
                    validations.append(_validate(pipeline, config, check, step))
                    unet.train()
                    if best is None or validations[-1]["likeness"] >= best["likeness"]:
                        best = {"step": step, "likeness": validations[-1]["likeness"], "lora": None}
                        best["lora"] = cpu_copy(get_peft_model_state_dict(unet))
                save_checkpoint(step)
            if progress:
                elapsed = time.monotonic() - started
                eta = elapsed / (step - start_step) * (total - step)
                progress(TrainingProgress(step, total, reported, eta))
    except TrainingStopped:
        _read_losses(pending, losses, step)
        if step > start_step:
            save_checkpoint(step)
        return TrainingResult(None, None, step, losses, start_step, validations)
    finally:
        unet.eval()
        if config.gradient_checkpointing:
            unet.disable_gradient_checkpointing()

    choice = choose_checkpoint(validations) if check is not None else None
    if choice is None:
        choice = {"step": step, "likeness": None, "reason": "the last step (no likeness check was asked for)"}
    elif best is not None and choice["step"] != step:
        set_peft_model_state_dict(unet, best["lora"])
    _check_weights(lora_parameters, choice["step"])
    lora_path = save_lora(pipeline, output_dir, lora_config, get_peft_model_state_dict)
    lora_sha256 = file_sha256(lora_path)
    training = {
        **(record or {}),
        "lora_sha256": lora_sha256,
        "config": asdict(config),
        "steps": total,
        "steps_chosen_by": "given"
        if config.steps
        else f"auto: {VIEWS_PER_PHOTO} views x {used_photos} photos / "
        f"batch {config.batch_size}, within {MIN_STEPS}-{MAX_STEPS}",
        "identifier": identifier,
        "photos": photo_records,
        "device": str(device),
        "dtype": str(weight_dtype).removeprefix("torch."),
        "autocast": autocast,
        "grad_scaler": scaler.is_enabled(),
        "losses": losses,
        "resumed_from": start_step,
        "checkpoints": validations,
        "chosen_checkpoint": choice,
    }
    (output_dir / "training.json").write_text(json.dumps(training, indent=2))
    return TrainingResult(lora_path, lora_sha256, step, losses, start_step, validations, choice["step"])


def _read_losses(pending: list, losses: list[float], step: int) -> float | None:
    """Move the losses computed since the last read from the device (one sync); stop if one is not finite."""
    if not pending:
        return None
    import torch

    values = torch.stack(pending).tolist()
    pending.clear()
    first_bad = next((index for index, value in enumerate(values) if not math.isfinite(value)), None)
    if first_bad is not None:
        bad_step = step - len(values) + first_bad + 1
        raise TrainingError(
            f"training diverged: the loss is {values[first_bad]} at step {bad_step}, so no LoRA was saved (the "
            "checkpoints before that step are intact). " + LOWER_THE_RATE
        )
    losses.extend(values)
    return sum(values) / len(values)


def _check_weights(parameters: list, step: int) -> None:
    """Stop rather than save a LoRA whose weights the last update made infinite or NaN (one sync)."""
    import torch

    if not bool(torch.stack([parameter.isfinite().all() for parameter in parameters]).all()):
        raise TrainingError(
            f"training diverged: the LoRA's weights are no longer finite after step {step}, so they were not "
            "saved (the checkpoints before that step are intact). " + LOWER_THE_RATE
        )


def _snr_weights(scheduler, gamma: float | None):
    """Min-SNR loss weight of every timestep (Hang et al. 2023, as diffusers' training scripts apply it)."""
    import torch

    alphas_cumprod = scheduler.alphas_cumprod.float()
    if gamma is None:
        return torch.ones_like(alphas_cumprod)
    snr = alphas_cumprod / (1.0 - alphas_cumprod)
    weights = torch.clamp(snr, max=gamma) / snr
    return weights + 1 if scheduler.config.prediction_type == "v_prediction" else weights


def _validate(pipeline, config: TrainingConfig, check: LikenessCheck, step: int) -> dict:
    """Render the validation images (fixed seeds) with the LoRA as it is, and score their likeness."""
    import statistics

    from generation.presets import StylePreset
    from generation.render import render
    from scoring.likeness import confidence_for
    from scoring.score import score_candidate

    started = time.monotonic()
    preset = StylePreset("validation", "validation render", config.validation_prompt, "", 5.0)
    images = render(
        pipeline,
        [preset],
        config.subject,
        config.validation_images,
        seed=config.validation_seed,
        steps=config.validation_steps,
        size=config.resolution,
        batch_size=config.validation_images,
    )
    values, distances, near_copies = [], [], 0
    for image in images:
        report = score_candidate(f"validation-{image.seed}", image.pixels, check.identity, check.backend)
        if report.likeness is None:
            values.append(0.0)
            continue
        distances.append(report.likeness.distance)
        near_copies += report.likeness.near_copy_of is not None
        # the confidence recomputed from the distance: the report's is rounded for display
        values.append(0.0 if report.likeness.near_copy_of else confidence_for(report.likeness.distance, check.backend))
    return {
        "step": step,
        "likeness": round(sum(values) / len(values), 6),
        "images": len(values),
        "faces": len(distances),
        "near_copies": near_copies,
        "median_distance": round(statistics.median(distances), 4) if distances else None,
        "seconds": round(time.monotonic() - started, 2),
    }


def smoothed(losses: Sequence[float], window: int = 10) -> list[float]:
    """Moving average of a loss curve, for reports (single diffusion losses are noisy)."""
    window = max(1, min(window, len(losses)))
    return [sum(losses[max(0, i - window + 1) : i + 1]) / (i - max(0, i - window + 1) + 1) for i in range(len(losses))]
