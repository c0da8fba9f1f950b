"""Every hostile corpus file through every entry point: the CLI, POST /v1/verify, photo upload, disclose_image.

Each must give a clear ImageInputError-type message or a correct verdict: never a traceback, a 500, a hang
or unbounded memory. The corpus is generated once per module (tests/hostile/corpus.py).
"""

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from provenance import Disclosure, ImageInputError, disclose_image, verify_image
from provenance.images import ImageLimits
from provenance.registry import InMemoryRegistry
from service.app import create_app
from service.database import engine_for
from service.deps import create_key
from service.settings import Settings
from tests.hostile.corpus import PIXEL_LIMIT, Entry, build

CLI_TIMEOUT_S = 90
MEMORY_CAP = 3 << 30  # RLIMIT_AS of the CLI subprocess
CONSENT = {"given_by": "Ada Example", "scope": ["training", "generation"], "text_version": "consent-v3"}
MIME = {".jpg": "image/jpeg", ".png": "image/png", ".webp": "image/webp", ".gif": "image/gif"}


def _entries() -> list[Entry]:
    import tempfile

    # names and expectations only; the files themselves are written by the `corpus` fixture
    with tempfile.TemporaryDirectory() as scratch:
        return build(Path(scratch))


ENTRIES = _entries()
IDS = [entry.name for entry in ENTRIES]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("hostile-corpus")
    build(directory)
    return directory


def _no_traceback(text: str) -> None:
    assert "Traceback" not in text and "panicked" not in text, text[-3000:]


def _check_error_message(entry: Entry, message: str) -> None:
    assert message and entry.message in message, f"{entry.name}: expected {entry.message!r} in {message!r}"
    assert "<_io." not in message and "object at 0x" not in message, f"{entry.name}: internal repr in {message!r}"


# --- (1) headshot verify --json, as a subprocess with a timeout and a memory cap ---------------------------


def _cap_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


def _run_cli(paths: list[Path], data_dir: Path) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if not key.startswith("HEADSHOT_")}
    env.update(HEADSHOT_DATA_DIR=str(data_dir), OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    command = [sys.executable, "-c", "from service.cli import app; app()", "verify", "--json", *map(str, paths)]
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        env=env,
        cwd=data_dir.parent,
        preexec_fn=_cap_memory,
    )


@pytest.fixture(scope="module")
def cli_results(corpus, tmp_path_factory) -> dict[str, tuple[int, dict, str]]:
    """{name: (exit status, JSON result, stderr)}: one run over the whole corpus, then one run per file
    if that run did not end cleanly, so that a crash is pinned on the file that caused it."""
    data_dir = tmp_path_factory.mktemp("cli") / "data"
    paths = [corpus / entry.name for entry in ENTRIES]
    batch = _run_cli(paths, data_dir)
    if batch.returncode in (0, 1):
        try:
            results = json.loads(batch.stdout)
        except ValueError:
            results = None
        if isinstance(results, list) and len(results) == len(paths):
            return {Path(r["file"]).name: (batch.returncode, r, batch.stderr) for r in results}
    per_file = {}
    for path in paths:
        try:
            run = _run_cli([path], data_dir)
        except subprocess.TimeoutExpired:
            per_file[path.name] = (-1, {}, f"timed out after {CLI_TIMEOUT_S} s")
            continue
        try:
            result = json.loads(run.stdout)[0]
        except (ValueError, IndexError, KeyError):
            result = {}
        per_file[path.name] = (run.returncode, result, run.stderr)
    return per_file


@pytest.mark.parametrize("entry", ENTRIES, ids=IDS)
def test_cli_verify(cli_results, entry):
    status, result, stderr = cli_results[entry.name]
    assert status in (0, 1), f"{entry.name}: exit status {status}; stderr: {stderr[-3000:]}"
    _no_traceback(stderr)
    if entry.error:
        assert "label" not in result
        _check_error_message(entry, result.get("error", ""))
    else:
        assert "error" not in result, result.get("error")
        assert not entry.labels or result.get("label") in entry.labels, (entry.name, result.get("label"))


