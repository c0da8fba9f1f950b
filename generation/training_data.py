"""What identity training learns from: face-centred crops of the accepted photos, their face masks, the
number of steps and the order photos are drawn in, and their latents (generation/training.py uses them)."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from PIL import Image

if TYPE_CHECKING:
    from generation.training import TrainingConfig

# More photos add little identity to a LoRA (a varied 10-20 is what published recipes use) but, as steps
# scale with photos, lengthen training linearly; the photos with the largest faces (most detail, least
# upscaling) are kept.
MAX_TRAINING_PHOTOS = 20
VIEWS_PER_PHOTO = 120  # each photo seen about this often (DreamBooth LoRA recipes use 100-200)
ENCODE_CHUNK = 4  # crops per VAE encode call: bounded GPU memory whatever the number of photos
FACE_MASK_DILATION = 1.5  # the detector's box (brows to chin) grown to take in hair, ears and jaw
MIN_STEPS, MAX_STEPS = 200, 1500


@dataclass(frozen=True)
class TrainingCrop:
    photo: int  # index of the photo it was cut from
    pixels: Image.Image  # resolution x resolution
    side: int  # the crop's side in the photo's own pixels: its real size, SDXL's original_size
    face_widths: float | None  # how many face widths the crop spans (None: no face was found)
    face_box: tuple[float, float, float, float] | None  # the face in `pixels` coordinates

    def time_ids(self, resolution: int) -> list[int]:
        """SDXL's micro-conditioning: original size (the crop's real side), crop top-left (0, 0: the crop is
        the intended framing, nothing was cut off), target size."""
        return [self.side, self.side, 0, 0, resolution, resolution]


def prepare_crops(
    photos: Sequence[Image.Image], config: TrainingConfig, names: Sequence[str] | None = None
) -> tuple[list[TrainingCrop], list[dict]]:
    """The training crops of each photo, and per photo a record: used or not, why, and its crops' sizes."""
    from scoring.faces import detect_faces

    names = list(names) if names is not None else [f"photo {index + 1}" for index in range(len(photos))]
    upright = [photo.convert("RGB") for photo in photos]
    faces = [detect_faces(photo) for photo in upright]
    by_face = sorted(range(len(upright)), key=lambda index: -(faces[index][0].width if faces[index] else 0))
    kept = set(by_face[:MAX_TRAINING_PHOTOS])
    crops: list[TrainingCrop] = []
    records = []
    for index, photo in enumerate(upright):
        record = {"name": names[index], "size": list(photo.size)}
        if index not in kept:
            records.append(
                {
                    **record,
                    "used": False,
                    "reason": f"over the cap of {MAX_TRAINING_PHOTOS} training photos; those with larger faces "
                    "were used",
                }
            )
            continue
        photo_crops, widest = crops_of(index, photo, faces[index][0] if faces[index] else None, config)
        crops += photo_crops
        record["crops"] = [
            {"side": crop.side, "face_widths": crop.face_widths, "original_size": [crop.side, crop.side]}
            for crop in photo_crops
        ]
        if photo_crops:
            records.append({**record, "used": True, "reason": "used"})
        else:
            records.append(
                {
                    **record,
                    "used": False,
                    "reason": f"its face is too small for {config.resolution} px training: its widest crop is "
                    f"{widest} px, under the minimum of {config.smallest_crop} px; use a closer or "
                    "higher-resolution photo",
                }
            )
    if not crops:
        from generation.training import TrainingError

        raise TrainingError(
            "no photo can be used for training: " + "; ".join(f"{r['name']}: {r['reason']}" for r in records)
        )
    return crops, records


