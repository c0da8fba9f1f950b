"""Artifact checks: each measures one thing, compares it with a threshold and says what it means.

Thresholds were calibrated on the real photos in shared/data/faces (every single-face photo passes
every check here) and shown to fire on synthetic degradations (tests/scoring/test_checks.py); the measured
ranges are in docs/SCORING.md. The two checks on mediapipe's landmarks live beside this module: the
reflections in the eyes (`scoring/eyes.py`) and the hands (`scoring/hands.py`).
"""

from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from scoring.faces import Face

ALIGNED_SIZE = 256
# where the aligned crop puts the eye centres seen on the image's right and left (fractions of ALIGNED_SIZE)
_IMAGE_RIGHT_EYE, _IMAGE_LEFT_EYE = (0.65, 0.42), (0.35, 0.42)

SECOND_FACE_RATIO = 0.35  # a face at least this fraction of the main face's width counts as a second face
FRAMING_MIN_WIDTH, FRAMING_MAX_WIDTH = 0.08, 0.9  # face width / image width
FRAMING_MAX_OVERFLOW = 0.12  # head (face box + forehead) outside the frame, as a fraction of the face size
SHARPNESS_MIN = 40.0  # variance of the Laplacian of the aligned grey face (real photos: >= 79)
EXPOSURE_MAX_CLIPPED = 0.06  # share of face pixels at <= 3 or >= 252
GEOMETRY_MAX_EYE_RATIO = 1.45  # wider eye / narrower eye (real photos: <= 1.17)
GEOMETRY_NOSE_DROP = (0.45, 1.1)  # nose base below the eye line, in eye distances (real photos: 0.63-0.90)
POSE_MAX_ROLL = 25.0  # degrees
POSE_MAX_YAW = 0.4  # nose offset from the eye midline, in inter-ocular distances


@dataclass(frozen=True)
class CheckResult:
    name: str
    value: float | None
    threshold: str
    passed: bool
    explanation: str


@dataclass(frozen=True)
class FaceView:
    """The main face, aligned upright to ALIGNED_SIZE px with eyes at fixed places, and its landmarks there."""

    crop: np.ndarray  # RGB uint8
    landmarks: np.ndarray  # (5, 2) in crop coordinates
    landmarks68: np.ndarray | None
    inter_ocular: float  # in the original image, px


def face_view(image: Image.Image, face: Face) -> FaceView:
    right_eye, left_eye = face.landmarks[0:2].mean(axis=0), face.landmarks[2:4].mean(axis=0)
    source = np.float32([right_eye, left_eye])
    target = np.float32([_IMAGE_RIGHT_EYE, _IMAGE_LEFT_EYE]) * ALIGNED_SIZE
    matrix = _similarity(source, target)
    crop = cv2.warpAffine(np.asarray(image.convert("RGB")), matrix, (ALIGNED_SIZE, ALIGNED_SIZE), flags=cv2.INTER_AREA)

    def transform(points: np.ndarray) -> np.ndarray:
        return points @ matrix[:, :2].T + matrix[:, 2]

    return FaceView(
        crop=crop,
        landmarks=transform(face.landmarks),
        landmarks68=None if face.landmarks68 is None else transform(face.landmarks68),
        inter_ocular=float(np.linalg.norm(right_eye - left_eye)),
    )


def check_one_face(faces: list[Face]) -> CheckResult:
    if not faces:
        return CheckResult("one_face", 0, "exactly 1", False, "No face was found.")
    main = faces[0].width
    count = sum(face.width >= SECOND_FACE_RATIO * main for face in faces)
    passed = count == 1
    explanation = (
        "Exactly one face."
        if passed
        else f"{count} faces of comparable size: a headshot shows one person (a pasted or duplicated face?)."
    )
    return CheckResult("one_face", count, "exactly 1", passed, explanation)


def check_framing(image: Image.Image, face: Face) -> CheckResult:
    """Face size and position: not tiny, not so large it is cut, the head (box + forehead) inside the frame."""
    width, height = image.size
    left, top, right, bottom = face.box
    head_top = top - 0.35 * face.height  # dlib boxes stop at the eyebrows; the head goes higher
    overflow = max(-left, -head_top, right - width, bottom - height) / max(face.width, 1)
    relative = face.width / width
    problems = []
    if relative < FRAMING_MIN_WIDTH:
        problems.append(f"the face is only {relative:.0%} of the image width")
    if relative > FRAMING_MAX_WIDTH:
        problems.append(f"the face fills {relative:.0%} of the image width")
    if overflow > FRAMING_MAX_OVERFLOW:
        problems.append(f"the head is cut off at the frame edge by {overflow:.0%} of the face size")
    return CheckResult(
        "framing",
        round(float(overflow), 3),
        f"face {FRAMING_MIN_WIDTH:.0%}-{FRAMING_MAX_WIDTH:.0%} of width; head inside the frame",
        not problems,
        "Face size and position suit a headshot." if not problems else "; ".join(problems).capitalize() + ".",
    )


