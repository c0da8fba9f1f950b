import pytest
from fastapi.testclient import TestClient

from provenance import disclose_image
from service.app import create_app
from service.settings import Settings
from tests.conftest import FACES


@pytest.fixture
def settings(tmp_path):
    return Settings(data_dir=tmp_path / "data", max_upload_bytes=2_000_000)


@pytest.fixture
def client(settings):
    return TestClient(create_app(settings))


def test_healthz(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


def test_verify_disclosed_upload(client, settings, headshot_jpeg):
    disclosed = disclose_image(headshot_jpeg, settings.credentials.signing_identity(), settings.registry())
    response = client.post("/v1/verify", files={"file": ("photo.jpg", disclosed.data, "image/jpeg")})
    assert response.status_code == 200, response.text
    verdict = response.json()
    assert verdict["label"] == "ai_verified"
    assert verdict["file"] == "photo.jpg"
    assert verdict["c2pa"]["state"] == "trusted"


def test_verify_detects_format_from_content(client):
    data = (FACES / "img47.jpg").read_bytes()  # WebP bytes, sent as a JPEG
    response = client.post("/v1/verify", files={"file": ("img47.jpg", data, "image/jpeg")})
    assert response.status_code == 200
    assert response.json()["label"] == "no_provenance"


@pytest.mark.parametrize(
    ("content", "status", "message"),
    [
        (b"", 422, "empty"),
        (b"GIF89a" + b"\x00" * 40, 415, "GIF file"),
        (b"plain text, not an image", 415, "not a JPEG, PNG or WebP"),
        ((FACES / "img1.jpg").read_bytes()[:5000], 422, "corrupt or truncated"),
        (b"\xff\xd8\xff" + b"\x00" * 2_000_001, 413, "over the limit of 2,000,000 bytes"),
    ],
)
def test_bad_uploads(client, content, status, message):
    response = client.post("/v1/verify", files={"file": ("upload.jpg", content, "image/jpeg")})
    assert response.status_code == status
    assert message in response.json()["detail"]


def test_missing_file_field(client):
    response = client.post("/v1/verify", data={"other": "x"})
    assert response.status_code == 422
    assert "file" in response.json()["detail"]
