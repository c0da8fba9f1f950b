"""Corneal reflections: the same lights should show at the same place in both eyes.

In the manner of Hu, Guo and Lyu, "Exposing GAN-generated faces using inconsistent corneal specular
highlights" (ICASSP 2021): locate each cornea (here from the face mesh's iris points, not an iris
segmentation), extract the specular highlights inside it, and compare the two eyes in iris coordinates
(positions as fractions of the iris radius from its centre, image axes, not mirrored).

Where this departs from the paper, and why (measured on the real photos in shared/data/faces,
docs/SCORING.md):

- Real eyes do not put a catch-light at exactly the same place: both reflections sit a little towards the
  nose (the eyes converge on the camera, and the cornea's apex is not the iris centre), so the image-left
  eye's highlight lies up to ~0.5 iris radii further right than the image-right eye's. The horizontal
  difference is therefore allowed a range (`NASAL_SHIFT`); the vertical one is not.
- Raw IoU of the two highlight masks (the paper's score) is low on most real photos here, whose irises are
  10-50 px across against the paper's 1024 px FFHQ faces: a 3 px spot moved by one pixel loses half its
  overlap. So positions decide, matched spot to spot (several lights give several spots), and the shape
  overlap (IoU at the best allowed shift) is reported beside them.
- A strong catch-light in one eye with nothing at its place in the other fails, unless that place is
  under the other eye's lid.
- Irises under `MIN_IRIS_RADIUS` px or less than `MIN_OPEN_SHARE` visible between the lids are not
  judged: their highlights are a few pixels, or hidden, and the mesh's iris fit is least reliable there.
"""

from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from scoring.checks import CheckResult
from scoring.faces import Iris, Irises

MIN_IRIS_RADIUS = 10.0  # px; below it 1 px is more than 0.1 iris radii
MIN_OPEN_SHARE = 0.65  # share of the iris disc visible between the lids
MIN_CONTRAST = 40.0  # grey levels a highlight stands above the iris around it (white top-hat)
STRONG_CONTRAST = 100.0  # a highlight this strong ...
MAIN_SHARE = 0.8  # ... and with this share of its eye's strongest must have a counterpart in the other eye
NASAL_SHIFT = (-0.3, 0.6)  # allowed x(image-left eye) - x(image-right eye), in iris radii
COUNTERPART_SHARE = 0.3  # the counterpart of a strong highlight has at least this share of its contrast
MAX_MISMATCH = 0.3  # iris radii between a strong highlight and its nearest counterpart
NOTHING_THERE = 2.0  # the mismatch reported when the other eye shows no highlight at all (the iris diameter)
GRID = 41  # samples across the iris (2.2 radii) for the shape overlap


@dataclass(frozen=True)
class Highlight:
    x: float  # iris radii from the iris centre, image axes
    y: float
    contrast: float  # grey levels above the surroundings
    area: float  # in squared iris radii


@dataclass(frozen=True)
class CorneaView:
    """One eye: its highlights, what share of the iris is visible, and the masks to compare shapes with."""

    iris: Iris
    open_share: float
    highlights: list[Highlight]  # strongest first
    _visible: np.ndarray  # cornea mask (between the lids, inside the iris), patch pixels
    _bright: np.ndarray  # highlight mask, patch pixels
    _origin: tuple[int, int]  # patch top-left in the image

    def visible_at(self, x: float, y: float, reach: float = 0.2) -> bool:
        """Whether the iris around (x, y) (iris radii, `reach` around it) lies between the lids."""
        around = self._sample(self._visible, x, y, reach)
        return around.size > 0 and float(around.mean()) >= 0.9

    def mask_grid(self, shift_x: float = 0.0) -> np.ndarray:
        """The highlight mask sampled on a GRID x GRID grid over +-1.1 iris radii, moved left by `shift_x`."""
        axis = np.linspace(-1.1, 1.1, GRID, dtype=np.float32)
        grid_x, grid_y = np.meshgrid(self._to_patch_x(axis + shift_x), self._to_patch_y(axis))
        return cv2.remap(self._bright.astype(np.uint8), grid_x, grid_y, cv2.INTER_NEAREST) > 0

    def _sample(self, mask: np.ndarray, x: float, y: float, reach: float) -> np.ndarray:
        rows, cols = np.mgrid[0 : mask.shape[0], 0 : mask.shape[1]]
        near = np.hypot(self._from_patch_x(cols) - x, self._from_patch_y(rows) - y) <= reach
        return mask[near]

    def _to_patch_x(self, x: np.ndarray) -> np.ndarray:
        return (self.iris.centre[0] + x * self.iris.radius - self._origin[0]).astype(np.float32)

    def _to_patch_y(self, y: np.ndarray) -> np.ndarray:
        return (self.iris.centre[1] + y * self.iris.radius - self._origin[1]).astype(np.float32)

    def _from_patch_x(self, columns: np.ndarray) -> np.ndarray:
        return (columns + self._origin[0] - self.iris.centre[0]) / self.iris.radius

    def _from_patch_y(self, rows: np.ndarray) -> np.ndarray:
        return (rows + self._origin[1] - self.iris.centre[1]) / self.iris.radius


