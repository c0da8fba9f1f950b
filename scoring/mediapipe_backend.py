"""Hands and irises from mediapipe 0.10.14: its palm detector, 21-point hand landmarks and 478-point face mesh.

Every face backend (`scoring/faces.py`) finds hands and irises through this module; nothing else imports
mediapipe. The models ship inside the mediapipe wheel (Apache-2.0) and run offline on the CPU; mediapipe is
imported on first use. It is installed without its dependencies (it asks for the GUI opencv, which collides
with opencv-python-headless): `pip install --no-deps mediapipe==0.10.14`, next to what pyproject.toml lists
for it (absl-py, attrs, flatbuffers, matplotlib, protobuf 4.25).

- Hands: the legacy `hands` graph in static-image mode, asked for its palm detections as well, so each hand
  carries the palm detector's confidence next to its landmarks (image pixels) and world landmarks (metres,
  origin at the hand's centre) and the handedness the landmark model reports.
- Irises: the face mesh with `refine_landmarks=True` (478 points, of which 468-477 are the two irises) on a
  crop around the face the face backend found, so the mesh describes that face and costs the same whatever
  the image size; its points are mapped back to the image.
"""

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

import numpy as np
from PIL import Image

from scoring.faces import FaceBackendError, Hand, Iris, Irises

MEDIAPIPE_VERSION = "0.10.14"
INSTALL = f"pip install --no-deps mediapipe=={MEDIAPIPE_VERSION} (after pip install -e .; see the README)"
MAX_HANDS = 4
HAND_SIDE = 640  # hands are found on a copy whose long side is at most this (palm detection runs at 192 px)
HAND_DETECTION_CONFIDENCE = 0.5  # the palm detector's and the landmark model's default thresholds
HAND_PRESENCE_CONFIDENCE = 0.5
MESH_CROP = 2.0  # the mesh runs on a square crop this many face widths wide, centred on the face ...
MESH_SIDE = 384  # ... scaled down to at most this many pixels (the mesh model itself sees 192 px)
# mediapipe's face mesh: iris centre then four iris contour points; the eyelid contour of the same eye.
# 468-472 and the first contour are the subject's right eye, which is on the image's left.
IRIS_POINTS = {"image_left": 468, "image_right": 473}
EYELID_POINTS = {
    "image_left": (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246),
    "image_right": (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466),
}


def find_hands(image: Image.Image) -> list[Hand]:
    """Hands in the image, most confident palm first."""
    rgb = image.convert("RGB")
    scale = min(1.0, HAND_SIDE / max(rgb.size))
    small = rgb.resize((max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale)))) if scale < 1 else rgb
    with _quiet():
        result = _hand_tracker().process({"image": np.ascontiguousarray(np.asarray(small))})
    palms = [
        (float(detection.score[0]), _palm_centre(detection, small.size)) for detection in result.palm_detections or []
    ]
    hands = []
    for landmarks, world, handedness in zip(
        result.multi_hand_landmarks or [],
        result.multi_hand_world_landmarks or [],
        result.multi_handedness or [],
        strict=True,
    ):
        points = np.array([(p.x * small.width, p.y * small.height) for p in landmarks.landmark], dtype=np.float32)
        centre = points[[0, 5, 9, 13, 17]].mean(axis=0)  # the palm: wrist and the four knuckles
        score = min(palms, key=lambda palm: float(np.linalg.norm(palm[1] - centre)), default=(0.0, None))[0]
        label = handedness.classification[0]
        hands.append(
            Hand(
                landmarks=points / scale,
                world=np.array([(p.x, p.y, p.z) for p in world.landmark], dtype=np.float32),
                detection_score=score,
                handedness=label.label,
                handedness_score=float(label.score),
            )
        )
    return sorted(hands, key=lambda hand: hand.detection_score, reverse=True)


def find_irises(image: Image.Image, box: tuple[float, float, float, float]) -> Irises | None:
    """Both irises and eyelids of the face in `box` (left, top, right, bottom), or None if the mesh finds no face."""
    rgb = image.convert("RGB")
    left, top, right, bottom = box
    side = MESH_CROP * max(right - left, bottom - top)
    centre_x, centre_y = (left + right) / 2, (top + bottom) / 2
    crop_box = (
        max(0, round(centre_x - side / 2)),
        max(0, round(centre_y - side / 2)),
        min(rgb.width, round(centre_x + side / 2)),
        min(rgb.height, round(centre_y + side / 2)),
    )
    if crop_box[2] - crop_box[0] < 2 or crop_box[3] - crop_box[1] < 2:
        return None  # the box is outside the image
    crop = rgb.crop(crop_box)
    scale = min(1.0, MESH_SIDE / max(crop.size))
    if scale < 1:
        crop = crop.resize((max(1, round(crop.width * scale)), max(1, round(crop.height * scale))))
    with _quiet():
        result = _face_mesh().process(np.ascontiguousarray(np.asarray(crop)))
    if not result.multi_face_landmarks:
        return None
    mesh = result.multi_face_landmarks[0].landmark
    points = np.array([(p.x * crop.width, p.y * crop.height) for p in mesh], dtype=np.float32) / scale
    points += np.array(crop_box[:2], dtype=np.float32)

    def iris(side_name: str) -> Iris:
        first = IRIS_POINTS[side_name]
        centre = points[first]
        radius = float(np.linalg.norm(points[first + 1 : first + 5] - centre, axis=1).mean())
        return Iris(centre=centre, radius=radius, eyelids=points[list(EYELID_POINTS[side_name])])

    return Irises(image_left=iris("image_left"), image_right=iris("image_right"))


def _palm_centre(detection, size: tuple[int, int]) -> np.ndarray:
    box = detection.location_data.relative_bounding_box
    return np.array([(box.xmin + box.width / 2) * size[0], (box.ymin + box.height / 2) * size[1]], dtype=np.float32)


@contextmanager
def _quiet() -> Iterator[None]:
    """mediapipe 0.10.14 calls a protobuf 4.25 method that warns it is deprecated, on every image."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="SymbolDatabase.GetPrototype", category=UserWarning)
        yield


def _import_solutions():
    try:
        from mediapipe.python import solution_base
        from mediapipe.python.solutions import face_mesh, hands
    except ImportError as error:
        raise FaceBackendError(
            f"hands and eye reflections need mediapipe {MEDIAPIPE_VERSION}, which cannot be imported ({error}); "
            f"install it with: {INSTALL}"
        ) from error
    return solution_base, hands, face_mesh


@lru_cache(maxsize=1)
def _hand_tracker():
    """The graph of `mediapipe.solutions.hands.Hands` in static-image mode, also returning its palm detections."""
    solution_base, hands, _ = _import_solutions()
    return solution_base.SolutionBase(
        binary_graph_path=hands._BINARYPB_FILE_PATH,
        side_inputs={"model_complexity": 1, "num_hands": MAX_HANDS, "use_prev_landmarks": False},
        calculator_params={
            "palmdetectioncpu__TensorsToDetectionsCalculator.min_score_thresh": HAND_DETECTION_CONFIDENCE,
            "handlandmarkcpu__ThresholdingCalculator.threshold": HAND_PRESENCE_CONFIDENCE,
        },
        outputs=["multi_hand_landmarks", "multi_hand_world_landmarks", "multi_handedness", "palm_detections"],
    )


@lru_cache(maxsize=1)
def _face_mesh():
    _, _, face_mesh = _import_solutions()
    return face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=True)
