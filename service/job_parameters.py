"""A job's parameters: what `POST /v1/subjects/{id}/jobs` accepts, with the one set of defaults.

Training defaults are `generation.training.TrainingConfig`'s own; the stages build their configuration from a
job's stored parameters through this model, so a default lives in one place.
"""

import math
from typing import Literal

from pydantic import BaseModel, Field, model_validator

from generation.training import TrainingConfig
from service.text import plain_text

MAX_CHECKPOINTS = 100  # checkpoints one training run may write (the latest two are kept)


class JobParameters(BaseModel):
    steps: int | None = Field(
        None, ge=1, le=100_000, description="Training steps; default: scaled by the number of accepted photos."
    )
    batch_size: int = Field(
        TrainingConfig.batch_size, ge=1, le=16, description="Photos per training step (their latents are cached)."
    )
    class_word: Literal["person", "woman", "man"] = Field(
        TrainingConfig.class_word, description="Who the photos show; the caption is 'a photo of hsk <class_word>'."
    )
    resolution: int | None = Field(None, ge=32, le=2048, description="Training resolution; default: size.")
    rank: int = Field(TrainingConfig.rank, ge=1, le=256)
    alpha: int = Field(TrainingConfig.alpha, ge=1, le=1024)
    learning_rate: float = Field(TrainingConfig.learning_rate, gt=0, le=1)
    seed: int = Field(0, ge=0, le=2**63 - 1)
    styles: list[plain_text(64)] | None = Field(
        None, max_length=50, description="Style preset names (default: all presets)."
    )
    count: int = Field(4, ge=1, le=100, description="Images per style.")
    inference_steps: int = Field(30, ge=1, le=200)
    size: int = Field(1024, ge=32, le=2048)
    top_k: int = Field(10, ge=1, le=1000)
    checkpoint_every: int = Field(
        TrainingConfig.checkpoint_every,
        ge=1,
        description=f"Steps between checkpoints; at least steps / {MAX_CHECKPOINTS}.",
    )
    lora_job_id: plain_text(64) | None = Field(
        None, description="For generate (lora, hybrid): the succeeded train job whose LoRA to use."
    )
    identity: Literal["lora", "faceid", "hybrid"] = Field(
        "lora",
        description="How the images carry the person: lora (a trained identity LoRA), faceid (IP-Adapter FaceID on "
        "the ArcFace embedding of the accepted photos, no training; research-only weights) or hybrid (both).",
    )
    adapter_scale: float | None = Field(
        None, ge=0, le=2, description="The IP-Adapter's strength for faceid and hybrid (default 1.0 and 0.5)."
    )

    @model_validator(mode="after")
    def few_enough_checkpoints(self) -> "JobParameters":
        least = math.ceil(self.steps / MAX_CHECKPOINTS) if self.steps else 1
        if self.checkpoint_every < least:
            raise ValueError(
                f"checkpoint_every must be at least {least} for {self.steps} steps "
                f"(at most {MAX_CHECKPOINTS} checkpoints a run)"
            )
        return self

    def training_config(self, gradient_checkpointing: bool = False) -> TrainingConfig:
        return TrainingConfig(
            steps=self.steps,
            batch_size=self.batch_size,
            class_word=self.class_word,
            gradient_checkpointing=gradient_checkpointing,
            rank=self.rank,
            alpha=self.alpha,
            learning_rate=self.learning_rate,
            resolution=self.resolution or self.size,
            seed=self.seed,
            checkpoint_every=self.checkpoint_every,
        )

    def pack_settings(self, presets_file, gradient_checkpointing: bool = False, identity=None):
        """The pack's settings; `identity` is the IdentityMethod with the installation's files (default: lora)."""
        from generation.faceid import IdentityMethod
        from generation.pack import PackSettings
        from generation.presets import load_presets, select_presets

        return PackSettings(
            select_presets(load_presets(presets_file), self.styles),
            count=self.count,
            inference_steps=self.inference_steps,
            size=self.size,
            seed=self.seed,
            top_k=self.top_k,
            training=self.training_config(gradient_checkpointing),
            identity=identity or IdentityMethod(),
        )
