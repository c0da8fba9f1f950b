"""Hands: how many show, how sure the detector is of each, and whether each is anatomically plausible.

The landmarks come from mediapipe's hand model through the face backend (`FaceBackend.find_hands`): 21
points per hand in the image and the same 21 in metres (`Hand.world`, the model's 3D estimate), which do
not shrink when a finger points at the camera. Measures, each per hand (docs/SCORING.md has the values on
the real photos in shared/data/faces and what they cannot see):

- `segments`: each finger bone (three per finger and thumb) as a share of the palm's length (wrist to the
  middle finger's knuckle, in 3D). Real hands: 0.15-0.45; a collapsed bone (< 0.08) or one longer than
  the palm's 0.7 is not a human finger.
- `bend`: the largest angle between two consecutive bones of a finger (knuckle and finger joints).
  Real joints stop short of about 110 degrees; more is a finger folded back or broken.
- `gap`: the shortest 3D distance between the middle and end bones of two fingers (not the thumb, whose
  tip meets the others' in a pinch), as a share of the palm's length. Fingers that touch or cross keep
  their bones a finger's thickness apart (about 0.15); under 0.05 they pass through each other.
- `over_face`: the share of the face's inner region (eyes, nose, mouth) that the hand covers: a hand
  melted into the face, or hiding it, is no headshot.

A hand is judged only when it is in focus like the face (`MIN_RELATIVE_SHARPNESS`): a blurred hand is in
the background, someone else's, or not a hand at all (shared/data/faces/img62.jpg: a defocused face in the
background that the detector takes for a hand, at palm confidence 0.88).
"""

from dataclasses import dataclass, field

import cv2
import numpy as np
from PIL import Image

from scoring.checks import CheckResult
from scoring.faces import Face, Hand

FINGERS = ((1, 2, 3, 4), (5, 6, 7, 8), (9, 10, 11, 12), (13, 14, 15, 16), (17, 18, 19, 20))  # thumb .. little
SEGMENT_RANGE = (0.08, 0.7)  # finger bone / palm length
MAX_BEND = 125.0  # degrees between consecutive bones
MIN_GAP = 0.05  # palm lengths between the bones of two fingers
MAX_OVER_FACE = 0.3  # share of the face's inner region a hand may cover
MIN_RELATIVE_SHARPNESS = 0.25  # hand detail / face detail, both at the same scale, for a hand to be judged
DETAIL_SIDE = 128  # px: hand and face are compared at this size


@dataclass(frozen=True)
class HandReport:
    """One hand as the report shows it (`CandidateReport.hands`)."""

    detection_score: float
    handedness: str
    handedness_score: float
    box: tuple[float, float, float, float]  # left, top, right, bottom in image pixels
    judged: bool
    plausible: bool
    measures: dict[str, float] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def hand_measures(hand: Hand) -> dict[str, float]:
    """The anatomical measures of one hand (see the module docstring), from its 3D landmarks."""
    world = hand.world.astype(np.float64)
    palm = max(float(np.linalg.norm(world[9] - world[0])), 1e-6)
    bones = [(chain[i], chain[i + 1]) for finger in FINGERS for chain in [(0, *finger)] for i in range(1, 4)]
    lengths = [float(np.linalg.norm(world[b] - world[a])) / palm for a, b in bones]
    bends = []
    for finger in FINGERS:
        chain = (0, *finger)
        for i in range(1, 4):
            incoming, outgoing = world[chain[i]] - world[chain[i - 1]], world[chain[i + 1]] - world[chain[i]]
            cosine = np.dot(incoming, outgoing) / max(np.linalg.norm(incoming) * np.linalg.norm(outgoing), 1e-12)
            bends.append(float(np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0)))))
    gap = min(
        _segment_distance(world[a], world[b], world[c], world[d])
        for first in range(1, len(FINGERS))  # not the thumb: its tip meets the others' in a pinch
        for second in range(first + 1, len(FINGERS))
        for a, b in zip(FINGERS[first][1:], FINGERS[first][2:], strict=False)  # past the knuckle
        for c, d in zip(FINGERS[second][1:], FINGERS[second][2:], strict=False)
    )
    return {
        "shortest_bone": round(min(lengths), 3),
        "longest_bone": round(max(lengths), 3),
        "largest_bend": round(max(bends), 1),
        "finger_gap": round(gap / palm, 3),
    }


