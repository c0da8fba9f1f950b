"""The recruiter's page in a real browser: Debian's chromium driven by Playwright (no browser download).

Uploads several photos, reads each verdict, uses the page with the keyboard alone, checks that the page's
own script runs under its Content-Security-Policy and that the page fits a phone, and keeps a screenshot
(HEADSHOT_TEST_ARTIFACTS, default ./test-artifacts).
"""

import io
import os
from pathlib import Path

import pytest
from PIL import Image

from provenance import disclose_image
from service.app import create_app
from service.settings import Settings
from tests.conftest import FACES, encode, face_image, require_server
from tests.service.test_hardening import serving

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("HEADSHOT_TEST_ARTIFACTS", "test-artifacts"))


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> tuple[str, list[Path]]:
    """A served app with one disclosure registered, and three photos on disk: disclosed, stripped, unknown."""
    if not CHROMIUM.exists():
        require_server("chromium", f"{CHROMIUM} is missing (apt-get install chromium)")
    directory = tmp_path_factory.mktemp("browser")
    app = create_app(Settings(data_dir=directory / "data", public_rate_limit_per_minute=1000))
    services = app.state.services
    disclosure = disclose_image(
        encode(face_image("img2.jpg"), "JPEG", quality=92), services.credentials.signing_identity(), services.registry
    )
    files = {
        "disclosed.jpg": disclosure.data,
        "stripped.jpg": encode(Image.open(io.BytesIO(disclosure.data)).convert("RGB"), "JPEG", quality=85),
        "someone.jpg": (FACES / "img3.jpg").read_bytes(),
    }
    for name, data in files.items():
        (directory / name).write_bytes(data)
    with serving(app) as port:
        yield f"http://127.0.0.1:{port}", [directory / name for name in files]


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield chromium
        chromium.close()


def _verdicts(page) -> list[tuple[str, str]]:
    headings = page.locator("section.result h2")
    return [(heading.get_attribute("data-label"), heading.inner_text()) for heading in headings.all()]


def test_upload_several_photos_and_read_each_verdict(photos, browser):
    url, files = photos
    page = browser.new_page()
    violations = []
    page.on("console", lambda message: violations.append(message.text) if "Content Security" in message.text else 0)
    page.goto(f"{url}/verify")
    page.set_input_files("#photos", [str(path) for path in files])
    assert page.inner_text("#chosen") == "3 photos chosen"  # the page's script runs under its policy
    with page.expect_navigation():
        page.click("button[type=submit]")
    assert _verdicts(page) == [
        ("ai_verified", "AI-generated, and we can confirm who says so"),
        ("ai_soft_binding", "AI-generated: a copy of an image disclosed as AI-generated"),
        ("no_provenance", "We found nothing either way"),
    ]
    stripped = page.locator("section.result").nth(1)
    assert "The credentials of the original" in stripped.inner_text()
    for image in page.locator("img.thumb").all():  # thumbnails load (data: URLs are allowed) and are described
        assert image.evaluate("img => img.complete && img.naturalWidth > 0")
        assert image.get_attribute("alt").startswith("Thumbnail of your photo")
    assert violations == []

    page.set_viewport_size({"width": 390, "height": 844})  # a phone
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "verify-page-phone.png"), full_page=True)
    page.set_viewport_size({"width": 1280, "height": 900})
    page.screenshot(path=str(ARTIFACTS / "verify-page.png"), full_page=True)
    assert (ARTIFACTS / "verify-page.png").stat().st_size > 10_000


def test_keyboard_alone(photos, browser):
    url, files = photos
    page = browser.new_page()
    # Playwright subscribes to file choosers without waiting for the answer (a fire-and-forget updateSubscription):
    # a listener added now has it on long before the key press below, which a busy machine could outrun.
    page.on("filechooser", lambda chooser: None)
    page.goto(f"{url}/verify")
    for _ in range(10):  # tab to the file picker
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "photos":
            break
    assert page.evaluate("document.activeElement.id") == "photos"
    with page.expect_file_chooser() as chooser:
        page.keyboard.press("Enter")  # a file input opens on Enter, as on a typed space
    chooser.value.set_files([str(files[0]), str(files[2])])
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.type") == "submit"
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert [label for label, _ in _verdicts(page)] == ["ai_verified", "no_provenance"]

    for _ in range(10):  # on to the first details section, opened with the keyboard
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.tagName") == "SUMMARY":
            break
    page.keyboard.press("Enter")
    assert page.locator("details").first.evaluate("details => details.open")
    assert "Verdict label" in page.locator("details").first.inner_text()


def test_drop_photos_on_the_form(photos, browser):
    url, files = photos
    page = browser.new_page()
    page.goto(f"{url}/verify")
    transfer = page.evaluate_handle(
        """bytes => { const transfer = new DataTransfer();
        transfer.items.add(new File([new Uint8Array(bytes)], "dropped.jpg", {type: "image/jpeg"}));
        return transfer; }""",
        list(files[2].read_bytes()),
    )
    page.dispatch_event("#drop-zone", "drop", {"dataTransfer": transfer})
    assert page.inner_text("#chosen") == "1 photo chosen"
    with page.expect_navigation():
        page.click("button[type=submit]")
    assert [label for label, _ in _verdicts(page)] == ["no_provenance"]
