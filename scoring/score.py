"""Scoring a pack: accept reference photos, score each candidate, pick the best varied subset.

Overall score of a candidate (0-100):

    score = 100 x (0.6 x likeness confidence + 0.4 x share of artifact checks passed), halved for a near-copy

A candidate *passes* the quality gate when its likeness band is not `different`, every check passed and it
is not a near-copy of a reference photo. `select_top` keeps the best k passing candidates, skipping
near-duplicates (pHash) and preferring variety of style and head pose; when fewer than k pass, the best
of the rest fill up and stay marked as not passing.
"""

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace

import numpy as np
from PIL import Image

from scoring import checks
from scoring.eyes import check_eye_highlights
from scoring.faces import Face, FaceBackend, embedding_distance, hash_distance, perceptual_hash
from scoring.hands import HandReport, assess_hands, check_hands
from scoring.likeness import LikenessScore, likeness

MIN_REFERENCE_FACE = 80  # px: smaller reference faces carry too little identity
DUPLICATE_PHASH = 6  # frame pHash distance under which two images are near-duplicates
NEAR_COPY_FACE_PHASH = 12  # face-crop pHash distance to a reference ...
NEAR_COPY_EMBEDDING = {"euclidean": 0.25, "cosine": 0.15}  # ... and embedding distance: a memorised photo
LIKENESS_WEIGHT, CHECKS_WEIGHT = 0.6, 0.4
STYLE_REPEAT_PENALTY, POSE_REPEAT_PENALTY = 8.0, 4.0
HANDS_LIMITS_NOTE = (
    "Hands were checked for anatomy (mediapipe's hand landmarks); a plausible hand that is wrong for the person, "
    "or a blurred one, is not flagged."
)


class ScoringError(ValueError):
    """The inputs cannot be scored; the message says why and what to do."""


@dataclass(frozen=True)
class Analysis:
    """What scoring needs to know about one image."""

    faces: list[Face]
    embedding: np.ndarray | None
    frame_hash: int
    face_hash: int | None
    mirrored_face_hash: int | None  # a mirrored copy of a photo is still a copy
    view: checks.FaceView | None


@dataclass(frozen=True)
class ReferencePhoto:
    name: str
    accepted: bool
    reason: str
    analysis: Analysis | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Identity:
    """The person, as the accepted reference photos show them."""

    backend: str
    references: list[ReferencePhoto]
    centroid: np.ndarray
    spread: float  # mean distance of the accepted references to their centroid

    @property
    def accepted(self) -> list[ReferencePhoto]:
        return [reference for reference in self.references if reference.accepted]


@dataclass(frozen=True)
class CandidateReport:
    file: str
    likeness: LikenessScore | None
    checks: list[checks.CheckResult]
    score: float
    passed: bool
    style: str | None = None
    pose: float | None = None
    frame_hash: int = 0
    rank: int | None = None
    kept: bool = False
    duplicate_of: str | None = None
    hands: list[HandReport] = field(default_factory=list)
    notes: list[str] = field(default_factory=lambda: [HANDS_LIMITS_NOTE])

    def as_dict(self) -> dict:
        """The JSON form of `headshot score --json` and of a pack's report."""
        return {
            "file": self.file,
            "likeness": asdict(self.likeness) if self.likeness else None,
            "checks": [asdict(check) for check in self.checks],
            "score": self.score,
            "rank": self.rank,
            "kept": self.kept,
            "passed": self.passed,
            "duplicate_of": self.duplicate_of,
            "hands": [asdict(hand) for hand in self.hands],
            "notes": self.notes,
        }


def analyse(image: Image.Image, backend: FaceBackend) -> Analysis:
    image = image.convert("RGB")
    faces = backend.detect(image)
    frame_hash = perceptual_hash(image)
    if not faces:
        return Analysis(faces, None, frame_hash, None, None, None)
    main = faces[0]
    face_crop = backend.align(image, main, size=128, padding=0.25)
    return Analysis(
        faces=faces,
        embedding=backend.embed(image, main),
        frame_hash=frame_hash,
        face_hash=perceptual_hash(face_crop),
        mirrored_face_hash=perceptual_hash(face_crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)),
        view=checks.face_view(image, main),
    )


def build_identity(photos: Sequence[tuple[str, Image.Image]], backend: FaceBackend) -> Identity:
    """Accept or reject each reference photo (with a reason) and build the identity from the accepted."""
    references: list[ReferencePhoto] = []
    for name, image in photos:
        analysis = analyse(image, backend)
        reason = _rejection(analysis, references, backend)
        references.append(ReferencePhoto(name, reason is None, reason or "accepted", analysis))
    accepted = [reference.analysis.embedding for reference in references if reference.accepted]
    if not accepted:
        reasons = "; ".join(f"{reference.name}: {reference.reason}" for reference in references) or "none given"
        raise ScoringError(f"no usable reference photo ({reasons}); add clear photos showing one face each")
    centroid = np.mean(accepted, axis=0)
    spread = float(np.mean([embedding_distance(backend, embedding, centroid) for embedding in accepted]))
    return Identity(backend.name, references, centroid, round(spread, 4))


