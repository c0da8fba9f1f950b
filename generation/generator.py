"""The seam between a pack and what renders its images: a `Generator`.

Reference photos, style presets and render settings go in; rendered images (in memory, not yet disclosed)
and a description of the model parts used come out, and `generation.pack` discloses each image with those
parts named in its manifest. `LoraGenerator` (SDXL with an identity LoRA trained by `generation.training`)
is the first implementation; `generation.faceid.AdapterGenerator` (IP-Adapter FaceID on the ArcFace
embedding, alone or with the LoRA) the others.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from PIL import Image

from generation.presets import StylePreset
from generation.render import RenderedImage


@dataclass(frozen=True)
class RenderSettings:
    count: int  # images per style
    inference_steps: int
    size: int
    seed: int


@dataclass(frozen=True)
class ModelPart:
    """One file or folder of weights that shaped an image, named in its manifest by role and hash."""

    role: str  # sdxl-base, identity-lora, ...
    source: str
    sha256: str


@dataclass(frozen=True)
class Rendering:
    images: list[RenderedImage]
    method: str  # how identity was conveyed: "lora", or "faceid" / "hybrid" (generation/faceid.py)
    description: str  # the manifest's generator, e.g. "Stable Diffusion XL (base) with an identity LoRA"
    parts: tuple[ModelPart, ...]
    details: dict = field(default_factory=dict)  # what the report records of the method (e.g. the adapter)


class Generator(Protocol):
    method: str

    def render(
        self,
        references: Sequence[Image.Image],
        styles: Sequence[StylePreset],
        settings: RenderSettings,
        progress: Callable[[int, int], None] | None = None,
    ) -> Rendering: ...


def render_styles(pipeline, styles, subject: str, settings: RenderSettings, progress=None, conditioning=None):
    """`generation.render.render` with a generator's settings: `settings.count` images per style."""
    from generation.render import render

    return render(
        pipeline,
        styles,
        subject,
        settings.count,
        seed=settings.seed,
        steps=settings.inference_steps,
        size=settings.size,
        progress=progress,
        conditioning=conditioning,
    )


class LoraGenerator:
    """SDXL with an identity LoRA: the references were learned in training, so rendering needs only the LoRA."""

    method = "lora"

    def __init__(self, model, lora_dir: Path, default_subject: str):
        from generation.lora_files import LORA_FILE, file_sha256
        from generation.pack import PackError, trained_subject

        self.model = model
        self.lora_dir = Path(lora_dir)
        lora_path = self.lora_dir / LORA_FILE
        if not lora_path.exists():
            raise PackError(f"no {LORA_FILE} in {lora_dir}; train one with `headshot train --out {lora_dir}`")
        self.lora = ModelPart("identity-lora", str(lora_path), file_sha256(lora_path))
        self.subject = trained_subject(self.lora_dir, default_subject)

    def render(self, references, styles, settings, progress=None) -> Rendering:
        from generation.lora_files import use_saved_lora

        use_saved_lora(self.model.pipeline, self.lora_dir)
        images = render_styles(self.model.pipeline, styles, self.subject, settings, progress)
        base = ModelPart("sdxl-base", str(self.model.source), self.model.sha256)
        description = f"Stable Diffusion XL ({self.model.source.name}) with an identity LoRA"
        return Rendering(images, self.method, description, (base, self.lora))