def cornea_view(grey: np.ndarray, iris: Iris) -> CorneaView:
    """The highlights inside one iris: bright spots of the white top-hat, between the lids.

    The top-hat (the image minus its opening with a disc of 0.6 iris radii) keeps spots smaller than that
    disc that are brighter than what surrounds them, and drops the iris' own texture and broad shading.
    """
    radius = iris.radius
    half = int(np.ceil(1.5 * radius)) + 2
    left = max(int(iris.centre[0]) - half, 0)
    top = max(int(iris.centre[1]) - half, 0)
    patch = grey[top : int(iris.centre[1]) + half + 1, left : int(iris.centre[0]) + half + 1].astype(np.float32)
    rows, cols = np.mgrid[0 : patch.shape[0], 0 : patch.shape[1]]
    x, y = (cols + left - iris.centre[0]) / radius, (rows + top - iris.centre[1]) / radius
    lids = np.zeros(patch.shape, np.uint8)
    cv2.fillPoly(lids, [np.round(iris.eyelids - [left, top]).astype(np.int32)], 1)
    visible = (np.hypot(x, y) <= 1.05) & (lids > 0)
    side = max(3, round(0.6 * radius) | 1)
    tophat = cv2.morphologyEx(patch, cv2.MORPH_TOPHAT, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (side, side)))
    tophat[~visible] = 0
    peak = float(tophat.max()) if tophat.size else 0.0
    bright = np.zeros(patch.shape, bool)
    highlights = []
    if peak >= MIN_CONTRAST:
        bright = tophat >= max(MIN_CONTRAST, 0.5 * peak)
        count, labels = cv2.connectedComponents(bright.astype(np.uint8))
        for label in range(1, count):
            spot = labels == label
            weights = tophat[spot]
            highlights.append(
                Highlight(
                    x=float(np.average(x[spot], weights=weights)),
                    y=float(np.average(y[spot], weights=weights)),
                    contrast=float(weights.max()),
                    area=float(spot.sum() / radius**2),
                )
            )
    highlights.sort(key=lambda highlight: highlight.contrast, reverse=True)
    open_share = float(visible.sum() / (np.pi * radius**2))
    return CorneaView(iris, open_share, highlights, visible, bright, (left, top))


def mismatch(in_left: Highlight, in_right: Highlight) -> float:
    """Iris radii between a highlight in the image-left eye and one in the image-right eye, beyond what real
    eyes show: any vertical difference, and the horizontal difference outside `NASAL_SHIFT`."""
    dx = in_left.x - in_right.x
    excess = 0.0 if NASAL_SHIFT[0] <= dx <= NASAL_SHIFT[1] else min(abs(dx - NASAL_SHIFT[0]), abs(dx - NASAL_SHIFT[1]))
    return float(np.hypot(excess, in_left.y - in_right.y))


