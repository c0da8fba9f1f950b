"""What an attack on the running service found (issue 12), each finding reproduced against the real app.

The HTTP tests go through the real app: FastAPI's TestClient, or a real uvicorn server on 127.0.0.1 where
what matters is what happens on the wire (a request answered before its body was sent); the CLI tests run
`headshot` itself. Findings that touch the database run on SQLite and on PostgreSQL.
"""

import base64
import contextlib
import datetime as dt
import hashlib
import json
import os
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlmodel import Session, select
from typer.testing import CliRunner

from service.app import create_app
from service.cli import app as cli
from service.database import engine_for
from service.deps import create_key
from service.jobs import claim
from service.request_guard import MAX_JSON_BODY, UPLOAD_ROUTES
from service.routes.verify import PAGE_POLICY
from service.services import Services
from service.settings import Settings
from service.stages import run_claimed_stage
from service.tables import ApiKey, AuditEvent, Headshot, Subject
from tests.conftest import FACES, encode, face_image
from tests.provenance.manifest_server import recording_server, remote_manifest_jpeg

CONSENT = {"given_by": "Ada Example", "scope": ["training", "generation"], "text_version": "consent-v3"}
TRAIN = {"steps": 6, "rank": 4, "alpha": 4, "resolution": 64, "size": 64, "checkpoint_every": 1}


