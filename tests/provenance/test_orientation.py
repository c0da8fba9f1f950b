"""Phone photos stored sideways with an EXIF Orientation tag decode upright, once, for every reader."""

import io

import numpy as np
import pytest
from PIL import Image

from provenance import ImageLimits, disclose_image, verify_image
from provenance.images import decode_image
from provenance.registry import InMemoryRegistry
from scoring.faces import detect_faces
from tests.conftest import FACES, sideways


def _upright(name: str) -> Image.Image:
    with Image.open(FACES / name) as image:
        return image.convert("RGB")


@pytest.mark.parametrize("image_format", ["JPEG", "PNG", "WEBP"])
@pytest.mark.parametrize("orientation", [6, 8, 3])
def test_sideways_photos_decode_upright(orientation, image_format):
    data = sideways("img2.jpg", orientation, image_format)
    stored = Image.open(io.BytesIO(data))
    assert stored.getexif()[0x0112] == orientation
    upright = _upright("img2.jpg")
    decoded = decode_image(data, ImageLimits())
    assert decoded.size == upright.size and decoded.format == image_format
    assert 0x0112 not in decoded.getexif()  # applied once: nothing downstream turns it again
    small = (upright.width // 8, upright.height // 8)
    difference = np.abs(
        np.asarray(decoded.convert("RGB").resize(small), float) - np.asarray(upright.resize(small), float)
    )
    assert difference.mean() < 3  # the same picture (only the lossy re-encode differs)
    assert len(detect_faces(decoded)) == 1
    if orientation != 3:  # a face lying on its side is no face to the detector: this is what was broken
        assert detect_faces(stored.convert("RGB")) == []


def test_disclosure_of_a_sideways_image_is_upright(store):
    data = sideways("img1.jpg", 6)
    registry = InMemoryRegistry()
    disclosure = disclose_image(data, store.signing_identity(), registry, reference_hashes=["ab" * 32])
    output = Image.open(io.BytesIO(disclosure.data))
    assert output.size == _upright("img1.jpg").size and 0x0112 not in output.getexif()
    assert verify_image(disclosure.data, store.trust_anchors()).label == "ai_verified"
