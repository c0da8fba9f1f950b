"""Likeness to a person's reference photos: distance, a probability-like confidence, and a band.

The confidence is a logistic curve centred on the backend's published same-person operating point:

    confidence = 1 / (1 + exp((distance - t) / s))

- dlib: t = 0.6 (L2 between 128-D descriptors; dlib reports 99.38% on LFW at that threshold), s = 0.05.
- insightface: t = the backend's `same_person_distance` (cosine), s = 0.06; recalibrate per model pack.

`distance` is the median of the candidate's distances to the accepted reference photos (the median
ignores one odd reference). Bands: `same` at confidence >= 0.8 (dlib: distance <= 0.53), `different` at
< 0.2 (distance > 0.67), `uncertain` between: "it's you, but not you". How this was checked on
shared/data/faces/master.csv, and what that can and cannot show, is in docs/SCORING.md.
"""

import math
from dataclasses import dataclass

import numpy as np

from scoring.faces import FaceBackend, embedding_distance

SLOPES = {"euclidean": 0.05, "cosine": 0.06}
SAME_AT, DIFFERENT_BELOW = 0.8, 0.2


@dataclass(frozen=True)
class LikenessScore:
    distance: float
    confidence: float
    band: str  # "same" | "uncertain" | "different"
    near_copy_of: str | None = None


def confidence_for(distance: float, backend: FaceBackend) -> float:
    slope = SLOPES[backend.embedding_distance]
    return 1.0 / (1.0 + math.exp((distance - backend.same_person_distance) / slope))


def band_for(confidence: float) -> str:
    if confidence >= SAME_AT:
        return "same"
    return "different" if confidence < DIFFERENT_BELOW else "uncertain"


def likeness(embedding: np.ndarray, references: list[np.ndarray], backend: FaceBackend) -> LikenessScore:
    if not references:
        raise ValueError("no accepted reference photo to compare with")
    distance = float(np.median([embedding_distance(backend, embedding, reference) for reference in references]))
    confidence = confidence_for(distance, backend)
    return LikenessScore(distance=round(distance, 4), confidence=round(confidence, 4), band=band_for(confidence))
