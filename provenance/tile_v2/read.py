"""Reading tile-v2 from a copy that may have been mirrored, turned, sheared, rescaled, cropped or re-encoded."""

from collections.abc import Iterator

import cv2
import numpy as np
from PIL import Image

from provenance.payload_code import decode_payload
from provenance.tile_v2.lattice import lattice_bases
from provenance.tile_v2.pattern import (
    CHIPS,
    DECODE_CHIP,
    DECODE_TILE,
    KEY,
    PAYLOAD_BITS,
    TILES_PER_SIDE,
    decoder_filters,
    luma,
    residual,
)
from provenance.watermarking import WatermarkReading

ANALYSIS_SIDE = 512  # the copy is folded with its long side brought down to this
LATTICE_SIDE = 384  # and its lattice searched on a copy this size
MIN_READ_SIDE = 48
Z_THRESHOLD = 7.0
ORIENTATIONS = 8  # the square lattice's symmetries: 4 rotations, each mirrored or not
MAX_BASES = 5  # lattice candidates from the autocorrelation, plus the uncropped guess
MAX_FOLD_SIDE = 6 * DECODE_TILE  # at most this many px of the resampled copy are folded, each way
_RIDGE = 0.2


def read(image: Image.Image) -> WatermarkReading:
    """Find the lattice, then the orientation and offset by the sync pattern, then decode the payload."""
    cv2.setNumThreads(1)
    grey = luma(np.asarray(image.convert("RGB"), dtype=np.float32))
    if min(grey.shape) < MIN_READ_SIDE:
        return WatermarkReading(None, 0.0, None, 0)
    scale = min(1.0, ANALYSIS_SIDE / max(grey.shape))
    if scale < 1:
        size = (round(grey.shape[1] * scale), round(grey.shape[0] * scale))
        grey = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
    uncropped = np.eye(2) * max(grey.shape) / TILES_PER_SIDE
    best: tuple[float, np.ndarray] | None = None
    decodings = 0
    for basis in _hypotheses(grey, uncropped):
        decodings += 1
        z_score, chips = align(fold(grey, basis))
        soft = KEY.soft_bits(chips)
        payload = decode_payload(soft, PAYLOAD_BITS) if z_score >= Z_THRESHOLD else None
        if payload is not None:
            return WatermarkReading(payload, z_score, soft, decodings)
        if best is None or z_score > best[0]:
            best = (z_score, soft)
    return WatermarkReading(None, best[0], best[1], decodings)


def _hypotheses(grey: np.ndarray, uncropped: np.ndarray) -> Iterator[np.ndarray]:
    """The lattice bases to try: the autocorrelation's best (searched on a copy of at most LATTICE_SIDE px),
    then the uncropped guess unless one of them was it."""
    scale = min(1.0, LATTICE_SIDE / max(grey.shape))
    small = grey
    if scale < 1:
        small = cv2.resize(
            grey, (round(grey.shape[1] * scale), round(grey.shape[0] * scale)), interpolation=cv2.INTER_AREA
        )
    seen_uncropped = False
    for basis in lattice_bases(residual(small), MAX_BASES):
        basis = basis / scale
        seen_uncropped |= bool(np.allclose(basis, uncropped, rtol=0, atol=1.5))
        yield basis
    if not seen_uncropped:
        yield uncropped


def fold(grey: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """Resample the copy so that `basis` becomes a DECODE_TILE square, and average all tiles into one."""
    period = np.sqrt(abs(np.linalg.det(basis)))
    if period > 1.25 * DECODE_TILE:  # shrink first: the warp below interpolates, it does not average
        factor = DECODE_TILE / period
        size = (max(1, round(grey.shape[1] * factor)), max(1, round(grey.shape[0] * factor)))
        grey = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
        basis = basis * factor
    height, width = grey.shape
    forward = basis / DECODE_TILE  # tile-frame px -> copy px
    corners = np.linalg.solve(forward, np.array([[0, width, 0, width], [0, 0, height, height]], np.float64))
    low, high = np.floor(corners.min(axis=1)), np.ceil(corners.max(axis=1))
    middle, reach = (low + high) / 2, np.minimum((high - low) / 2, MAX_FOLD_SIDE / 2)
    low, high = np.floor(middle - reach), np.ceil(middle + reach)  # a short period: the middle tiles suffice
    size_x, size_y = (high - low).astype(int) + 1
    matrix = np.hstack([forward, (forward @ low)[:, None]])
    flags = cv2.WARP_INVERSE_MAP
    warped = cv2.warpAffine(
        grey, matrix, (size_x, size_y), flags=flags | cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
    )
    valid = cv2.warpAffine(np.ones_like(grey), matrix, (size_x, size_y), flags=flags | cv2.INTER_NEAREST, borderValue=0)
    signal = residual(warped) * valid
    tile = DECODE_TILE
    padded_y, padded_x = -(-size_y // tile) * tile, -(-size_x // tile) * tile
    sums, counts = np.zeros((padded_y, padded_x), np.float32), np.zeros((padded_y, padded_x), np.float32)
    sums[:size_y, :size_x], counts[:size_y, :size_x] = signal, valid
    sums = sums.reshape(padded_y // tile, tile, padded_x // tile, tile).sum((0, 2))
    counts = counts.reshape(padded_y // tile, tile, padded_x // tile, tile).sum((0, 2))
    return sums / np.maximum(counts, 1)


def dihedral(tile: np.ndarray, orientation: int) -> np.ndarray:
    """One of the square's 8 symmetries: `orientation` quarter turns, of the transposed tile from 4 on."""
    return np.rot90(tile.T if orientation >= 4 else tile, orientation % 4)


def align(folded: np.ndarray) -> tuple[float, np.ndarray]:
    """The sync z-score and chip amplitudes at the best of the 8 orientations x 16 sub-chip phases x 1024
    cyclic shifts of the folded tile (all correlated at once)."""
    kernel, lattice, sync_filter = decoder_filters(KEY)
    tiles = np.stack([dihedral(folded, orientation) for orientation in range(ORIENTATIONS)])
    matched = np.real(np.fft.ifft2(np.fft.fft2(tiles) * kernel))
    # (orientation, phase y, phase x, chip y, chip x): chip (cy, cx) at phase (py, px) is pixel (4 cy + py, 4 cx + px)
    phases = matched.reshape(ORIENTATIONS, CHIPS, DECODE_CHIP, CHIPS, DECODE_CHIP).transpose(0, 2, 4, 1, 3)
    chips_spectra = np.fft.fft2(phases) / (lattice + _RIDGE * lattice.max())
    correlation = np.real(np.fft.ifft2(chips_spectra * sync_filter)).reshape(*phases.shape[:3], -1)
    z_scores = (correlation.max(axis=-1) - correlation.mean(axis=-1)) / (correlation.std(axis=-1) + 1e-12)
    best = np.unravel_index(int(np.argmax(z_scores)), z_scores.shape)
    shift_y, shift_x = divmod(int(np.argmax(correlation[best])), CHIPS)
    chips = np.real(np.fft.ifft2(chips_spectra[best]))
    return float(z_scores[best]), np.roll(chips, (-shift_y, -shift_x), (0, 1))
