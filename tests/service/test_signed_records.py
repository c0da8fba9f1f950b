"""Signed records (service/signed_records.py): the audit key and its JWKS, the training record of a real (tiny)
trained model, the subject export, and `headshot audit verify-export` rejecting changed documents."""

import json
import stat
import time

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select
from standardwebhooks import Webhook as Verifier
from typer.testing import CliRunner

from service.app import create_app
from service.cli import app
from service.database import engine_for
from service.deps import create_key
from service.services import Services
from service.settings import Settings
from service.signed_records import AuditKeyStore, RecordError, verify_record
from service.tables import AuditEvent
from tests.conftest import FACES
from tests.service.webhook_receiver import Receiver

CONSENT = {"given_by": "Ada Example", "scope": ["training", "generation"], "text_version": "consent-v3"}
TRAIN = {"steps": 2, "rank": 4, "alpha": 4, "resolution": 64, "checkpoint_every": 1}


@pytest.fixture
def settings(tmp_path, database_url, tiny_model):
    return Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        sdxl_model=tiny_model,
        rate_limit_per_minute=100_000,
        webhook_allowed_hosts=["127.0.0.1"],
        lease_seconds=5,
    )


@pytest.fixture
def keys(settings):
    with Session(engine_for(settings.resolved_database_url)) as session:
        return {
            "studio": create_key(session, "studio-a", "studio", "tenant-a"),
            "other": create_key(session, "studio-b", "studio", "tenant-b"),
            "verifier": create_key(session, "recruiter", "verifier"),
            "auditor": create_key(session, "auditor-a", "auditor", "tenant-a"),
        }


