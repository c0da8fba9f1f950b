"""The recruiter's page over HTTP: several photos, one plain answer each, thumbnails, JSON reports, nothing kept."""

import base64
import html
import io
import json
import re

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from provenance import disclose_image
from service.app import create_app
from service.routes.verify_page import PAGE_MAX_FILES
from service.settings import Settings
from tests.conftest import FACES, encode, face_image


@pytest.fixture(scope="module")
def page_client(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("page") / "data"
    settings = Settings(data_dir=data_dir, public_rate_limit_per_minute=1000)
    with TestClient(create_app(settings)) as client:
        services = client.app.state.services
        disclosure = disclose_image(
            encode(face_image("img2.jpg"), "JPEG", quality=92),
            services.credentials.signing_identity(),
            services.registry,
        )
        yield client, disclosure, data_dir


def _sections(page: str) -> list[str]:
    return re.findall(r'<section class="result[^"]*".*?</section>', page, re.DOTALL)


def test_several_photos_one_plain_answer_each(page_client):
    client, disclosure, data_dir = page_client
    stripped = encode(Image.open(io.BytesIO(disclosure.data)).convert("RGB"), "JPEG", quality=85)
    files = [
        ("files", ("disclosed.jpg", disclosure.data, "image/jpeg")),
        ("files", ("stripped.jpg", stripped, "image/jpeg")),
        ("files", ("camera.jpg", (FACES / "img3.jpg").read_bytes(), "image/jpeg")),
        ("files", ("notes.txt", b"not a photo", "text/plain")),
    ]
    before = sorted(path.relative_to(data_dir) for path in data_dir.rglob("*") if path.is_file())
    page = client.post("/verify", files=files)
    assert page.status_code == 200  # three of four could be read
    sections = _sections(page.text)
    assert len(sections) == 4
    labels = [re.search(r'data-label="([a-z_]+)"', section) for section in sections]
    assert [label.group(1) if label else None for label in labels] == [
        "ai_verified",
        "ai_soft_binding",
        "no_provenance",
        None,
    ]
    verified, recovered, unknown, unreadable = sections
    assert "AI-generated, and we can confirm who says so" in verified
    assert "this installation&#x27;s own certificate authority" in verified
    # a stripped copy: the credentials of its original, recovered from the registry and validated here
    assert "The credentials of the original" in recovered
    for fact in ("Disclosed by</dt><dd>headshot", "Made with</dt><dd>headshot", "signature valid"):
        assert fact in recovered, fact
    assert disclosure.manifest_label in recovered
    # no provenance never reads as real
    assert "We found nothing either way" in unknown and "does not mean the photo is real" in unknown
    assert "We could not read this file" in unreadable and "notes.txt" in unreadable

    for section in sections[:3]:
        thumbnail = re.search(r'<img class="thumb" src="data:image/jpeg;base64,([^"]+)" alt="Thumbnail of', section)
        with Image.open(io.BytesIO(base64.b64decode(thumbnail.group(1)))) as image:
            assert max(image.size) <= 240
        report = re.search(r'href="data:application/json;base64,([^"]+)" download="([^"]+)"', section)
        verdict = json.loads(base64.b64decode(report.group(1)))
        assert report.group(2).endswith(".verdict.json") and verdict["label"] in section
        assert "<details>" in section and "Evidence and details" in section
    assert "Contains Fully GenAI Media" in html.unescape(verified)  # the Asset Rubrics signals, in words

    after = sorted(path.relative_to(data_dir) for path in data_dir.rglob("*") if path.is_file())
    assert after == before  # nothing of the photos was stored


def test_form_works_without_javascript_and_keeps_the_old_field(page_client):
    client, _, _ = page_client
    form = client.get("/verify").text
    assert '<form method="post" action="/verify" enctype="multipart/form-data"' in form
    assert re.search(r'<input type="file" id="photos" name="files" multiple required', form)
    assert '<label for="photos">' in form and '<html lang="en">' in form and 'name="viewport"' in form
    one = client.post("/verify", files={"file": ("p.jpg", (FACES / "img3.jpg").read_bytes(), "image/jpeg")})
    assert one.status_code == 200 and len(_sections(one.text)) == 1


def test_refusals_answer_as_the_page(page_client):
    client, _, _ = page_client
    bad = client.post("/verify", files={"files": ("p.jpg", b"nope", "image/jpeg")})
    assert bad.status_code == 415 and "not a JPEG" in bad.text and "<form" in bad.text
    photo = encode(face_image(size=64), "JPEG")
    many = [("files", (f"{n}.jpg", photo, "image/jpeg")) for n in range(PAGE_MAX_FILES + 1)]
    too_many = client.post("/verify", files=many)
    assert too_many.status_code == 413 and f"at most {PAGE_MAX_FILES}" in too_many.text
    assert client.post("/verify", data={"x": "y"}).status_code == 422
