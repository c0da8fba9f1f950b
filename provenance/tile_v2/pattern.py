"""tile-v2's pattern: the keyed chip grids, their rendering, and the filters embed and read share.

tile-v1 (provenance/watermark.py) is the same pattern under its own PatternKey: it shares all of this.
"""

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from provenance.payload_code import coded_length, encode_payload

ALGORITHM = "io.github.headshot.watermark.tile-v2"
PAYLOAD_BITS = 64
CHIPS = 32  # a tile is CHIPS x CHIPS chips
TILES_PER_SIDE = 4  # the period is a quarter of the image's long side
CODED_BITS = coded_length(PAYLOAD_BITS)
DECODE_TILE = 128  # the reader resamples one period to this many pixels
DECODE_CHIP = DECODE_TILE // CHIPS

_BANDPASS_SIGMAS = (0.5, 4.0)
_WHITEN_SIGMA = 4.0
_WHITEN_EPS = 0.05


def codeword(payload: int) -> np.ndarray:
    return encode_payload(payload, PAYLOAD_BITS)


@dataclass(frozen=True)
class PatternKey:
    """What tells one tile watermark's pattern from another's: the seed of its sync pattern, spreading pattern
    and chip assignment, and the share of each chip that carries the sync pattern."""

    seed: int
    sync_weight: float

    def patterns(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The public sync pattern, the spreading pattern and which coded bit each chip carries."""
        return _patterns(self.seed)

    def chip_grid(self, payload: int) -> np.ndarray:
        sync, spreading, assignment = self.patterns()
        symbols = 1.0 - 2.0 * codeword(payload)[assignment].astype(np.float32)
        return self.sync_weight * sync + (1 - self.sync_weight) * spreading * symbols

    def soft_bits(self, chips: np.ndarray) -> np.ndarray:
        """One value per coded bit from aligned chip amplitudes (> 0 means "more likely 0"), the sync removed."""
        sync, spreading, assignment = self.patterns()
        sync_amplitude = np.sum(chips * sync) / chips.size
        message = (chips - sync_amplitude * sync) * spreading
        soft = np.bincount(assignment.ravel(), weights=message.ravel(), minlength=CODED_BITS)
        return soft / (np.std(soft) + 1e-12)


KEY = PatternKey(seed=0x7E11_E2B2, sync_weight=0.38)


@lru_cache(maxsize=2)
def _patterns(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    sync = rng.choice([-1.0, 1.0], size=(CHIPS, CHIPS)).astype(np.float32)
    spreading = rng.choice([-1.0, 1.0], size=(CHIPS, CHIPS)).astype(np.float32)
    assignment = (rng.permutation(CHIPS * CHIPS) % CODED_BITS).reshape(CHIPS, CHIPS)
    return sync, spreading, assignment


def render_periodic(grid: np.ndarray, period: float, height: int, width: int) -> np.ndarray:
    """Upsample a periodic chip grid to the given (fractional) period, covering height x width."""
    chip = period / grid.shape[0]
    tiled = np.tile(grid, (int(np.ceil(height / period)) + 2, int(np.ceil(width / period)) + 2))
    tiled = np.concatenate([tiled[:, -1:], tiled], axis=1)  # one wrapped chip so interpolation is periodic
    tiled = np.concatenate([tiled[-1:, :], tiled], axis=0)
    upsampled = cv2.resize(tiled, (0, 0), fx=chip, fy=chip, interpolation=cv2.INTER_LINEAR)
    offset = round(chip)
    return upsampled[offset : offset + height, offset : offset + width]


def activity_mask(brightness: np.ndarray, sigma: float, floor: float, ceil: float, exponent: float) -> np.ndarray:
    """How much mark each place hides: local contrast over its median, clipped and softened (both tile versions)."""
    mean = cv2.GaussianBlur(brightness, (0, 0), sigma)
    activity = np.sqrt(np.maximum(cv2.GaussianBlur(brightness * brightness, (0, 0), sigma) - mean * mean, 0))
    mask = np.clip(activity / (np.median(activity) + 1e-3), floor, ceil) ** exponent
    return cv2.GaussianBlur(mask, (0, 0), sigma)


def luma(pixels: np.ndarray) -> np.ndarray:
    return pixels[..., 0] * 0.299 + pixels[..., 1] * 0.587 + pixels[..., 2] * 0.114


def residual(image_luma: np.ndarray) -> np.ndarray:
    """Band-pass the luminance around the chip frequencies, then divide by the local RMS so that edges and
    textures do not drown the chips."""
    band = cv2.GaussianBlur(image_luma, (0, 0), _BANDPASS_SIGMAS[0]) - cv2.GaussianBlur(
        image_luma, (0, 0), _BANDPASS_SIGMAS[1]
    )
    local_rms = np.sqrt(cv2.GaussianBlur(band * band, (0, 0), _WHITEN_SIGMA))
    return np.clip(band / (local_rms + _WHITEN_EPS * np.median(local_rms) + 1e-6), -2.5, 2.5)


@lru_cache(maxsize=2)
def decoder_filters(key: PatternKey) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The chip's response in the decoder domain, the lattice spectrum for deconvolution, `key`'s sync filter."""
    impulse = np.zeros((CHIPS, CHIPS), np.float32)
    impulse[0, 0] = 1
    rendered = render_periodic(impulse, DECODE_TILE, DECODE_TILE, DECODE_TILE)
    size = rendered.shape[0]
    band = np.tile(rendered, (3, 3))
    band = cv2.GaussianBlur(band, (0, 0), _BANDPASS_SIGMAS[0]) - cv2.GaussianBlur(band, (0, 0), _BANDPASS_SIGMAS[1])
    kernel = band[size : 2 * size, size : 2 * size]
    kernel_spectrum = np.fft.fft2(kernel)
    lattice = np.real(np.fft.ifft2(np.abs(kernel_spectrum) ** 2))[::DECODE_CHIP, ::DECODE_CHIP]
    sync, _, _ = key.patterns()
    return np.conj(kernel_spectrum), np.real(np.fft.fft2(lattice)), np.conj(np.fft.fft2(sync))