def assess_hands(image: Image.Image, hands: list[Hand], face: Face | None) -> list[HandReport]:
    grey = np.asarray(image.convert("L"))
    face_detail = _detail(grey, face.box) if face is not None else None
    reports = []
    for hand in hands:
        points = hand.landmarks
        (left, top), (right, bottom) = points.min(axis=0), points.max(axis=0)
        box = (float(left), float(top), float(right), float(bottom))
        measures = hand_measures(hand)
        if face is not None:
            measures["over_face"] = round(_covered_share(points, face), 3)
        problems = []
        judged = True
        if face_detail is not None:
            relative = _detail(grey, box) / max(face_detail, 1e-6)
            measures["relative_sharpness"] = round(relative, 3)
            judged = relative >= MIN_RELATIVE_SHARPNESS
        if judged:
            if measures["shortest_bone"] < SEGMENT_RANGE[0]:
                problems.append(f"a finger bone is collapsed ({measures['shortest_bone']:.2f} of the palm's length)")
            if measures["longest_bone"] > SEGMENT_RANGE[1]:
                problems.append(f"a finger bone is {measures['longest_bone']:.2f} of the palm's length")
            if measures["largest_bend"] > MAX_BEND:
                problems.append(f"a joint bends {measures['largest_bend']:.0f} degrees")
            if measures["finger_gap"] < MIN_GAP:
                problems.append("two fingers pass through each other")
            if measures.get("over_face", 0.0) > MAX_OVER_FACE:
                problems.append(f"the hand covers {measures['over_face']:.0%} of the face's eyes, nose and mouth")
        reports.append(
            HandReport(
                detection_score=round(hand.detection_score, 3),
                handedness=hand.handedness,
                handedness_score=round(hand.handedness_score, 3),
                box=tuple(round(v, 1) for v in box),
                judged=judged,
                plausible=not problems,
                measures=measures,
                problems=problems,
            )
        )
    return reports


def check_hands(reports: list[HandReport]) -> CheckResult:
    threshold = (
        f"bones {SEGMENT_RANGE[0]:g}-{SEGMENT_RANGE[1]:g} of the palm, bends <= {MAX_BEND:g} degrees, "
        f"fingers >= {MIN_GAP:g} palms apart, <= {MAX_OVER_FACE:.0%} of the face covered"
    )
    if not reports:
        return CheckResult("hands", 0, threshold, True, "No hands are visible.")
    failing = [report for report in reports if not report.plausible]
    described = []
    for number, report in enumerate(reports, start=1):
        state = (
            "out of focus, not judged"
            if not report.judged
            else "plausible"
            if report.plausible
            else "; ".join(report.problems)
        )
        described.append(f"hand {number} (confidence {report.detection_score:.2f}): {state}")
    count = f"{len(reports)} hand{'s' if len(reports) > 1 else ''} visible"
    explanation = f"{count}: {', '.join(described)}."
    if failing:
        explanation += " Malformed hands are a typical sign of a generated image."
    return CheckResult("hands", len(reports), threshold, not failing, explanation)


def _detail(grey: np.ndarray, box: tuple[float, float, float, float]) -> float:
    """Variance of the Laplacian of the box, scaled to DETAIL_SIDE px on its long side."""
    left, top, right, bottom = (round(v) for v in box)
    crop = grey[max(top, 0) : max(bottom, top + 1), max(left, 0) : max(right, left + 1)]
    if crop.size == 0:
        return 0.0
    scale = DETAIL_SIDE / max(crop.shape)
    size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
    return float(cv2.Laplacian(cv2.resize(crop, size, interpolation=cv2.INTER_AREA), cv2.CV_64F).var())


def _covered_share(points: np.ndarray, face: Face) -> float:
    """Share of the face's inner region (eye corners to the nose base, widened) inside the hand's outline."""
    landmarks = face.landmarks
    left, right = float(landmarks[:, 0].min()), float(landmarks[:, 0].max())
    top, bottom = float(landmarks[:4, 1].min()), float(landmarks[4, 1])
    height = max(bottom - top, 1.0)
    region = (round(left), round(top - 0.3 * height), round(right), round(bottom + 0.8 * height))  # brows to mouth
    width, tall = max(region[2] - region[0], 1), max(region[3] - region[1], 1)
    hull = cv2.convexHull(np.round(points - [region[0], region[1]]).astype(np.int32))
    mask = np.zeros((tall, width), np.uint8)
    cv2.fillConvexPoly(mask, hull, 1)
    return float(mask.mean())


def _segment_distance(p1: np.ndarray, p2: np.ndarray, q1: np.ndarray, q2: np.ndarray) -> float:
    """Shortest distance between the 3D segments p1-p2 and q1-q2 (sampled finely enough for bones)."""
    steps = np.linspace(0.0, 1.0, 11)[:, None]
    first, second = p1 + steps * (p2 - p1), q1 + steps * (q2 - q1)
    return float(np.min(np.linalg.norm(first[:, None, :] - second[None, :, :], axis=2)))