def shape_overlap(left: CorneaView, right: CorneaView) -> float | None:
    """IoU of the two highlight masks in iris coordinates, at the best horizontal shift within NASAL_SHIFT."""
    if not left.highlights or not right.highlights:
        return None
    reference = left.mask_grid()
    best = 0.0
    for shift in np.arange(NASAL_SHIFT[0], NASAL_SHIFT[1] + 1e-6, 0.05):
        moved = right.mask_grid(-float(shift))
        union = int((reference | moved).sum())
        if union:
            best = max(best, float((reference & moved).sum() / union))
    return round(best, 3)


@dataclass(frozen=True)
class EyeComparison:
    """What the check measured; `mismatch` is None when the eyes were not compared."""

    mismatch: float | None
    missing: bool  # a strong highlight whose place in the other eye is visible and empty
    overlap: float | None
    reason: str  # why the eyes were not compared, or "" when they were
    left: CorneaView | None = None
    right: CorneaView | None = None


def compare_eyes(image: Image.Image, irises: Irises | None) -> EyeComparison:
    if irises is None:
        return EyeComparison(None, False, None, "the face mesh did not find this face, so the irises are unknown")
    grey = np.asarray(image.convert("L"))
    left, right = cornea_view(grey, irises.image_left), cornea_view(grey, irises.image_right)
    radius = min(left.iris.radius, right.iris.radius)
    if radius < MIN_IRIS_RADIUS:
        reason = f"the irises are too small to compare ({radius:.1f} px radius, at least {MIN_IRIS_RADIUS:g})"
        return EyeComparison(None, False, None, reason, left, right)
    open_share = min(left.open_share, right.open_share)
    if open_share < MIN_OPEN_SHARE:
        reason = f"the lids cover too much of an iris ({open_share:.0%} visible, at least {MIN_OPEN_SHARE:.0%})"
        return EyeComparison(None, False, None, reason, left, right)
    if not left.highlights and not right.highlights:
        return EyeComparison(None, False, None, "there are no catch-lights in the eyes", left, right)
    worst, missing = 0.0, False
    for view, other, is_left in ((left, right, True), (right, left, False)):
        if not view.highlights:
            continue
        strong = max(STRONG_CONTRAST, MAIN_SHARE * view.highlights[0].contrast)
        for highlight in (h for h in view.highlights if h.contrast >= strong):
            counterparts = [h for h in other.highlights if h.contrast >= COUNTERPART_SHARE * highlight.contrast]
            distances = [mismatch(highlight, h) if is_left else mismatch(h, highlight) for h in counterparts]
            nearest = min(distances, default=NOTHING_THERE)
            centre_shift = sum(NASAL_SHIFT) / 2
            expected_x = highlight.x - centre_shift if is_left else highlight.x + centre_shift
            if nearest <= MAX_MISMATCH or other.visible_at(expected_x, highlight.y):
                worst = max(worst, nearest)
                missing = missing or (nearest > MAX_MISMATCH and not counterparts)
    return EyeComparison(round(worst, 3), missing, shape_overlap(left, right), "", left, right)


def check_eye_highlights(image: Image.Image, irises: Irises | None) -> CheckResult:
    comparison = compare_eyes(image, irises)
    threshold = f"strong catch-lights matched within {MAX_MISMATCH:g} iris radii"
    if comparison.mismatch is None:
        return CheckResult("eye_highlights", None, threshold, True, f"Not compared: {comparison.reason}.")
    overlap = "" if comparison.overlap is None else f", shape overlap {comparison.overlap:.2f}"
    passed = comparison.mismatch <= MAX_MISMATCH
    if passed:
        explanation = f"The reflections in the two eyes agree (within {comparison.mismatch:.2f} iris radii{overlap})."
    elif comparison.missing:
        explanation = (
            "A catch-light shows in one eye and nothing at its place in the other, which is open there: real eyes "
            "reflect the same lights; a missing reflection is a typical sign of a generated face."
        )
    else:
        explanation = (
            f"The reflections in the two eyes disagree: {comparison.mismatch:.2f} iris radii apart{overlap}; real "
            "eyes reflect the same lights in the same place, wandering catch-lights are a typical sign of a "
            "generated face."
        )
    return CheckResult("eye_highlights", comparison.mismatch, threshold, passed, explanation)
