"""Perceptual fingerprints that find a disclosed image again after re-encoding, resizing or cropping.

Two kinds of 64-bit pHash (imagehash):

- frame: the whole image. pHash survives JPEG, resizing and brightness changes (distance <= 4 measured)
  but a 5% crop moves it by up to ~18 bits, as far as two different faces can be. So each registered
  image stores seven frame hashes: the whole frame, centre crops to 90% and 80%, and the four crops
  that cut 10% off one side. A cropped copy lands near one of them.
- face: the face-aligned crop (dlib landmarks, rotated upright and scaled). Cropping the frame does not
  move the face, so this hash is stable under any crop that keeps the face; images without a face
  have none.

A query computes one frame hash and one face hash and compares them with every registered image.
"""

from dataclasses import dataclass

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


@dataclass(frozen=True)
class Fingerprints:
    frame: tuple[int, ...]  # one hash per FRAME_VARIANTS entry when registered; only "full" for a query
    face: int | None  # hash of the largest face's aligned crop, if a face was found


def fingerprint_for_registry(image: Image.Image) -> Fingerprints:
    """All frame variants and the face hash, for registering a disclosed image."""
    small = _small_grey(image)
    frame = tuple(perceptual_hash(_crop(small, box)) for box in FRAME_VARIANTS.values())
    return Fingerprints(frame=frame, face=_face_hash(image))


def fingerprint_for_query(image: Image.Image) -> Fingerprints:
    """The whole-frame and face hashes of a photo to look up."""
    return Fingerprints(frame=(perceptual_hash(image),), face=_face_hash(image))


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