def crops_of(index: int, photo: Image.Image, face, config: TrainingConfig) -> tuple[list[TrainingCrop], int]:
    """Crops of one photo at each face width (fewer when the photo is too small for the wider ones)."""
    width, height = photo.size
    resolution = config.resolution
    if face is None:
        wanted = [(min(width, height), width / 2, height / 2)]
    else:
        left, top, right, bottom = face.box
        face_width, face_height = right - left, bottom - top
        wanted = []
        for widths in config.crop_face_widths:
            side = min(widths * face_width, width, height)
            # the face a little below the centre in tight crops, in the upper part (with shoulders) in wide ones
            centre_y = (top + bottom) / 2 - 0.1 * face_height + (widths - 2.2) * 0.25 * face_width
            wanted.append((side, (left + right) / 2, centre_y))
    crops, widest = [], 0
    for side, centre_x, centre_y in wanted:
        side = int(side)
        widest = max(widest, side)
        if side < config.smallest_crop or any(abs(side - crop.side) <= 0.02 * side for crop in crops):
            continue  # too small to train at this resolution, or the photo has no room for a wider crop
        x0 = min(max(centre_x - side / 2, 0), width - side)
        y0 = min(max(centre_y - side / 2, 0), height - side)
        box = (round(x0), round(y0), round(x0) + side, round(y0) + side)
        pixels = photo.crop(box).resize((resolution, resolution), Image.Resampling.LANCZOS)
        face_box = None
        if face is not None:
            scale = resolution / side
            face_box = tuple(
                min(max((value - origin) * scale, 0.0), float(resolution))
                for value, origin in zip(face.box, (box[0], box[1], box[0], box[1]), strict=True)
            )
        face_widths = round(side / (face.box[2] - face.box[0]), 2) if face is not None else None
        crops.append(TrainingCrop(index, pixels, side, face_widths, face_box))
    return crops, widest


def face_weights(crop: TrainingCrop, latent_size: tuple[int, int], resolution: int, background: float):
    """Per-latent-pixel loss weights: 1 on the dilated face (an ellipse with a soft edge), `background` elsewhere."""
    import numpy as np

    height, width = latent_size
    if crop.face_box is None:
        return np.ones((height, width), dtype=np.float32)
    left, top, right, bottom = (value * width / resolution for value in crop.face_box)
    centre_x, centre_y = (left + right) / 2, (top + bottom) / 2
    half_width = max(FACE_MASK_DILATION * (right - left) / 2, 1.0)
    half_height = max(FACE_MASK_DILATION * (bottom - top) / 2, 1.0)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32) + 0.5
    radius = np.sqrt(((x - centre_x) / half_width) ** 2 + ((y - centre_y) / half_height) ** 2)
    mask = np.clip((1.25 - radius) / 0.25, 0.0, 1.0)
    return (background + (1.0 - background) * mask).astype(np.float32)


def auto_steps(photos: int, batch_size: int) -> int:
    """Steps that show each photo about VIEWS_PER_PHOTO times, within MIN_STEPS..MAX_STEPS."""
    return min(MAX_STEPS, max(MIN_STEPS, math.ceil(VIEWS_PER_PHOTO * photos / batch_size)))


def sample_schedule(
    crops_per_photo: Sequence[Sequence[int]], steps: int, batch_size: int, seed: int
) -> list[list[int]]:
    """The crop indices of every step's batch: photos drawn without replacement (each photo once per epoch,
    in a shuffled order), one of the photo's crops at random each time; a function of the seed alone."""
    order: list[int] = []
    epoch = 0
    while len(order) < steps * batch_size:
        rng = random.Random(f"{seed}:{epoch}")
        photos = list(range(len(crops_per_photo)))
        rng.shuffle(photos)
        order += [rng.choice(crops_per_photo[photo]) for photo in photos]
        epoch += 1
    return [order[step * batch_size : (step + 1) * batch_size] for step in range(steps)]


def encode_latents(vae, crops: Sequence[TrainingCrop], device):
    """Mean and std of each crop's latent distribution, in chunks of ENCODE_CHUNK, in float32 unless the VAE
    is safe in its own dtype (SDXL's VAE overflows in fp16: its config says force_upcast)."""
    import torch

    own_dtype = vae.dtype
    encode_dtype = torch.float32 if vae.config.force_upcast else own_dtype
    if encode_dtype != own_dtype:
        vae.to(dtype=encode_dtype)
    means, stds = [], []
    try:
        with torch.no_grad():
            for start in range(0, len(crops), ENCODE_CHUNK):
                pixels = torch.stack([to_tensor(crop.pixels) for crop in crops[start : start + ENCODE_CHUNK]])
                distribution = vae.encode(pixels.to(device, dtype=encode_dtype)).latent_dist
                means.append(distribution.mean.float())
                stds.append(distribution.std.float())
    finally:
        if encode_dtype != own_dtype:
            vae.to(dtype=own_dtype)
    mean, std = torch.cat(means), torch.cat(stds)
    if not bool(torch.isfinite(mean).all() and torch.isfinite(std).all()):
        from generation.training import TrainingError

        raise TrainingError(
            "the VAE produced non-finite latents from the photos: the model's VAE is broken or overflowed; "
            "check the model files"
        )
    return mean, std


def to_tensor(image: Image.Image):
    import numpy as np
    import torch

    array = np.asarray(image, dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(array).permute(2, 0, 1)