@pytest.fixture
def run(settings, monkeypatch):
    """The CLI with the service's settings: it reads the same credentials directory."""
    monkeypatch.setenv("HEADSHOT_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("HEADSHOT_DATABASE_URL", settings.resolved_database_url)
    runner = CliRunner()
    return lambda *args: runner.invoke(app, [str(arg) for arg in args])


def auth(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def _write(path, document) -> str:
    path.write_text(json.dumps(document, indent=2))
    return str(path)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_audit_key_is_kept_like_the_signing_key_and_rotates(settings, run, tmp_path):
    store = Services(settings).audit_keys
    assert store.directory == settings.resolved_credentials_dir / "audit"
    signed_before = store.sign({"subject": None, "note": "before rotation"}, "subject-export")
    assert stat.S_IMODE(store.key_path.stat().st_mode) == 0o600
    first = store.jwks()
    [key] = first["keys"]
    assert key["kty"] == "OKP" and key["crv"] == "Ed25519" and key["alg"] == "Ed25519" and "d" not in key

    with TestClient(create_app(settings)) as client:
        assert client.get("/.well-known/jwks.json").json() == first  # public: no key needed
        shown = run("audit", "key")
        assert shown.exit_code == 0 and json.loads(shown.stdout) == first
        rotated = run("audit", "key", "--rotate")
        assert rotated.exit_code == 0
        after = json.loads(rotated.stdout)
        assert [k["kid"] for k in after["keys"]] == [after["keys"][0]["kid"], key["kid"]]  # new first, old kept
        assert after["keys"][0]["kid"] != key["kid"]
        assert client.get("/.well-known/jwks.json").json() == after
    assert verify_record(signed_before, after).kid == key["kid"]  # signed before, still verifiable
    assert store.sign({"x": 1}, "subject-export")["jws"].count(".") == 2
    assert verify_record(store.sign({"x": 1}, "subject-export"), after).kid == after["keys"][0]["kid"]
    assert not any("d" in k for k in after["keys"]) and stat.S_IMODE(store.key_path.stat().st_mode) == 0o600

    elsewhere = AuditKeyStore(tmp_path / "another-installation")
    foreign = elsewhere.sign({"x": 1}, "subject-export")
    with pytest.raises(RecordError, match="not among the keys given"):
        verify_record(foreign, after)
    result = run("audit", "verify-export", _write(tmp_path / "foreign.json", foreign))
    assert result.exit_code == 1 and "not among the keys given" in result.output
    assert run("audit", "verify-export", _write(tmp_path / "plain.json", {"x": 1})).exit_code == 1
    (tmp_path / "junk.json").write_text("{not json")
    result = run("audit", "verify-export", tmp_path / "junk.json")
    assert result.exit_code == 1 and "is not JSON" in result.output


def test_training_record_and_export_verify_offline(settings, keys, run, tmp_path):
    studio, auditor = auth(keys["studio"]), auth(keys["auditor"])
    with Receiver().serve() as receiver, TestClient(create_app(settings)) as client:
        hook = client.post(
            "/v1/webhooks", json={"url": f"{receiver.url}/hook", "events": ["job.succeeded"]}, headers=studio
        ).json()
        subject = client.post("/v1/subjects", json={"display_name": "Ada", "consent": CONSENT}, headers=studio).json()
        uploads = []
        for name in ("img1.jpg", "img2.jpg"):
            photo = {"file": (name, (FACES / name).read_bytes(), "image/jpeg")}
            uploads.append(client.post(f"/v1/subjects/{subject['id']}/photos", files=photo, headers=studio).json())
        job = client.post(
            f"/v1/subjects/{subject['id']}/jobs", json={"kind": "train", "parameters": TRAIN}, headers=studio
        ).json()
        early = client.get(f"/v1/jobs/{job['id']}/training-record", headers=auditor)
        assert early.status_code in (200, 409)  # 409 until the LoRA exists
        deadline = time.monotonic() + 240
        while (state := client.get(f"/v1/jobs/{job['id']}", headers=studio).json())["status"] in ("queued", "running"):
            assert time.monotonic() < deadline, state
            time.sleep(0.3)
        assert state["status"] == "succeeded", state["error"]

        # the job's end is pushed, signed, to the studio's receiver
        [request] = receiver.wait_for(1)
        pushed = Verifier(hook["secret"]).verify(request.body, request.headers)
        assert pushed["type"] == "job.succeeded" and pushed["data"]["lora_sha256"] == state["lora_sha256"]

        assert client.get(f"/v1/jobs/{job['id']}/training-record").status_code == 401
        assert client.get(f"/v1/jobs/{job['id']}/training-record", headers=auth(keys["verifier"])).status_code == 403
        assert client.get(f"/v1/jobs/{job['id']}/training-record", headers=auth(keys["other"])).status_code == 404
        record = client.get(f"/v1/jobs/{job['id']}/training-record", headers=auditor).json()
        export = client.get(f"/v1/audit/subjects/{subject['id']}/export", headers=auditor).json()
        jwks = client.get("/.well-known/jwks.json").json()

    assert record["lora_sha256"] == state["lora_sha256"] and record["base_model_sha256"] == state["model_sha256"]
    assert record["trained_at"] and record["training"]["steps"] == 2
    photos = sorted(record["reference_photos"], key=lambda photo: photo["sha256"])
    assert [photo["sha256"] for photo in photos] == sorted(upload["sha256"] for upload in uploads)
    for photo in photos:
        assert photo["used_for_training"] and photo["consent_id"] == subject["id"]
        assert photo["consent_scope"] == ["generation", "training"] and photo["consent_text_version"] == "consent-v3"
    assert record["consent"]["given_by"] == "Ada Example" and record["licence_notes"] == []

    jwks_file = _write(tmp_path / "jwks.json", jwks)
    for name, document, kind in (("record", record, "training-record"), ("export", export, "subject-export")):
        result = run("audit", "verify-export", _write(tmp_path / f"{name}.json", document), "--jwks", jwks_file)
        assert result.exit_code == 0 and f"valid {kind}" in result.output, result.output
    assert run("audit", "verify-export", tmp_path / "record.json").exit_code == 0  # this installation's own keys

    edited = json.loads(json.dumps(record))
    edited["reference_photos"][0]["consent_text_version"] = "consent-v4"
    result = run("audit", "verify-export", _write(tmp_path / "edited.json", edited), "--jwks", jwks_file)
    assert result.exit_code == 1 and "reference_photos[0].consent_text_version` was changed" in result.output
    result = run("audit", "verify-export", _write(tmp_path / "added.json", {**record, "extra": 1}), "--jwks", jwks_file)
    assert result.exit_code == 1 and "`extra` was added" in result.output
    shorter = {**export, "audit_log": export["audit_log"][1:]}
    result = run("audit", "verify-export", _write(tmp_path / "shorter.json", shorter), "--jwks", jwks_file)
    assert result.exit_code == 1 and "audit_log` has" in result.output
    forged = {**record, "jws": record["jws"][:-4] + ("AAAA" if not record["jws"].endswith("AAAA") else "BBBB")}
    result = run("audit", "verify-export", _write(tmp_path / "forged.json", forged), "--jwks", jwks_file)
    assert result.exit_code == 1 and "NOT valid" in result.output

    # the export's events are the chain's own: their hashes are the ones `headshot audit verify` checks
    with Session(engine_for(settings.resolved_database_url)) as session:
        chained = dict(session.exec(select(AuditEvent.seq, AuditEvent.hash)).all())
    assert export["audit_log"] and all(chained[event["seq"]] == event["hash"] for event in export["audit_log"])
    assert {"create", "upload"} <= {event["action"] for event in export["audit_log"]}
    assert run("audit", "verify").exit_code == 0
