"""Rendering headshots: N images per style preset, batched, each with its seed and every parameter recorded.

Rendered pixels stay in memory: the only way to a file is `generation.pack`, which scores and then
discloses each image through `provenance` (watermark, registry, signed Content Credentials).
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from PIL import Image

from generation.presets import StylePreset


@dataclass(frozen=True)
class RenderedImage:
    style: str
    seed: int
    parameters: dict
    pixels: Image.Image  # not to be saved as such: see the module docstring


def seed_for(base_seed: int, style_index: int, image_index: int) -> int:
    """`base_seed + 1000 style_index + image_index`, wrapped to stay within 0..2^63-1 (what a job's seed may be)."""
    return (base_seed + 1000 * style_index + image_index) % 2**63


def render(
    pipeline,
    presets: Sequence[StylePreset],
    subject: str,
    count: int,
    seed: int = 0,
    steps: int = 30,
    size: int = 1024,
    batch_size: int = 4,
    progress: Callable[[int, int], None] | None = None,
    conditioning: Callable[[int, float], dict] | None = None,
) -> list[RenderedImage]:
    """`count` images per preset; image i of preset j uses seed `seed + 1000 j + i`, so results are reproducible.

    `conditioning(batch, guidance_scale)` returns extra pipeline inputs for a batch (an identity adapter's)."""
    import torch

    pipeline.set_progress_bar_config(disable=True)
    jobs = [(j, preset, seed_for(seed, j, i)) for j, preset in enumerate(presets) for i in range(count)]
    rendered: list[RenderedImage] = []
    if progress:
        progress(0, len(jobs))  # rendering starts: the ETA is measured from here
    for start in range(0, len(jobs), batch_size):
        batch = jobs[start : start + batch_size]
        by_preset: dict[str, list] = {}
        for job in batch:
            by_preset.setdefault(job[1].name, []).append(job)
        for group in by_preset.values():
            preset = group[0][1]
            seeds = [job[2] for job in group]
            parameters = {
                "prompt": preset.render(subject),
                "negative_prompt": preset.negative_prompt,
                "guidance_scale": preset.guidance_scale,
                "inference_steps": steps,  # the job API's and the CLI's names
                "size": size,
            }
            generators = [torch.Generator(device="cpu").manual_seed(value) for value in seeds]
            output = pipeline(
                prompt=[parameters["prompt"]] * len(group),
                negative_prompt=[parameters["negative_prompt"]] * len(group),
                generator=generators,
                output_type="pil",
                **(conditioning(len(group), preset.guidance_scale) if conditioning else {}),
                guidance_scale=preset.guidance_scale,
                num_inference_steps=steps,
                width=size,
                height=size,
            )
            for value, image in zip(seeds, output.images, strict=True):
                rendered.append(RenderedImage(preset.name, value, {**parameters, "seed": value}, image))
        if progress:
            progress(len(rendered), len(jobs))
    order = {(job[1].name, job[2]): position for position, job in enumerate(jobs)}
    return sorted(rendered, key=lambda image: order[(image.style, image.seed)])
