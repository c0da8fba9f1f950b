import io
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

import pytest
from PIL import Image

from provenance import CredentialStore
from provenance.registry import InMemoryRegistry

# Nothing in these tests may reach a model hub: set before anything imports huggingface_hub.
os.environ["HF_HUB_OFFLINE"] = "1"
# Under pytest-xdist each worker has a core of its own: one compute thread each (and in the processes they
# start), or the two workers' torch and OpenMP threads spin against each other on a 2-core machine.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
FACES = SHARED_DATA / "faces"
CONFORMANCE = SHARED_DATA / "c2pa-conformance"


def encode(image: Image.Image, image_format: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, image_format, **options)
    return buffer.getvalue()


def signed_capture(store: CredentialStore, jpeg: bytes, *assertions: dict) -> bytes:
    """A JPEG signed as a camera capture (`digitalCapture`) by `store`, with any extra assertions."""
    import c2pa

    created = {
        "action": "c2pa.created",
        "digitalSourceType": "http://cv.iptc.org/newscodes/digitalsourcetype/digitalCapture",
    }
    manifest = {
        "claim_generator_info": [{"name": "test camera", "version": "1.0"}],
        "assertions": [{"label": "c2pa.actions.v2", "data": {"actions": [created]}}, *assertions],
    }
    signed = io.BytesIO()
    c2pa.Builder(manifest).sign(store.signing_identity().c2pa_signer(), "image/jpeg", io.BytesIO(jpeg), signed)
    return signed.getvalue()


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


@pytest.fixture(scope="session", autouse=True)
def offline_hub():
    """Keep the hub offline even if huggingface_hub was imported before this conftest set the variable."""
    import huggingface_hub.constants

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
        yield


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, offline_hub) -> Path:
    """The tiny random SDXL model, built once: a diffusers folder holding also tiny-sdxl.safetensors."""
    from generation.tiny import write_tiny_model

    return write_tiny_model(tmp_path_factory.mktemp("tiny-sdxl") / "model", seed=0)


@pytest.fixture(scope="session")
def tiny_faceid(tiny_model, tmp_path_factory) -> Path:
    """A tiny random IP-Adapter FaceID for the tiny model (a folder holding its weights file)."""
    from generation.tiny_faceid import write_tiny_faceid_adapter

    return write_tiny_faceid_adapter(tmp_path_factory.mktemp("tiny-faceid") / "ip-adapter-faceid", tiny_model)


@pytest.fixture(scope="session")
def tiny_insightface_pack(tmp_path_factory) -> Path:
    """The tiny insightface-shaped pack: one "face" at a fixed place of any bright image (needs insightface)."""
    pytest.importorskip("insightface")  # optional: see scoring/insightface_backend.py
    from scoring.tiny_insightface import write_tiny_insightface_pack

    return write_tiny_insightface_pack(tmp_path_factory.mktemp("tiny-insightface") / "insightface")


@pytest.fixture(scope="session")
def tiny_config(tiny_model, tmp_path_factory) -> Path:
    """The tiny model's diffusers folder without any weights: loading the single file with it as `config`
    proves every weight comes from the single file."""
    config = tmp_path_factory.mktemp("tiny-sdxl-config") / "config"
    shutil.copytree(tiny_model, config, ignore=shutil.ignore_patterns("*.safetensors", "*.bin"))
    return config


def require_server(name: str, reason: str) -> NoReturn:
    """Skip the test because server `name` does not answer (`reason` says why), or fail it instead when
    HEADSHOT_TEST_REQUIRE_SERVERS=1, as a run that must exercise every server sets."""
    message = f"no {name} server: {reason}"
    if os.environ.get("HEADSHOT_TEST_REQUIRE_SERVERS") == "1":
        pytest.fail(f"{message} (HEADSHOT_TEST_REQUIRE_SERVERS=1)")
    pytest.skip(message)


POSTGRES_ADMIN_URL = os.environ.get("HEADSHOT_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")


@contextmanager
def fresh_postgres_database() -> Iterator[str]:
    """A new, empty PostgreSQL database (dropped afterwards); skips the test when no server listens."""
    import uuid

    import psycopg

    name = f"headshot_test_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        require_server("PostgreSQL", f"{POSTGRES_ADMIN_URL}: {exc}")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = POSTGRES_ADMIN_URL.replace("postgresql://", "postgresql+psycopg://").rsplit("/", 1)[0] + f"/{name}"
    try:
        yield url
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path) -> Iterator[str]:
    """A fresh database on each engine: SQLite in tmp, or a new, migrated PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'headshot.db'}"
        return
    from sqlalchemy import create_engine

    from service.database import upgrade

    with fresh_postgres_database() as url:
        migrating = create_engine(url)
        upgrade(migrating)  # as `headshot db upgrade` does: a shared database is migrated by its operator
        migrating.dispose()
        yield url


# How each EXIF Orientation value stores a photo: the stored pixels are the upright photo turned by this
# transpose, and a viewer (or decode_image) turns them back.
STORED_FOR_ORIENTATION = {
    3: Image.Transpose.ROTATE_180,
    6: Image.Transpose.ROTATE_90,  # a phone held upright, sensor sideways: viewers turn it 90 degrees clockwise
    8: Image.Transpose.ROTATE_270,
}


def sideways(name: str, orientation: int, image_format: str = "JPEG") -> bytes:
    """A real face photo re-saved as a phone stores it: pixels turned, with an EXIF Orientation tag to undo it."""
    with Image.open(FACES / name) as image:
        upright = image.convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(upright.transpose(STORED_FOR_ORIENTATION[orientation]), image_format, quality=92, exif=exif)
