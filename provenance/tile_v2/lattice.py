"""Finding the tile lattice of a watermarked copy: the whole linear map it went through, from one autocorrelation.

The tile repeats, so the autocorrelation of the whitened residual has a peak at every lattice vector
B n (n in Z^2). Whatever linear map the copy went through (rotation, uniform or non-uniform scaling,
shear, mirroring), the lattice is the tile's square lattice under that map, so a basis B of the peaks is
the map itself, up to the square lattice's eight symmetries (which the sync pattern settles later).

The search: the strongest local maxima of the autocorrelation become candidate vectors; every pair of
them that could span a lattice (not too skewed, lengths within 30%) is reduced to its shortest basis and
scored by the autocorrelation summed over its lattice points; the best bases are refined to sub-pixel
precision by a weighted least-squares fit to the peaks near their predicted lattice points.
"""

from collections.abc import Iterator

import cv2
import numpy as np

MIN_PERIOD = 36  # px at the analysis size: below this a chip is under ~1 px
_PEAKS = 14
_MAX_COVERAGE = 0.62  # lags longer than this share of the image overlap too little
_SEARCH_ORDER = 3  # lattice points n with |n1|, |n2| <= this are scored
_MIN_SIN = 0.6  # the angle between basis vectors stays within about 37-143 degrees
_MAX_RATIO = 1.35
_WHITEN_BINS = 16.0


def autocorrelation(residual: np.ndarray) -> tuple[np.ndarray, int, int]:
    """The autocorrelation as a z-score per lag, centred: (surface, row of lag 0, column of lag 0).

    Each lag's sum is divided by the square root of its overlap, so that the noise has the same spread at
    every lag and a peak counts in proportion to the evidence behind it (long lags overlap little).
    """
    height, width = residual.shape
    centred = residual - residual.mean()
    size_y = cv2.getOptimalDFTSize(int(height * (1 + _MAX_COVERAGE)) + 1)
    size_x = cv2.getOptimalDFTSize(int(width * (1 + _MAX_COVERAGE)) + 1)
    padded = np.zeros((size_y, size_x), np.float32)
    padded[:height, :width] = centred
    power = np.abs(np.fft.rfft2(padded)) ** 2
    # partial spectral whitening: the tile's energy sits on sharp lines (its reciprocal lattice), the image's
    # is spread out; dividing by the root of the broadly smoothed spectrum tames the image, keeps the lines
    smoothed = cv2.GaussianBlur(power.astype(np.float32), (0, 0), _WHITEN_BINS)
    power = power / np.sqrt(smoothed + 1e-9 * power.mean() + 1e-12)
    surface = np.fft.irfft2(power, s=(size_y, size_x))
    reach_y, reach_x = int(height * _MAX_COVERAGE), int(width * _MAX_COVERAGE)
    rows = np.r_[size_y - reach_y : size_y, 0 : reach_y + 1]
    columns = np.r_[size_x - reach_x : size_x, 0 : reach_x + 1]
    surface = surface[np.ix_(rows, columns)]
    lags_y = np.abs(np.arange(-reach_y, reach_y + 1))[:, None]
    lags_x = np.abs(np.arange(-reach_x, reach_x + 1))[None, :]
    overlap = (height - lags_y) * (width - lags_x)
    surface = surface / np.sqrt(overlap) / (surface[reach_y, reach_x] / (height * width) + 1e-12)
    # keep the sharp peaks, drop the slowly varying correlation of the image content
    surface = surface - cv2.GaussianBlur(surface.astype(np.float32), (0, 0), 6)
    return surface.astype(np.float32), reach_y, reach_x


def lattice_bases(residual: np.ndarray, count: int = 3) -> Iterator[np.ndarray]:
    """Up to `count` candidate lattice bases, best first: 2x2 arrays whose columns are (x, y) vectors in px.

    Each is refined only when asked for (a marked copy usually decodes at the first).
    """
    surface, centre_y, centre_x = autocorrelation(residual)
    peaks = _peaks(surface, centre_y, centre_x)
    scored: list[tuple[float, np.ndarray]] = []
    for basis in _candidate_bases(peaks):
        basis = _reduced(basis)
        if min(np.hypot(*basis[:, 0]), np.hypot(*basis[:, 1])) < MIN_PERIOD:
            continue
        if any(_same_lattice(basis, other) for _, other in scored):
            continue
        scored.append((_lattice_score(surface, centre_y, centre_x, basis), basis))
    scored.sort(key=lambda item: -item[0])
    for _, basis in scored[:count]:
        yield _refined(surface, centre_y, centre_x, basis)