def check_sharpness(view: FaceView) -> CheckResult:
    grey = cv2.cvtColor(view.crop, cv2.COLOR_RGB2GRAY)
    inner = grey[int(0.25 * ALIGNED_SIZE) : int(0.85 * ALIGNED_SIZE), int(0.2 * ALIGNED_SIZE) : int(0.8 * ALIGNED_SIZE)]
    value = float(cv2.Laplacian(inner, cv2.CV_64F).var())
    passed = value >= SHARPNESS_MIN
    return CheckResult(
        "sharpness",
        round(value, 1),
        f">= {SHARPNESS_MIN:g}",
        passed,
        "The face is in focus." if passed else "The face is blurred (little fine detail at the eyes, nose and mouth).",
    )


def check_exposure(view: FaceView) -> CheckResult:
    grey = cv2.cvtColor(view.crop, cv2.COLOR_RGB2GRAY)
    inner = grey[int(0.25 * ALIGNED_SIZE) : int(0.85 * ALIGNED_SIZE), int(0.2 * ALIGNED_SIZE) : int(0.8 * ALIGNED_SIZE)]
    highlights, shadows = float(np.mean(inner >= 252)), float(np.mean(inner <= 3))
    value = highlights + shadows
    passed = value <= EXPOSURE_MAX_CLIPPED
    if passed:
        explanation = "The face is exposed without clipped highlights or shadows."
    else:
        which = "highlights are blown out" if highlights >= shadows else "shadows are crushed to black"
        explanation = f"{value:.0%} of the face is clipped: {which}."
    return CheckResult("exposure", round(value, 4), f"<= {EXPOSURE_MAX_CLIPPED:.0%} clipped", passed, explanation)


def check_geometry(view: FaceView) -> CheckResult:
    points = view.landmarks
    right_width = float(np.linalg.norm(points[0] - points[1]))
    left_width = float(np.linalg.norm(points[2] - points[3]))
    eye_ratio = max(right_width, left_width) / max(min(right_width, left_width), 1e-6)
    eye_line_y = (points[:4, 1]).mean()
    inter_ocular = float(np.linalg.norm(points[0:2].mean(axis=0) - points[2:4].mean(axis=0)))
    nose_drop = float((points[4, 1] - eye_line_y) / inter_ocular)
    problems = []
    if eye_ratio > GEOMETRY_MAX_EYE_RATIO:
        problems.append(f"one eye is {eye_ratio:.2f}x as wide as the other")
    if not GEOMETRY_NOSE_DROP[0] <= nose_drop <= GEOMETRY_NOSE_DROP[1]:
        problems.append(f"the nose sits {nose_drop:.2f} eye distances below the eyes")
    note = "" if view.landmarks68 is not None else " (checked with 5 landmarks: eye widths and nose position only)"
    return CheckResult(
        "geometry",
        round(eye_ratio, 3),
        f"eye width ratio <= {GEOMETRY_MAX_EYE_RATIO:g}; nose drop {GEOMETRY_NOSE_DROP[0]:g}-{GEOMETRY_NOSE_DROP[1]:g}",
        not problems,
        ("Eye and nose proportions are plausible." if not problems else "; ".join(problems).capitalize() + ".") + note,
    )


def check_pose(face: Face) -> CheckResult:
    points = face.landmarks
    right_eye, left_eye = points[0:2].mean(axis=0), points[2:4].mean(axis=0)
    eye_line = right_eye - left_eye  # points to the image's right for an upright face
    inter_ocular = max(float(np.linalg.norm(eye_line)), 1e-6)
    roll = float(np.degrees(np.arctan2(eye_line[1], eye_line[0])))
    yaw = float(np.dot(points[4] - (right_eye + left_eye) / 2, eye_line) / inter_ocular**2)
    passed = abs(roll) <= POSE_MAX_ROLL and abs(yaw) <= POSE_MAX_YAW
    explanation = (
        "The head faces the camera."
        if passed
        else f"Extreme head pose (tilt {roll:.0f} degrees, turn {yaw:+.2f} eye distances)."
    )
    return CheckResult(
        "pose", round(yaw, 3), f"|turn| <= {POSE_MAX_YAW:g}, |tilt| <= {POSE_MAX_ROLL:g} degrees", passed, explanation
    )


def _similarity(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The 2x3 rotation + scale + translation mapping two source points onto two target points."""
    source_vector, target_vector = source[1] - source[0], target[1] - target[0]
    scale = np.linalg.norm(target_vector) / max(np.linalg.norm(source_vector), 1e-6)
    angle = np.arctan2(target_vector[1], target_vector[0]) - np.arctan2(source_vector[1], source_vector[0])
    cos, sin = scale * np.cos(angle), scale * np.sin(angle)
    rotation = np.array([[cos, -sin], [sin, cos]], dtype=np.float32)
    translation = target[0] - rotation @ source[0]
    return np.hstack([rotation, translation[:, None]]).astype(np.float32)
