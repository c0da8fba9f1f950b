"""Perceptual fingerprints that find a disclosed image again after re-encoding, resizing or cropping.

Two kinds of 64-bit pHash (imagehash):

- frame: the whole image. pHash survives JPEG, resizing and brightness changes (distance <= 4 measured)
  but a 5% crop moves it by up to ~18 bits, as far as two different faces can be. So each registered
  image stores seven frame hashes: the whole frame, centre crops to 90% and 80%, and the four crops
  that cut 10% off one side. A cropped copy lands near one of them.
- face: the face-aligned crop (dlib landmarks, rotated upright and scaled). Cropping the frame does not
  move the face, so this hash is stable under any crop that keeps the face; images without a face
  have none.

- pdq: the 256-bit PDQ hash of the whole frame (pdqhash, Meta's algorithm). A registered image stores one;
  a query computes its eight dihedral variants (four rotations, each mirrored or not), so a mirrored or
  quarter-turned copy lands within a few bits of the registered hash.

A query computes one frame hash, one face hash and the eight PDQ variants and compares them with every
registered image. Fingerprints only propose candidates: the watermark's code bits decide (soft_binding.py).
"""

from dataclasses import dataclass

import numpy as np
from PIL import Image

from scoring.faces import PHASH_SIDE, perceptual_hash

ALGORITHM = "io.github.headshot.fingerprint.phash-v1"
FRAME_VARIANTS = {
    "full": (0.0, 0.0, 1.0, 1.0),
    "centre90": (0.05, 0.05, 0.95, 0.95),
    "centre80": (0.1, 0.1, 0.9, 0.9),
    "cut-left": (0.1, 0.0, 1.0, 1.0),
    "cut-right": (0.0, 0.0, 0.9, 1.0),
    "cut-top": (0.0, 0.1, 1.0, 1.0),
    "cut-bottom": (0.0, 0.0, 1.0, 0.9),
}


PDQ_ALGORITHM = "io.github.headshot.fingerprint.pdq-v1"
PDQ_SIDE = 64  # PDQ works on a 64x64 buffer; given exactly that, its 8 dihedral variants are exact
PDQ_BYTES = 32


@dataclass(frozen=True)
class Fingerprints:
    frame: tuple[int, ...]  # one hash per FRAME_VARIANTS entry when registered; only "full" for a query
    face: int | None  # hash of the largest face's aligned crop, if a face was found
    pdq: tuple[bytes, ...] = ()  # registered: the frame's PDQ hash; query: its 8 dihedral variants; () if none


def fingerprint_for_registry(image: Image.Image) -> Fingerprints:
    """All frame variants and the face hash, for registering a disclosed image."""
    small = _small_grey(image)
    frame = tuple(perceptual_hash(_crop(small, box)) for box in FRAME_VARIANTS.values())
    return Fingerprints(frame=frame, face=_face_hash(image), pdq=_pdq(image, dihedral=False))


def fingerprint_for_query(image: Image.Image) -> Fingerprints:
    """The whole-frame and face hashes of a photo to look up, and the PDQ hashes of its 8 orientations."""
    return Fingerprints(frame=(perceptual_hash(image),), face=_face_hash(image), pdq=_pdq(image, dihedral=True))


def pdq_distance(a: bytes, b: bytes) -> int:
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).bit_count()


def _pdq(image: Image.Image, dihedral: bool) -> tuple[bytes, ...]:
    import pdqhash

    # Squeezed to 64x64 as PDQ itself would, but by area averaging here: with PDQ's own decimation of a larger
    # image, a mirrored or half-turned copy lands 30-50 bits away from the matching variant instead of 0.
    rgb = image.convert("RGB").resize((PDQ_SIDE, PDQ_SIDE), Image.Resampling.BOX, reducing_gap=2.0)
    pixels = np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8))
    if dihedral:
        hashes, _ = pdqhash.compute_dihedral(pixels)
    else:
        hashes = [pdqhash.compute(pixels)[0]]
    return tuple(np.packbits(np.asarray(bits, dtype=np.uint8)).tobytes() for bits in hashes)


def _small_grey(image: Image.Image) -> Image.Image:
    grey = image.convert("L")
    return grey.resize((PHASH_SIDE, PHASH_SIDE), Image.Resampling.BOX) if max(grey.size) > PHASH_SIDE else grey


def _crop(image: Image.Image, box: tuple[float, float, float, float]) -> Image.Image:
    width, height = image.size
    left, top, right, bottom = box
    return image.crop((round(left * width), round(top * height), round(right * width), round(bottom * height)))


def _face_hash(image: Image.Image) -> int | None:
    from scoring.faces import align_face, detect_faces

    if min(image.size) < 32:
        return None
    faces = detect_faces(image)
    if not faces:
        return None
    return perceptual_hash(align_face(image, faces[0], size=128, padding=0.25).convert("L"))
