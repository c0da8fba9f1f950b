"""Synthetic inconsistencies made from real photos: one eye's catch-light removed, or moved within its iris.

The catch-light is found independently of `scoring.eyes`: the pixels of the iris disc (centre and radius
from the face mesh) at least halfway from the disc's median grey to its brightest, grown by two pixels.
Removing it fills those pixels from around them (OpenCV's Telea inpainting), as a retoucher would; moving
it does the same, then pastes the original pixels `offset` iris radii away.
"""

import cv2
import numpy as np
from PIL import Image

from scoring.faces import Iris

SPOT_LEVEL = 0.35  # a catch-light pixel is at least this far from the disc median grey to its brightest


def catch_light_mask(image: Image.Image, iris: Iris) -> np.ndarray:
    """The brightest spots in the iris disc, as a uint8 mask of the whole image (1 = catch-light)."""
    grey = np.asarray(image.convert("L")).astype(np.float32)
    rows, cols = np.mgrid[0 : grey.shape[0], 0 : grey.shape[1]]
    disc = np.hypot(cols - iris.centre[0], rows - iris.centre[1]) <= iris.radius
    median, brightest = float(np.median(grey[disc])), float(grey[disc].max())
    spots = disc & (grey >= median + SPOT_LEVEL * (brightest - median))
    return cv2.dilate(spots.astype(np.uint8), np.ones((5, 5), np.uint8))


def remove_catch_light(image: Image.Image, iris: Iris) -> Image.Image:
    pixels = np.asarray(image.convert("RGB"))
    return Image.fromarray(cv2.inpaint(pixels, catch_light_mask(image, iris), 3, cv2.INPAINT_TELEA))


def move_catch_light(image: Image.Image, iris: Iris, offset: tuple[float, float]) -> Image.Image:
    original = np.asarray(image.convert("RGB"))
    mask = catch_light_mask(image, iris)
    moved = cv2.inpaint(original, mask, 3, cv2.INPAINT_TELEA)
    rows, cols = np.nonzero(mask)
    dx, dy = round(offset[0] * iris.radius), round(offset[1] * iris.radius)
    moved[rows + dy, cols + dx] = original[rows, cols]
    return Image.fromarray(moved)
