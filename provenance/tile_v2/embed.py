"""Embedding tile-v2: the keyed chip grid tiled over the luminance, stronger where the image is textured."""

from collections.abc import Callable

import cv2
import numpy as np
from PIL import Image

from provenance.tile_v2.pattern import (
    CHIPS,
    KEY,
    PAYLOAD_BITS,
    TILES_PER_SIDE,
    PatternKey,
    activity_mask,
    luma,
    render_periodic,
)

WORKING_SIDE = 2048  # larger images are embedded at this size (the pattern is smooth) and upsampled
STRENGTH = 2.4  # RMS grey-level change from 768 px up: PSNR about 40.4 dB
FACE_SEARCH_SIDE = 512  # the face is looked for on a copy this size
FACE_GAIN, FACE_SPREAD = 1.0, 0.9  # up to twice the mask at the face's centre, over ~0.9 face sizes
_MASK_LIMITS = (0.6, 2.0, 0.5)  # the activity mask's floor, ceiling and exponent


def embed(image: Image.Image, payload: int) -> Image.Image:
    """Return an RGB copy of `image` carrying the 64-bit `payload`."""
    return add_pattern(image, payload, KEY, _MASK_LIMITS, STRENGTH, emphasis=_face_emphasis)


def add_pattern(
    image: Image.Image,
    payload: int,
    key: PatternKey,
    mask_limits: tuple[float, float, float],
    rms_strength: float,
    emphasis: Callable[[Image.Image], np.ndarray | float] | None = None,
) -> Image.Image:
    """An RGB copy of `image` with `key`'s chip grid for `payload` tiled over its luminance (both tile versions).

    The mark is stronger where the image is textured (`mask_limits`: the activity mask's floor, ceiling and
    exponent) and where `emphasis` of the working copy says, at an RMS change of `rms_strength` grey levels.
    """
    if not 0 <= payload < 1 << PAYLOAD_BITS:
        raise ValueError("the watermark payload must be a 64-bit unsigned integer")
    cv2.setNumThreads(1)
    rgb = image.convert("RGB")
    working = working_copy(rgb)
    pixels = np.asarray(working, dtype=np.float32)
    height, width = pixels.shape[:2]
    period = max(height, width) / TILES_PER_SIDE
    pattern = render_periodic(key.chip_grid(payload), period, height, width)

    mask = activity_mask(luma(pixels), period / CHIPS, *mask_limits)
    if emphasis is not None:
        mask = mask * emphasis(working)
    delta = pattern * mask
    delta *= _strength(max(rgb.size), rms_strength) / (np.sqrt(np.mean(delta * delta)) + 1e-9)
    if working.size != rgb.size:
        delta = cv2.resize(delta, rgb.size, interpolation=cv2.INTER_LINEAR)
    original = np.asarray(rgb)
    marked = np.empty_like(original)
    for top in range(0, original.shape[0], 512):  # in bands, so a 50 MP image needs no float copy of itself
        band = original[top : top + 512].astype(np.float32) + delta[top : top + 512, :, None]
        marked[top : top + 512] = np.clip(np.rint(band), 0, 255)
    return Image.fromarray(marked, "RGB")


def _face_emphasis(image: Image.Image) -> np.ndarray | float:
    """More of the mark around the largest face, less elsewhere (the total stays the same): a profile site's
    square crop around the face then keeps a larger share of it."""
    from scoring.faces import detect_faces

    scale = min(1.0, FACE_SEARCH_SIDE / max(image.size))
    small = image.resize((round(image.width * scale), round(image.height * scale))) if scale < 1 else image
    faces = detect_faces(small)
    if not faces:
        return 1.0
    left, top, right, bottom = (value / scale for value in faces[0].box)
    spread = FACE_SPREAD * max(right - left, bottom - top)
    ys, xs = np.ogrid[: image.height, : image.width]
    distance = ((xs - (left + right) / 2) ** 2 + (ys - (top + bottom) / 2) ** 2) / (2 * spread**2)
    return (1.0 + FACE_GAIN * np.exp(-distance)).astype(np.float32)


def _strength(long_side: int, rms_strength: float) -> float:
    """RMS grey-level change: `rms_strength` from 768 px up; smaller images (fewer pixels per chip) get up to
    twice it."""
    return rms_strength * float(np.clip(np.sqrt(768 / long_side), 1.0, 2.0))


def working_copy(image: Image.Image) -> Image.Image:
    """`image`, brought down to WORKING_SIDE px on its long side if it is larger (both tile versions)."""
    scale = WORKING_SIDE / max(image.size)
    if scale >= 1:
        return image
    return image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.BOX)
