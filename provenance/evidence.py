"""One piece of evidence behind a verdict: where it was found, what it says, and how much it weighs."""

from typing import Literal

from pydantic.dataclasses import dataclass


@dataclass(frozen=True)
class Evidence:
    source: Literal["c2pa", "xmp", "exif", "png-text", "watermark", "fingerprint"]
    detail: str
    strength: Literal["strong", "weak"]  # strong: enough on its own for a label; weak: a hint