def auth(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def make_settings(data_dir: Path, database_url: str | None = None, **overrides) -> Settings:
    options = {"max_upload_bytes": 3_000_000, "rate_limit_per_minute": 100_000, **overrides}
    return Settings(data_dir=data_dir, database_url=database_url, **options)


@pytest.fixture
def settings(tmp_path, database_url, tiny_model):
    """SQLite and PostgreSQL."""
    return make_settings(tmp_path / "data", database_url, sdxl_model=tiny_model)


@pytest.fixture
def sqlite_settings(tmp_path, tiny_model):
    return make_settings(tmp_path / "data", sdxl_model=tiny_model)


def keys_for(settings: Settings) -> dict[str, str]:
    with Session(engine_for(settings.resolved_database_url)) as session:
        return {
            "studio": create_key(session, "studio-a", "studio", "tenant-a"),
            "verifier": create_key(session, "recruiter", "verifier"),
            "auditor": create_key(session, "auditor-a", "auditor", "tenant-a"),
        }


@contextlib.contextmanager
def serving(app):
    """The app on a real uvicorn server on 127.0.0.1, in a thread; yields its port."""
    import uvicorn

    listener = socket.create_server(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", proxy_headers=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield listener.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(10)
        listener.close()


def answer_before_body(port: int, head: str, body: bytes = b"", wait: float = 10) -> int:
    """Send `head` (and `body`, which may be a part of what the head announces) and return the status of the
    answer; fails the test if the server waits for the rest of the body instead of answering."""
    with socket.create_connection(("127.0.0.1", port)) as connection:
        connection.sendall(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
        connection.settimeout(wait)
        try:
            answer = connection.recv(65536)
        except TimeoutError:
            pytest.fail(f"no answer within {wait} s: the server waits for the body before refusing it")
    return int(answer.split(b" ", 2)[1])


# --- 1. SSRF through remote manifests ---------------------------------------------------------------


@pytest.fixture
def manifest_server():
    with recording_server() as server:
        yield server


@pytest.fixture
def refers_elsewhere(manifest_server, store):
    """A JPEG whose XMP `dcterms:provenance` names a manifest on the local server (an internal host)."""
    data, manifest = remote_manifest_jpeg(store, encode(face_image(size=256), "JPEG"), manifest_server.url("/m.c2pa"))
    assert b"dcterms:provenance" in data
    manifest_server.routes["/m.c2pa"] = (200, {}, manifest)
    return data


def test_verify_never_fetches_remote_manifests(sqlite_settings, manifest_server, refers_elsewhere, tmp_path):
    expected = f"refers to Content Credentials stored at 127.0.0.1:{manifest_server.port}; not fetched"
    keys = keys_for(sqlite_settings)
    upload = {"file": ("p.jpg", refers_elsewhere, "image/jpeg")}
    with TestClient(create_app(sqlite_settings)) as client:
        page = client.post("/verify", files=upload)  # the public page, no key
        assert page.status_code == 200 and expected in page.text
        lookup = client.post("/v1/audit/lookup", files=upload, headers=auth(keys["auditor"]))
        assert lookup.status_code == 200 and lookup.json()["verdict_label"] == "no_provenance"
        verdict = client.post("/v1/verify", files=upload, headers=auth(keys["verifier"])).json()
    assert verdict["label"] == "no_provenance" and verdict["c2pa"]["state"] == "none"
    assert verdict["c2pa"]["remote_manifest_url"] == manifest_server.url("/m.c2pa")
    assert expected in [item["detail"] for item in verdict["evidence"]]

    photo = tmp_path / "p.jpg"
    photo.write_bytes(refers_elsewhere)
    result = CliRunner().invoke(cli, ["verify", "--json", str(photo)], env={"HEADSHOT_DATA_DIR": str(tmp_path / "c")})
    assert result.exit_code == 0, result.output
    assert expected in [item["detail"] for item in json.loads(result.output)[0]["evidence"]]
    assert manifest_server.requests == []


def test_allowed_hosts_never_reach_private_addresses(tmp_path, manifest_server, store):
    data, manifest = remote_manifest_jpeg(
        store, encode(face_image(size=256), "JPEG"), manifest_server.url("/m.c2pa", host="localhost")
    )
    manifest_server.routes["/m.c2pa"] = (200, {}, manifest)
    settings = make_settings(tmp_path / "data", remote_manifest_hosts="localhost")
    with TestClient(create_app(settings)) as client:
        page = client.post("/verify", files={"file": ("p.jpg", data, "image/jpeg")})
    assert "not fetched: localhost resolves to a non-public address" in page.text
    assert manifest_server.requests == []


# --- 2. bodies before authentication ----------------------------------------------------------------


def test_bodies_are_refused_before_they_are_read(sqlite_settings):
    settings = sqlite_settings
    settings.public_rate_limit_per_minute = 2
    keys = keys_for(settings)
    with serving(create_app(settings)) as port:
        huge_json = "POST /v1/subjects HTTP/1.1\nHost: x\nContent-Type: application/json\nContent-Length: 300000000\n"
        assert answer_before_body(port, huge_json) == 401
        multipart = "POST /v1/verify HTTP/1.1\nHost: x\nContent-Type: multipart/form-data; boundary=b\n"
        assert answer_before_body(port, multipart + "Content-Length: 60000000\n") == 401
        studio = f"Authorization: Bearer {keys['studio']}\n"
        assert answer_before_body(port, huge_json + studio) == 413
        chunked = f"POST /v1/subjects HTTP/1.1\nHost: x\nContent-Type: application/json\n{studio}"
        chunked += "Transfer-Encoding: chunked\n"
        chunks = b"".join(b"2000\r\n" + b" " * 0x2000 + b"\r\n" for _ in range(8))  # 64 KB, never ended
        assert answer_before_body(port, chunked, chunks) == 413

        page = "POST /verify HTTP/1.1\nHost: x\nContent-Type: multipart/form-data; boundary=b\n"
        assert answer_before_body(port, page + "Content-Length: 60000000\n") == 413  # the address's first check
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:  # and its second, of two a minute
            assert client.post("/verify", files={"file": ("a.jpg", b"not an image")}).status_code == 415
        assert answer_before_body(port, page + "Content-Length: 60000000\n") == 429


def test_text_fields_and_json_bodies_are_bounded(sqlite_settings):
    keys = keys_for(sqlite_settings)
    studio = auth(keys["studio"])
    too_long = [
        {"display_name": "x" * 201, "consent": CONSENT},
        {"display_name": "x", "consent": {**CONSENT, "given_by": "x" * 201}},
        {"display_name": "x", "consent": {**CONSENT, "text_version": "x" * 101}},
        {"display_name": "x", "consent": {**CONSENT, "scope": ["training"] * 9}},
        {"display_name": "x", "consent": {**CONSENT, "scope": ["t" * 33]}},
    ]
    with TestClient(create_app(sqlite_settings)) as client:
        for body in too_long:
            response = client.post("/v1/subjects", json=body, headers=studio)
            assert response.status_code == 422, body
        padded = json.dumps({"display_name": "x", "consent": CONSENT, "padding": " " * MAX_JSON_BODY})
        response = client.post("/v1/subjects", content=padded, headers={**studio, "content-type": "application/json"})
        assert response.status_code == 413 and "over the limit" in response.json()["detail"]


def test_every_upload_route_has_its_body_limit(sqlite_settings):
    """Routes taking files get the image limit (times the batch size); the guard knows each of them."""
    app = create_app(sqlite_settings)
    multipart = {
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        for method, operation in operations.items()
        if "multipart/form-data" in operation.get("requestBody", {}).get("content", {})
    }
    assert multipart | {("POST", "/verify")} == set(UPLOAD_ROUTES)


# --- 3. rate-limit bypass through X-Forwarded-For; failed authentication -------------------------------


@contextlib.contextmanager
def headshot_serve(data_dir: Path, **environment):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {key: value for key, value in os.environ.items() if not key.startswith("HEADSHOT_")}
    env.update(HEADSHOT_DATA_DIR=str(data_dir), **environment)
    command = [sys.executable, "-c", "from service.cli import app; app()", "serve", "--port", str(port)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, process.stderr.read().decode()
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            assert time.monotonic() < deadline, "headshot serve did not start"
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)


def _checks(url: str, forwarded_for: list[str]) -> list[int]:
    upload = {"file": ("a.jpg", b"not an image", "image/jpeg")}
    return [
        httpx.post(f"{url}/verify", files=upload, headers={"X-Forwarded-For": address}).status_code
        for address in forwarded_for
    ]


def test_forwarded_addresses_are_believed_from_trusted_proxies_only(tmp_path):
    fresh = ["203.0.113.1", "203.0.113.2", "203.0.113.3"]
    with headshot_serve(tmp_path / "a", HEADSHOT_PUBLIC_RATE_LIMIT_PER_MINUTE="2") as url:
        assert _checks(url, fresh) == [415, 415, 429]  # one budget: the connection's address
    with headshot_serve(
        tmp_path / "b", HEADSHOT_PUBLIC_RATE_LIMIT_PER_MINUTE="2", HEADSHOT_TRUSTED_PROXIES="127.0.0.1"
    ) as url:
        assert _checks(url, fresh) == [415, 415, 415]  # behind a trusted proxy: the client's address
        assert _checks(url, ["198.51.100.7"] * 3) == [415, 415, 429]


def test_failed_authentication_is_limited_per_address(sqlite_settings):
    sqlite_settings.auth_failures_per_minute = 3
    keys = keys_for(sqlite_settings)
    with TestClient(create_app(sqlite_settings)) as client:
        assert client.get("/v1/jobs/x", headers=auth(keys["studio"])).status_code == 404  # valid keys cost nothing
        answers = [client.get("/v1/jobs/x", headers=auth(f"hs_guess-{i}")).status_code for i in range(3)]
        assert answers == [401, 401, 401]
        blocked = client.get("/v1/jobs/x")
        assert blocked.status_code == 429 and int(blocked.headers["Retry-After"]) >= 1
        assert "had no valid API key" in blocked.json()["detail"]
        assert client.get("/v1/jobs/x", headers=auth(keys["studio"])).status_code == 429  # not even looked up


# --- 4. what a job may cost --------------------------------------------------------------------------


def test_job_parameters_are_checked_when_posted(sqlite_settings):
    keys = keys_for(sqlite_settings)
    studio = auth(keys["studio"])
    with TestClient(create_app(sqlite_settings)) as client:
        subject = client.post("/v1/subjects", json={"display_name": "Ada", "consent": CONSENT}, headers=studio).json()
        path = f"/v1/subjects/{subject['id']}/jobs"

        def post(**parameters):
            return client.post(path, json={"kind": "pack", "parameters": parameters}, headers=studio)

        many = post(steps=100_000, checkpoint_every=1)
        assert many.status_code == 422 and "checkpoint_every must be at least 1000" in many.json()["detail"]
        unknown = post(styles=["corporate-grey", "no-such-style"])
        assert unknown.status_code == 422 and "unknown style no-such-style" in unknown.json()["detail"]
        for seed in (-1, 2**63):
            assert post(seed=seed).status_code == 422
        assert post(styles=["corporate-grey"] * 51).status_code == 422
        # within the bounds, the job goes on to the next check (this subject has no photo yet)
        assert post(seed=2**63 - 1, steps=100_000, checkpoint_every=1000).status_code == 409


class Dispatched(list):
    """Where the app hands stages in these tests: a list, so that the test runs each stage itself."""

    def dispatch(self, job_id: str, stage: str) -> None:
        self.append((job_id, stage))


def _claimed_job(settings: Settings, kind: str, parameters: dict):
    """An app whose stages the test runs, a studio key, a subject with an accepted photo, and a posted job."""
    app = create_app(settings)
    app.state.jobs = Dispatched()
    keys = keys_for(settings)
    client = TestClient(app)
    studio = auth(keys["studio"])
    subject = client.post("/v1/subjects", json={"display_name": "Ada", "consent": CONSENT}, headers=studio).json()
    photo = {"file": ("a.jpg", (FACES / "img1.jpg").read_bytes(), "image/jpeg")}
    assert client.post(f"/v1/subjects/{subject['id']}/photos", files=photo, headers=studio).json()["accepted"]
    job = client.post(
        f"/v1/subjects/{subject['id']}/jobs", json={"kind": kind, "parameters": parameters}, headers=studio
    )
    assert job.status_code == 202, job.text
    return app, client, studio, job.json()["id"]


def test_a_cancel_takes_effect_before_the_first_training_step(sqlite_settings):
    app, client, studio, job_id = _claimed_job(sqlite_settings, "pack", TRAIN)
    lease = claim(engine_for(sqlite_settings.resolved_database_url), job_id, "train", "test-worker", 30)
    cancelled = client.post(f"/v1/jobs/{job_id}/cancel", headers=studio)  # the stage is running: a request
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "running"
    run_claimed_stage(Services(sqlite_settings), lease, "train", app.state.jobs.dispatch)
    job = client.get(f"/v1/jobs/{job_id}", headers=studio).json()
    assert job["status"] == "cancelled" and job["step"] == 0
    assert Services(sqlite_settings).storage.keys(f"jobs/{job_id}/") == []  # no checkpoint, no LoRA
    assert app.state.jobs == [(job_id, "train")]  # posted; nothing handed on after it


def test_only_the_latest_checkpoints_are_kept(sqlite_settings):
    app, client, studio, job_id = _claimed_job(sqlite_settings, "train", TRAIN)
    lease = claim(engine_for(sqlite_settings.resolved_database_url), job_id, "train", "test-worker", 30)
    run_claimed_stage(Services(sqlite_settings), lease, "train", app.state.jobs.dispatch)
    assert client.get(f"/v1/jobs/{job_id}", headers=studio).json()["status"] == "succeeded"
    checkpoints = Services(sqlite_settings).storage.keys(f"jobs/{job_id}/checkpoints/")
    assert [key.split("/")[-2] for key in checkpoints] == ["step-000005", "step-000006"]


def test_seeds_up_to_2_63_are_stored(settings):
    """A headshot's seed (the job's seed plus its style and image index) fits the database on both engines."""
    with Session(engine_for(settings.resolved_database_url)) as session:
        subject = Subject(
            tenant="t",
            display_name="Ada",
            consent_given_by="Ada",
            consent_scope="[]",
            consent_text_version="v1",
            consent_given_at=dt.datetime.now(dt.UTC),
        )
        session.add(subject)
        session.commit()
        headshot = Headshot(
            tenant="t",
            subject_id=subject.id,
            job_id="j",
            storage_key="k",
            manifest_label="m",
            watermark_payload="00",
            style="s",
            seed=2**63 - 1,
            report="{}",
            kept=True,
        )
        session.add(headshot)
        session.commit()
        assert session.get(Headshot, headshot.id).seed == 2**63 - 1


# --- 5. errors are JSON; personal data stays out of error logs ------------------------------------------


def test_a_timestamp_without_timezone_is_a_422(settings):
    keys = keys_for(settings)
    body = {"display_name": "Ada", "consent": {**CONSENT, "given_at": "2026-11-30T09:00:00"}}
    with TestClient(create_app(settings)) as client:
        response = client.post("/v1/subjects", json=body, headers=auth(keys["studio"]))
        assert response.status_code == 422 and "timezone" in response.json()["detail"]
        body["consent"]["given_at"] = "2026-11-30T09:00:00+01:00"
        assert client.post("/v1/subjects", json=body, headers=auth(keys["studio"])).status_code == 201


REFUSE_INSERTS = {
    "sqlite": ["CREATE TRIGGER refuse BEFORE INSERT ON subjects BEGIN SELECT RAISE(ABORT, 'no new subjects'); END"],
    "postgresql": [
        "CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'no new subjects'; END $$ "
        "LANGUAGE plpgsql",
        "CREATE TRIGGER refuse BEFORE INSERT ON subjects FOR EACH ROW EXECUTE FUNCTION refuse()",
    ],
}


def test_an_internal_error_is_json_and_logs_no_personal_data(settings):
    """A write the database refuses (here: a trigger) is a bug on our side: a JSON 500, and what the server
    logs (the exception and its traceback) does not repeat the consent record that was sent."""
    keys = keys_for(settings)
    engine = engine_for(settings.resolved_database_url)
    with engine.begin() as connection:
        for statement in REFUSE_INSERTS[engine.dialect.name]:
            connection.execute(text(statement))
    secret = "Ada Secret-Person"
    body = {"display_name": secret, "consent": {**CONSENT, "given_by": secret, "text_version": "v-" + secret}}
    app = create_app(settings)
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.post("/v1/subjects", json=body, headers=auth(keys["studio"]))
    assert response.status_code == 500 and response.headers["content-type"] == "application/json"
    assert set(response.json()) == {"detail"} and secret not in response.text
    with TestClient(app) as client, pytest.raises(Exception) as raised:
        client.post("/v1/subjects", json=body, headers=auth(keys["studio"]))
    logged = "".join(traceback.format_exception(raised.value))
    assert "no new subjects" in logged and secret not in logged


# --- 6. control characters ----------------------------------------------------------------------------


@pytest.mark.parametrize("character", ["\x00", "\x07", "\n", "\u202e", "\u2066", "\u2028"])
def test_control_and_bidi_characters_are_refused(settings, character):
    keys = keys_for(settings)
    studio = auth(keys["studio"])
    bodies = [
        {"display_name": f"Ada{character}", "consent": CONSENT},
        {"display_name": "Ada", "consent": {**CONSENT, "given_by": f"Ada{character}Lovelace"}},
        {"display_name": "Ada", "consent": {**CONSENT, "text_version": f"v3{character}"}},
        {"display_name": "Ada", "consent": {**CONSENT, "scope": [f"training{character}"]}},
    ]
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        for body in bodies:
            response = client.post("/v1/subjects", json=body, headers=studio)
            assert response.status_code == 422 and "control or bidirectional character" in response.json()["detail"]
        subject = client.post("/v1/subjects", json={"display_name": "Ada", "consent": CONSENT}, headers=studio)
        job = {"kind": "pack", "parameters": {"styles": [f"corporate-grey{character}"]}}
        assert client.post(f"/v1/subjects/{subject.json()['id']}/jobs", json=job, headers=studio).status_code == 422
        for path in (f"/v1/subjects/a{quote(character)}b", f"/v1/jobs/{quote(character)}"):
            assert client.get(path, headers=studio).status_code == 422
    with Session(engine_for(settings.resolved_database_url)) as session:
        assert len(session.exec(select(Subject)).all()) == 1
        with pytest.raises(ValueError, match="without control characters"):
            create_key(session, f"team{character}", "studio")


# --- 7. HTML security headers, local API docs, relative redirects ---------------------------------------


def test_pages_carry_security_headers_and_redirect_relatively(sqlite_settings):
    with TestClient(create_app(sqlite_settings)) as client:
        page = client.get("/verify")
        policy = page.headers["content-security-policy"]
        assert policy == PAGE_POLICY and "frame-ancestors 'none'" in policy and "script-src" not in policy
        assert "default-src 'none'" in policy and "<script" not in page.text
        style = page.text.split("<style>")[1].split("</style>")[0]  # the one style block, allowed by its hash
        assert f"style-src 'sha256-{base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()}'" in policy
        docs = client.get("/docs")
        directives = dict(item.strip().split(" ", 1) for item in docs.headers["content-security-policy"].split(";"))
        assert directives["script-src"] == "'self'" and directives["frame-ancestors"] == "'none'"
        for response in (page, docs, client.get("/healthz"), client.get("/v1/jobs/x")):
            assert response.headers["x-content-type-options"] == "nosniff"
            assert response.headers["referrer-policy"] == "no-referrer"
            assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
        # every script and stylesheet /docs uses comes from this server, with no inline script
        assert "http" not in docs.text and "<script>" not in docs.text
        bundle = client.get("/docs/swagger-ui-bundle.js")
        assert bundle.status_code == 200 and "SwaggerUIBundle" in bundle.text
        assert client.get("/docs/swagger-ui.css").status_code == 200
        assert "/openapi.json" in client.get("/docs/start.js").text

        for path, target in (("/verify/", "/verify"), ("/docs/", "/docs")):
            redirect = client.get(path, headers={"Host": "evil.example"}, follow_redirects=False)
            assert redirect.status_code == 307 and redirect.headers["location"] == target
        assert client.get("/v1/jobs/", headers={"Host": "evil.example"}, follow_redirects=False).status_code in (
            401,
            404,
        )


# --- 8. file modes ------------------------------------------------------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_services_files_are_private(tmp_path, monkeypatch):
    data = tmp_path / "fresh" / "data"
    monkeypatch.setenv("HEADSHOT_DATA_DIR", str(data))
    monkeypatch.delenv("HEADSHOT_DATABASE_URL", raising=False)
    runner = CliRunner()
    created = runner.invoke(cli, ["keys", "create", "--role", "studio", "--name", "a", "--tenant", "t"])
    assert created.exit_code == 0, created.output
    assert runner.invoke(cli, ["credentials", "init"]).exit_code == 0
    assert _mode(data) == 0o700 and _mode(data.parent) == 0o700
    assert _mode(data / "headshot.db") == 0o600
    assert _mode(data / "credentials") == 0o700
    key = created.stdout.strip().splitlines()[-1]
    with TestClient(create_app(make_settings(data))) as client:
        studio = auth(key)
        subject = client.post("/v1/subjects", json={"display_name": "Ada", "consent": CONSENT}, headers=studio).json()
        photo = {"file": ("a.jpg", (FACES / "img1.jpg").read_bytes(), "image/jpeg")}
        assert client.post(f"/v1/subjects/{subject['id']}/photos", files=photo, headers=studio).status_code == 201
    stored = list((data / "subjects").rglob("*"))
    assert stored and all(_mode(path) == (0o700 if path.is_dir() else 0o600) for path in stored)
    assert _mode(data / "subjects") == 0o700


# --- 9. key names and key ids -------------------------------------------------------------------------


def test_keys_are_told_apart_by_name_and_id(tmp_path, monkeypatch, database_url):
    monkeypatch.setenv("HEADSHOT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("HEADSHOT_DATABASE_URL", database_url)
    runner = CliRunner()

    def run(*args):
        return runner.invoke(cli, list(args))

    first = run("keys", "create", "--role", "studio", "--name", "team", "--tenant", "a")
    assert first.exit_code == 0, first.output
    again = run("keys", "create", "--role", "studio", "--name", "team", "--tenant", "a")
    assert again.exit_code == 1 and "already has an active key named 'team'" in again.output
    second = run("keys", "create", "--role", "studio", "--name", "team", "--tenant", "b")
    assert second.exit_code == 0
    keys = [result.stdout.strip().splitlines()[-1] for result in (first, second)]

    ambiguous = run("keys", "revoke", "team")
    assert ambiguous.exit_code == 1 and "2 active keys match 'team'" in ambiguous.output
    settings = make_settings(tmp_path / "data", database_url)
    with Session(engine_for(database_url)) as session:
        rows = {row.tenant: row for row in session.exec(select(ApiKey)).all()}
    assert all(row.revoked_at is None for row in rows.values())
    assert rows["a"].id in run("keys", "list").output

    with TestClient(create_app(settings)) as client:
        made = client.post("/v1/subjects", json={"display_name": "Ada", "consent": CONSENT}, headers=auth(keys[0]))
        assert made.status_code == 201
        revoked = run("keys", "revoke", rows["a"].id)
        assert revoked.exit_code == 0 and f"revoked key {rows['a'].id}" in revoked.output
        assert client.get("/v1/jobs/x", headers=auth(keys[0])).status_code == 401
        assert client.get("/v1/jobs/x", headers=auth(keys[1])).status_code == 404  # the other "team" still works
    with Session(engine_for(database_url)) as session:
        event = session.exec(select(AuditEvent).where(AuditEvent.action == "create")).one()
    assert event.key_id == rows["a"].id and event.key_name == "team"
    reused = run("keys", "create", "--role", "studio", "--name", "team", "--tenant", "a")  # the name is free again
    assert reused.exit_code == 0


def test_migration_0004_renames_namesakes_and_keeps_them_working(settings):
    """Active keys that shared a name before 0004 keep working under names that tell them apart."""
    import sqlalchemy as sa
    from alembic import command

    from service.database import _config, current_revision, new_engine

    engine = new_engine(settings.resolved_database_url)
    at_head = current_revision(engine) is not None  # PostgreSQL is migrated by the fixture; SQLite is still empty
    with engine.begin() as connection:
        config = _config()
        config.attributes["connection"] = connection
        (command.downgrade if at_head else command.upgrade)(config, "0002")
        insert = sa.text(
            "INSERT INTO api_keys (id, name, role, tenant, key_hash, prefix, created_at, revoked_at) "
            "VALUES (:id, 'team', 'studio', 't', :id, :prefix, :created, :revoked)"
        )
        for number, revoked in ((1, None), (2, None), (3, "2026-11-30 12:00:00")):
            moment = f"2026-11-0{number} 12:00:00"
            connection.execute(
                insert, {"id": f"k{number}", "prefix": f"hs_{number}", "created": moment, "revoked": revoked}
            )
        command.upgrade(config, "head")
    with engine.connect() as connection:
        names = dict(connection.execute(sa.text("SELECT id, name FROM api_keys")).all())
        assert names == {"k1": "team", "k2": "team (hs_2)", "k3": "team"}
    assert "key_id" in {column["name"] for column in sa.inspect(engine).get_columns("audit_events")}
    engine.dispose()


# --- 10. uploads stay in memory ------------------------------------------------------------------------


def test_uploads_never_touch_the_disk(sqlite_settings, tmp_path, monkeypatch):
    """With no usable temporary directory at all, a photo over Starlette's 1 MB spool still verifies."""
    big = encode(face_image(size=2600), "JPEG", quality=97)
    assert 1_100_000 < len(big) < sqlite_settings.max_upload_bytes
    keys = keys_for(sqlite_settings)
    with TestClient(create_app(sqlite_settings)) as client:
        monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "no-such-folder"))
        upload = {"file": ("big.jpg", big, "image/jpeg")}
        page = client.post("/verify", files=upload)
        assert page.status_code == 200 and "does not mean the photo is real" in page.text
        api = client.post("/v1/verify", files=upload, headers=auth(keys["verifier"]))
        assert api.status_code == 200 and api.json()["label"] == "no_provenance"
        batch = [("files", ("a.jpg", big, "image/jpeg")), ("files", ("b.jpg", big, "image/jpeg"))]
        results = client.post("/v1/verify/batch", files=batch, headers=auth(keys["verifier"])).json()
        assert [result["label"] for result in results] == ["no_provenance", "no_provenance"]
    assert not (tmp_path / "no-such-folder").exists()
