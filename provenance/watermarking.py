"""The seam between disclosure, the registry and the decision rule on one side, a watermark algorithm on the other.

A `Watermarker` embeds a payload and reads one back, with a confidence and the soft code bits it received
(so a payload proposed by the fingerprints can be confirmed bit by bit). Each registered image records the
name of the algorithm that marked it; `verify` reads with every algorithm this installation knows, newest
first. Another algorithm (TrustMark, VideoSeal) plugs in by implementing the protocol and being listed in
`WATERMARKERS`; `disclose_image(..., watermarker=...)` chooses the one new disclosures use.
"""

from dataclasses import dataclass
from typing import Protocol

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class WatermarkReading:
    """What a reader found. `payload` is set only when the reader's own checks (CRC, confidence) passed."""

    payload: int | None
    confidence: float  # the reader's detection statistic (a sync z-score for the tile algorithms)
    soft_bits: np.ndarray | None  # one value per coded bit at the best hypothesis; > 0 means "more likely 0"
    hypotheses: int = 1  # how many decodings the reader tried (the false-match arithmetic counts them all)

    def agreement_with(self, codeword: np.ndarray) -> float:
        """Share of received coded bits that agree with `codeword` (about 0.5 for an unrelated one)."""
        if self.soft_bits is None:
            return 0.5
        return float(np.mean((self.soft_bits < 0).astype(np.uint8) == codeword))


class Watermarker(Protocol):
    name: str  # what the registry records, e.g. "tile-v2"
    algorithm: str  # the `alg` of the manifest's c2pa.soft-binding assertion
    payload_bits: int
    min_side: int  # images with a shorter side are not marked
    confidence_threshold: float

    def embed(self, image: Image.Image, payload: int) -> Image.Image: ...

    def read(self, image: Image.Image) -> WatermarkReading: ...

    def codeword(self, payload: int) -> np.ndarray: ...


class _TileWatermarker:
    """A tile watermark module behind the protocol: its constants, its embed and read functions, its codeword."""

    def __init__(self, name: str, module, embed, read):
        self.name = name
        self.algorithm = module.ALGORITHM
        self.payload_bits = module.PAYLOAD_BITS
        self.min_side = module.MIN_SIDE
        self.confidence_threshold = module.Z_THRESHOLD
        self.embed = embed
        self.read = read
        self.codeword = module.codeword


def _tile_v2() -> Watermarker:
    """The orientation-searching tile watermark (provenance/tile_v2/)."""
    from provenance import tile_v2

    return _TileWatermarker("tile-v2", tile_v2, tile_v2.embed, tile_v2.read)


def _tile_v1() -> Watermarker:
    """The first tile watermark (provenance/watermark.py): read for images disclosed before tile-v2."""
    from provenance import watermark

    return _TileWatermarker("tile-v1", watermark, watermark.embed_watermark, watermark.read_watermark)


DEFAULT_WATERMARKER = "tile-v2"
_FACTORIES = {"tile-v2": _tile_v2, "tile-v1": _tile_v1}  # newest first: the order verify reads in
_INSTANCES: dict[str, Watermarker] = {}


def watermarker(name: str = DEFAULT_WATERMARKER) -> Watermarker:
    """The watermark algorithm registered under `name` ("tile-v2", "tile-v1")."""
    if name not in _FACTORIES:
        raise ValueError(f"unknown watermark algorithm {name!r}; known: {', '.join(_FACTORIES)}")
    if name not in _INSTANCES:
        _INSTANCES[name] = _FACTORIES[name]()
    return _INSTANCES[name]


def known_watermarkers() -> list[Watermarker]:
    """Every algorithm this installation reads, newest first."""
    return [watermarker(name) for name in _FACTORIES]