def _candidate_bases(peaks: list[np.ndarray]):
    """Every pair of peaks that could span the lattice, and each peak completed to a square by its quarter
    turn (a copy that was only turned, mirrored or uniformly scaled needs a single visible peak then)."""
    for i, first in enumerate(peaks):
        yield np.column_stack([first, [-first[1], first[0]]])
        for second in peaks[i + 1 :]:
            lengths = np.hypot(*first), np.hypot(*second)
            sine = abs(first[0] * second[1] - first[1] * second[0]) / (lengths[0] * lengths[1])
            if sine >= _MIN_SIN and max(lengths) / min(lengths) <= _MAX_RATIO:
                yield np.column_stack([first, second])


def _peaks(surface: np.ndarray, centre_y: int, centre_x: int) -> list[np.ndarray]:
    """The strongest local maxima in one half-plane of the (symmetric) surface, as (x, y) lag vectors."""
    local_max = surface >= cv2.dilate(surface, np.ones((5, 5), np.uint8))
    ys, xs = np.nonzero(local_max)
    lag_y, lag_x = ys - centre_y, xs - centre_x
    keep = ((lag_y > 0) | ((lag_y == 0) & (lag_x > 0))) & (np.hypot(lag_x, lag_y) >= MIN_PERIOD)
    order = np.argsort(-surface[ys[keep], xs[keep]])[:_PEAKS]
    return [np.array([lag_x[keep][k], lag_y[keep][k]], np.float64) for k in order]


def _reduced(basis: np.ndarray) -> np.ndarray:
    """Lagrange-Gauss reduction: the two shortest vectors spanning the same lattice."""
    first, second = basis[:, 0].copy(), basis[:, 1].copy()
    if first @ first > second @ second:
        first, second = second, first
    while True:
        second = second - np.round((first @ second) / (first @ first)) * first
        if second @ second >= first @ first:
            return np.column_stack([first, second])
        first, second = second, first


def _same_lattice(basis: np.ndarray, other: np.ndarray) -> bool:
    """Whether two bases span (about) the same lattice: each one's vectors are integer combinations of the other's."""
    coefficients = np.linalg.solve(other, basis)
    return bool(np.all(np.abs(coefficients - np.round(coefficients)) < 0.06))


def _lattice_points(basis: np.ndarray, shape: tuple[int, int], centre_y: int, centre_x: int, order: int):
    """(n, lag) for the lattice points within the surface, excluding the origin."""
    for n1 in range(-order, order + 1):
        for n2 in range(0, order + 1):
            if n2 == 0 and n1 <= 0:
                continue  # each point once (the surface is symmetric), and not the origin
            lag = basis @ np.array([n1, n2], np.float64)
            y, x = centre_y + lag[1], centre_x + lag[0]
            if 2 <= y < shape[0] - 3 and 2 <= x < shape[1] - 3:
                yield np.array([n1, n2], np.float64), lag


def _lattice_score(surface: np.ndarray, centre_y: int, centre_x: int, basis: np.ndarray) -> float:
    values = [
        surface[round(centre_y + lag[1]), round(centre_x + lag[0])]
        for _, lag in _lattice_points(basis, surface.shape, centre_y, centre_x, _SEARCH_ORDER)
    ]
    return float(np.sum(values)) if values else -np.inf


def _refined(surface: np.ndarray, centre_y: int, centre_x: int, basis: np.ndarray) -> np.ndarray:
    """Fit the basis to the sub-pixel positions of the peaks near its lattice points (weighted least squares)."""
    for _ in range(2):
        normal, right = np.zeros((2, 2)), np.zeros((2, 2))
        for n, lag in _lattice_points(basis, surface.shape, centre_y, centre_x, 4):
            y, x = round(centre_y + lag[1]), round(centre_x + lag[0])
            window = surface[y - 2 : y + 3, x - 2 : x + 3]
            dy, dx = np.unravel_index(int(np.argmax(window)), window.shape)
            py, px = y + dy - 2, x + dx - 2
            if not (1 <= py < surface.shape[0] - 1 and 1 <= px < surface.shape[1] - 1):
                continue
            weight = float(surface[py, px])
            if weight <= 0:
                continue
            found = np.array(
                [
                    px - centre_x + _vertex(surface[py, px - 1], surface[py, px], surface[py, px + 1]),
                    py - centre_y + _vertex(surface[py - 1, px], surface[py, px], surface[py + 1, px]),
                ]
            )
            normal += weight * np.outer(n, n)
            right += weight * np.outer(n, found)
        if abs(np.linalg.det(normal)) < 1e-9:
            return basis
        basis = np.linalg.solve(normal, right).T
    return basis


def _vertex(left: float, middle: float, right: float) -> float:
    curvature = left - 2 * middle + right
    return float(np.clip(0.5 * (left - right) / curvature, -0.5, 0.5)) if abs(curvature) > 1e-12 else 0.0