# --- (2) and (3) the HTTP API ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    defaults = ImageLimits()  # 50 MP and 25 MB, whatever HEADSHOT_* the environment sets
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("api") / "data",
        max_pixels=defaults.max_pixels,
        max_upload_bytes=defaults.max_bytes,
    )
    with Session(engine_for(settings.resolved_database_url)) as session:
        keys = {
            "verifier": create_key(session, "recruiter", "verifier"),
            "studio": create_key(session, "studio-a", "studio", "tenant-a"),
        }
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        studio = {"Authorization": f"Bearer {keys['studio']}"}
        subject = client.post("/v1/subjects", json={"display_name": "Ada", "consent": CONSENT}, headers=studio)
        assert subject.status_code == 201, subject.text
        yield client, keys, subject.json()["id"]


def _upload(entry: Entry, corpus: Path) -> dict:
    data = (corpus / entry.name).read_bytes()
    return {"file": (entry.name, data, MIME.get(Path(entry.name).suffix, "application/octet-stream"))}


def _check_response(entry: Entry, response, ok: int) -> dict:
    assert response.status_code != 500, f"{entry.name}: 500 {response.text[:2000]}"
    body = response.json()
    if response.status_code == ok:
        assert not entry.error, f"{entry.name}: accepted ({ok}) but should be refused with {entry.message!r}"
        return body
    assert 400 <= response.status_code < 500, f"{entry.name}: {response.status_code} {response.text[:2000]}"
    assert isinstance(body.get("detail"), str) and body["detail"], body
    if entry.error:
        _check_error_message(entry, body["detail"])
    return body


@pytest.mark.parametrize("entry", ENTRIES, ids=IDS)
def test_api_verify(api, corpus, entry):
    client, keys, _ = api
    response = client.post(
        "/v1/verify", files=_upload(entry, corpus), headers={"Authorization": f"Bearer {keys['verifier']}"}
    )
    body = _check_response(entry, response, 200)
    if not entry.error:
        assert response.status_code == 200, f"{entry.name}: {response.status_code} {body}"
        assert not entry.labels or body["label"] in entry.labels, (entry.name, body["label"])


@pytest.mark.parametrize("entry", ENTRIES, ids=IDS)
def test_api_photo_upload(api, corpus, entry):
    client, keys, subject_id = api
    response = client.post(
        f"/v1/subjects/{subject_id}/photos",
        files=_upload(entry, corpus),
        headers={"Authorization": f"Bearer {keys['studio']}"},
    )
    body = _check_response(entry, response, 201)
    if response.status_code == 201:
        assert isinstance(body["accepted"], bool) and body["reason"], body


# --- (4) disclose_image and verify_image in-process ---------------------------------------------------------


@pytest.fixture(scope="module")
def signing(store):
    return store.signing_identity(), store.trust_anchors(), InMemoryRegistry()


@pytest.mark.parametrize("entry", ENTRIES, ids=IDS)
def test_disclose_image(signing, corpus, entry):
    identity, trust, registry = signing
    data = (corpus / entry.name).read_bytes()
    try:
        disclosure = disclose_image(data, identity, registry, limits=ImageLimits())
    except ImageInputError as exc:
        assert str(exc), entry.name
        assert entry.disclosable is not True, f"{entry.name}: should be disclosable, refused with {exc}"
        if entry.error:
            _check_error_message(entry, str(exc))
            assert exc.kind == entry.kind, (entry.name, exc.kind)
        return
    assert isinstance(disclosure, Disclosure)
    assert entry.disclosable is not False, f"{entry.name}: should have been refused"
    assert verify_image(disclosure.data, trust).label == "ai_verified", entry.name


def test_bomb_is_refused_before_decoding(corpus):
    """The 900 MP bomb is refused from its header: no pixel buffer is ever allocated for it."""
    import tracemalloc

    data = (corpus / "bomb-30000x30000.png").read_bytes()
    assert len(data) < 200_000
    tracemalloc.start()
    try:
        with pytest.raises(ImageInputError, match=PIXEL_LIMIT) as caught:
            verify_image(data, trust=None)  # refused before the trust anchors are needed
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert caught.value.kind == "too_large" and "900,000,000 pixels" in str(caught.value)
    assert peak < 20_000_000, f"peak {peak:,} bytes while refusing the bomb"