def score_candidate(
    name: str, image: Image.Image, identity: Identity, backend: FaceBackend, style: str | None = None
) -> CandidateReport:
    image = image.convert("RGB")
    analysis = analyse(image, backend)
    main = analysis.faces[0] if analysis.faces else None
    hands = assess_hands(image, backend.find_hands(image), main)
    results = [checks.check_one_face(analysis.faces)]
    if main is None:
        results.append(check_hands(hands))
        return CandidateReport(name, None, results, 0.0, False, style, None, analysis.frame_hash, hands=hands)
    pose = checks.check_pose(main)
    results += [
        checks.check_framing(image, main),
        checks.check_sharpness(analysis.view),
        checks.check_exposure(analysis.view),
        check_eye_highlights(image, backend.find_irises(image, main)),
        checks.check_geometry(analysis.view),
        pose,
        check_hands(hands),
    ]
    score_likeness = likeness(
        analysis.embedding, [reference.analysis.embedding for reference in identity.accepted], backend
    )
    near_copy = _near_copy(analysis, identity, backend)
    score_likeness = replace(score_likeness, near_copy_of=near_copy)
    checks_share = sum(result.passed for result in results) / len(results)
    score = 100 * (LIKENESS_WEIGHT * score_likeness.confidence + CHECKS_WEIGHT * checks_share)
    if near_copy:
        score /= 2
    passed = score_likeness.band != "different" and checks_share == 1 and near_copy is None
    return CandidateReport(
        name, score_likeness, results, round(score, 2), passed, style, pose.value, analysis.frame_hash, hands=hands
    )


def select_top(reports: Sequence[CandidateReport], top_k: int) -> list[CandidateReport]:
    """Rank every candidate and mark the kept ones; reports come back in rank order."""
    ordered = sorted(reports, key=lambda report: report.score, reverse=True)
    ranked = [replace(report, rank=rank) for rank, report in enumerate(ordered, start=1)]
    chosen: list[CandidateReport] = []
    duplicates: dict[str, str] = {}
    for report in ranked:
        twin = next((c for c in chosen if hash_distance(c.frame_hash, report.frame_hash) <= DUPLICATE_PHASH), None)
        if twin is not None:
            duplicates[report.file] = twin.file
            continue
        chosen.append(report)
    distinct = [report for report in ranked if report.file not in duplicates]
    kept: list[CandidateReport] = []
    for passing in (True, False):  # passing candidates first; the best of the rest only to fill up
        pool = [report for report in distinct if report.passed is passing]
        while pool and len(kept) < top_k:
            best = max(pool, key=lambda report: _with_variety(report, kept))
            kept.append(best)
            pool.remove(best)
    kept_files = {report.file for report in kept}
    return [
        replace(report, kept=report.file in kept_files, duplicate_of=duplicates.get(report.file)) for report in ranked
    ]


def score_pack(
    candidates: Sequence[tuple[str, Image.Image, str | None]],
    identity: Identity,
    backend: FaceBackend,
    top_k: int,
    progress: Callable[[int, int], None] | None = None,
    workers: int = 1,
) -> list[CandidateReport]:
    """Score every candidate (in `workers` processes) and select the top k."""
    jobs = [(name, image, identity, backend, style) for name, image, style in candidates]
    if workers <= 1 or len(jobs) < 4:
        reports = []
        for job in jobs:
            reports.append(score_candidate(*job))
            if progress:
                progress(len(reports), len(jobs))
        return select_top(reports, top_k)
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # "spawn": forking a process that already runs dlib/OpenCV thread pools can deadlock the children
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_single_threaded) as pool:
        reports = []
        for report in pool.map(_score_job, jobs, chunksize=2):
            reports.append(report)
            if progress:
                progress(len(reports), len(jobs))
    return select_top(reports, top_k)


def _score_job(job: tuple) -> CandidateReport:
    return score_candidate(*job)


def _single_threaded() -> None:
    import cv2

    cv2.setNumThreads(1)


def _with_variety(report: CandidateReport, kept: list[CandidateReport]) -> float:
    same_style = sum(report.style is not None and other.style == report.style for other in kept)
    same_pose = sum(
        report.pose is not None and other.pose is not None and abs(report.pose - other.pose) < 0.05 for other in kept
    )
    return report.score - STYLE_REPEAT_PENALTY * same_style - POSE_REPEAT_PENALTY * same_pose


def _rejection(analysis: Analysis, accepted_so_far: list[ReferencePhoto], backend: FaceBackend) -> str | None:
    one_face = checks.check_one_face(analysis.faces)
    if not analysis.faces:
        return "no face found"
    if not one_face.passed:
        return f"{int(one_face.value)} faces: a reference photo must show only the person"
    face = analysis.faces[0]
    if face.width < MIN_REFERENCE_FACE:
        return f"face too small ({face.width:.0f} px wide, at least {MIN_REFERENCE_FACE} needed)"
    sharpness = checks.check_sharpness(analysis.view)
    if not sharpness.passed:
        return f"face too blurred (sharpness {sharpness.value}, at least {checks.SHARPNESS_MIN:g})"
    for other in accepted_so_far:
        if other.accepted and hash_distance(other.analysis.frame_hash, analysis.frame_hash) <= DUPLICATE_PHASH:
            return f"near-duplicate of {other.name}"
    return None


def _near_copy(analysis: Analysis, identity: Identity, backend: FaceBackend) -> str | None:
    limit = NEAR_COPY_EMBEDDING[backend.embedding_distance]
    for reference in identity.accepted:
        ref = reference.analysis
        if (
            ref.face_hash is not None
            and analysis.face_hash is not None
            and min(
                hash_distance(ref.face_hash, analysis.face_hash),
                hash_distance(ref.mirrored_face_hash, analysis.face_hash),
            )
            <= NEAR_COPY_FACE_PHASH
            and embedding_distance(backend, ref.embedding, analysis.embedding) <= limit
        ):
            return reference.name
    return None
