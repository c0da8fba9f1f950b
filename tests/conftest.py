import io
import json
from pathlib import Path

import pytest
from PIL import Image

from provenance import CredentialStore
from provenance.registry import InMemoryRegistry

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
FACES = SHARED_DATA / "faces"
CONFORMANCE = SHARED_DATA / "c2pa-conformance"


def encode(image: Image.Image, image_format: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, image_format, **options)
    return buffer.getvalue()


def face_image(name: str = "img1.jpg", size: int = 1024) -> Image.Image:
    with Image.open(FACES / name) as image:
        return image.convert("RGB").resize((size, size))


@pytest.fixture(scope="session")
def faces() -> Path:
    return FACES


@pytest.fixture(scope="session")
def conformance() -> tuple[Path, list[dict]]:
    return CONFORMANCE, json.loads((CONFORMANCE / "expected.json").read_text())["files"]


@pytest.fixture(scope="session")
def store(tmp_path_factory) -> CredentialStore:
    """This installation's credentials, created once for the session."""
    return CredentialStore(tmp_path_factory.mktemp("credentials"), organization="headshot tests")


@pytest.fixture(scope="session")
def foreign_store(tmp_path_factory) -> CredentialStore:
    """Another organisation's CA and signer, which this installation does not trust."""
    return CredentialStore(
        tmp_path_factory.mktemp("foreign"), signer_name="Elsewhere Signer", organization="Elsewhere Inc"
    )


@pytest.fixture(scope="session")
def headshot_jpeg() -> bytes:
    return encode(face_image(), "JPEG", quality=92)


@pytest.fixture(scope="session")
def registry() -> InMemoryRegistry:
    return InMemoryRegistry()
