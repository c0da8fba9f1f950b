"""The C2PA soft-binding resolution API: public, rate-limited, bounded, and its manifest stores read by c2pa."""

import base64
import io

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from provenance import disclose_image, fingerprint, watermark
from service.app import create_app
from service.database import engine_for
from service.registry import RegisteredImage
from service.settings import Settings
from tests.conftest import encode, face_image


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """An app with one disclosed headshot registered; yields (client, disclosure)."""
    settings = Settings(data_dir=tmp_path_factory.mktemp("resolution") / "data", public_rate_limit_per_minute=1000)
    with TestClient(create_app(settings)) as client:
        services = client.app.state.services
        jpeg = encode(face_image("img2.jpg"), "JPEG", quality=92)
        disclosure = disclose_image(jpeg, services.credentials.signing_identity(), services.registry)
        yield client, disclosure


def _stripped(disclosure) -> bytes:
    """A copy as a platform serves it: re-encoded, metadata and manifest gone."""
    from PIL import Image

    return encode(Image.open(io.BytesIO(disclosure.data)).convert("RGB"), "JPEG", quality=85)


def test_supported_algorithms(served):
    client, _ = served
    answer = client.get("/services/supportedAlgorithms")
    assert answer.status_code == 200
    assert answer.json() == {
        "watermarks": [{"alg": watermark.ALGORITHM}],
        "fingerprints": [{"alg": fingerprint.ALGORITHM}],
    }


def test_by_binding_finds_the_watermark_payload(served):
    client, disclosure = served
    value = base64.b64encode(disclosure.payload.to_bytes(8, "big")).decode()
    expected = {"matches": [{"manifestId": disclosure.manifest_label, "similarityScore": 100}]}
    assert client.get("/matches/byBinding", params={"alg": watermark.ALGORITHM, "value": value}).json() == expected
    posted = client.post("/matches/byBinding", json={"alg": watermark.ALGORITHM, "value": value})
    assert posted.status_code == 200 and posted.json() == expected

    unknown = base64.b64encode((disclosure.payload ^ 1).to_bytes(8, "big")).decode()
    assert client.get("/matches/byBinding", params={"alg": watermark.ALGORITHM, "value": unknown}).json() == {
        "matches": []
    }
    refusals = [
        ({"alg": "com.example.other", "value": value}, "unsupported algorithm"),
        ({"alg": watermark.ALGORITHM, "value": "not base64!"}, "not base64"),
        ({"alg": watermark.ALGORITHM, "value": base64.b64encode(b"abc").decode()}, "8-byte payload"),
        ({"alg": fingerprint.ALGORITHM, "value": value}, "/matches/byContent"),
    ]
    for params, message in refusals:
        answer = client.get("/matches/byBinding", params=params)
        assert answer.status_code == 400 and message in answer.json()["detail"], params
    assert client.get("/matches/byBinding", params={"alg": watermark.ALGORITHM}).status_code == 422


def test_by_content_recovers_a_stripped_copy_and_its_manifest_store(served):
    import c2pa

    client, disclosure = served
    copy = _stripped(disclosure)
    answer = client.post("/matches/byContent", content=copy, headers={"Content-Type": "image/jpeg"})
    assert answer.status_code == 200
    assert answer.json() == {"matches": [{"manifestId": disclosure.manifest_label, "similarityScore": 100}]}

    stranger = encode(face_image("img5.jpg", size=512), "JPEG")
    answer = client.post("/matches/byContent", content=stranger, headers={"Content-Type": "image/jpeg"})
    assert answer.json() == {"matches": []}

    store = client.get(f"/manifests/{disclosure.manifest_label}")
    assert store.status_code == 200 and store.headers["content-type"] == "application/c2pa"
    services = client.app.state.services
    context = services.trust().c2pa_context()
    with c2pa.Reader("application/c2pa", io.BytesIO(store.content), context=context) as reader:
        manifest = reader.get_active_manifest()
        codes = {item["code"] for item in reader.get_validation_results()["activeManifest"]["success"]}
    assert manifest["label"] == disclosure.manifest_label
    assert {"claimSignature.validated", "signingCredential.trusted"} <= codes
    # With the original file, any C2PA reader validates the store in full.
    stripped_of_manifest = disclosure.data
    with c2pa.Reader("image/jpeg", io.BytesIO(stripped_of_manifest), store.content, context=context) as reader:
        assert reader.get_validation_state() == "Trusted"
    assert client.get(f"/manifests/{disclosure.manifest_label}", params={"returnActiveManifest": True}).content == (
        store.content
    )
    assert client.get("/manifests/urn:c2pa:nothing-here").status_code == 404


def test_by_content_refuses_what_it_cannot_read(served):
    client, _ = served
    jpeg = encode(face_image(size=64), "JPEG")
    cases = [
        (b"GIF89a" + b"\0" * 64, "image/gif", 415),
        (b"\xff\xd8\xff broken", "image/jpeg", 400),
        (jpeg, "application/json", 415),
        (b"", "image/jpeg", 400),
    ]
    for body, content_type, status in cases:
        answer = client.post("/matches/byContent", content=body, headers={"Content-Type": content_type})
        assert answer.status_code == status, (content_type, answer.text)
        assert answer.json()["detail"]
    unknown = client.post(
        "/matches/byContent", params={"alg": "com.example.x"}, content=jpeg, headers={"Content-Type": "image/jpeg"}
    )
    assert unknown.status_code == 400
    by_reference = client.post("/matches/byReference", json={"referenceUrl": "https://example.com/a.jpg"})
    assert by_reference.status_code == 501 and "fetches no URL" in by_reference.json()["detail"]


def test_public_rate_limited_and_bounded(tmp_path):
    settings = Settings(data_dir=tmp_path / "data", public_rate_limit_per_minute=2, max_upload_bytes=50_000)
    with TestClient(create_app(settings)) as client:
        big = encode(face_image(size=1024), "PNG")
        assert len(big) > 50_000 + 16 * 1024
        answer = client.post("/matches/byContent", content=big, headers={"Content-Type": "image/png"})
        assert answer.status_code == 413  # refused before the body is read
        assert client.get("/services/supportedAlgorithms").status_code == 200
        limited = client.get("/services/supportedAlgorithms")
        assert limited.status_code == 429 and limited.headers["Retry-After"]
        assert "Too many" in limited.json()["detail"]  # JSON, not the page


def test_erasure_drops_the_stored_manifest(served):
    client, disclosure = served
    services = client.app.state.services
    services.registry.strip_personal_data(disclosure.manifest_label)
    with Session(engine_for(services.settings.resolved_database_url)) as session:
        row = session.exec(select(RegisteredImage).where(RegisteredImage.manifest_label == disclosure.manifest_label))
        assert row.one().manifest_store is None
    answer = client.get(f"/manifests/{disclosure.manifest_label}")
    assert answer.status_code == 404 and "erased" in answer.json()["detail"]
