"""The HTTP API over a real app (httpx TestClient), SQLite, the in-process job worker and the tiny model."""

import datetime as dt
import io
import time

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlmodel import Session, select

from service.app import create_app
from service.database import engine_for
from service.deps import create_key
from service.services import Services
from service.settings import Settings
from service.signed_records import verify_record
from service.tables import ApiKey, Job
from tests.conftest import CONFORMANCE, FACES, encode

CONSENT = {"given_by": "Ada Example", "scope": ["training", "generation"], "text_version": "consent-v3"}
PACK = {
    "steps": 4,
    "rank": 4,
    "alpha": 4,
    "resolution": 64,
    "size": 256,
    "count": 1,
    "inference_steps": 2,
    "styles": ["corporate-grey", "outdoor-natural"],
    "top_k": 1,
    "checkpoint_every": 2,
}


@pytest.fixture
def settings(tmp_path, tiny_model, database_url):
    """Every test here runs on SQLite and on PostgreSQL."""
    return Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        max_upload_bytes=3_000_000,
        sdxl_model=tiny_model,
        rate_limit_per_minute=100_000,
        lease_seconds=5,
    )


@pytest.fixture
def keys(settings):
    with Session(engine_for(settings.resolved_database_url)) as session:
        return {
            "admin": create_key(session, "ops", "admin"),
            "studio": create_key(session, "studio-a", "studio", "tenant-a"),
            "other": create_key(session, "studio-b", "studio", "tenant-b"),
            "verifier": create_key(session, "recruiter", "verifier"),
            "auditor": create_key(session, "auditor-a", "auditor", "tenant-a"),
        }


@pytest.fixture
def client(settings):
    with TestClient(create_app(settings)) as client:
        yield client


def auth(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def wait_for(client, key, job_id, timeout=240) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}", headers=auth(key)).json()
        if job["status"] not in ("queued", "running"):
            return job
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} did not finish: {job}")


def test_healthz_and_docs(client):
    assert client.get("/healthz").json()["status"] == "ok"
    assert client.get("/docs").status_code == 200
    assert "/v1/subjects" in client.get("/openapi.json").json()["paths"]


def test_keys_and_roles(client, keys, settings):
    body = {"display_name": "Ada", "consent": CONSENT}
    assert client.post("/v1/subjects", json=body).status_code == 401
    assert client.post("/v1/subjects", json=body, headers=auth("hs_not-a-key")).status_code == 401
    response = client.post("/v1/subjects", json=body, headers=auth(keys["verifier"]))
    assert response.status_code == 403 and "studio" in response.json()["detail"]
    assert client.post("/v1/subjects", json=body, headers=auth(keys["admin"])).status_code == 201
    photo = {"file": ("a.jpg", (FACES / "img1.jpg").read_bytes(), "image/jpeg")}
    assert client.post("/v1/verify", files=photo, headers=auth(keys["studio"])).status_code == 403

    with Session(engine_for(settings.resolved_database_url)) as session:
        expired = create_key(session, "old", "verifier", expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=1))
        row = session.query(ApiKey).filter(ApiKey.name == "recruiter").one()
        row.revoked_at = dt.datetime.now(dt.UTC)
        session.commit()
    assert client.post("/v1/verify", files=photo, headers=auth(expired)).status_code == 401
    assert client.post("/v1/verify", files=photo, headers=auth(keys["verifier"])).status_code == 401


def test_verify_endpoints(client, keys):
    verifier = auth(keys["verifier"])
    webp = (FACES / "img47.jpg").read_bytes()
    response = client.post("/v1/verify", files={"file": ("img47.jpg", webp, "image/jpeg")}, headers=verifier)
    assert response.status_code == 200 and response.json()["label"] == "no_provenance"
    files = [
        ("files", ("a.jpg", (CONFORMANCE / "adobe-20220124-E-sig-CA.jpg").read_bytes(), "image/jpeg")),
        ("files", ("b.txt", b"not an image", "text/plain")),
        ("files", ("c.jpg", (FACES / "img2.jpg").read_bytes(), "image/jpeg")),
    ]
    results = client.post("/v1/verify/batch", files=files, headers=verifier).json()
    assert [r.get("label") or "error" for r in results] == ["invalid_credentials", "error", "no_provenance"]
    assert "not a JPEG, PNG or WebP" in results[1]["error"]
    too_many = [("files", (f"{i}.jpg", b"x", "image/jpeg")) for i in range(51)]
    assert client.post("/v1/verify/batch", files=too_many, headers=verifier).status_code == 413


@pytest.mark.parametrize(
    ("content", "status", "message"),
    [
        (b"", 422, "empty"),
        (b"GIF89a" + b"\x00" * 40, 415, "GIF file"),
        (b"plain text, not an image", 415, "not a JPEG, PNG or WebP"),
        ((FACES / "img1.jpg").read_bytes()[:5000], 422, "corrupt or truncated"),
        (b"\xff\xd8\xff" + b"\x00" * 3_000_001, 413, "over the limit of 3,000,000 bytes"),
    ],
)
def test_bad_uploads(client, keys, content, status, message):
    response = client.post(
        "/v1/verify", files={"file": ("x.jpg", content, "image/jpeg")}, headers=auth(keys["verifier"])
    )
    assert response.status_code == status
    assert message in response.json()["detail"]


def test_bad_requests(client, keys):
    studio = auth(keys["studio"])
    assert "file" in client.post("/v1/verify", data={"x": "1"}, headers=auth(keys["verifier"])).json()["detail"]
    malformed = client.post(
        "/v1/subjects", content=b"{not json", headers={**studio, "content-type": "application/json"}
    )
    assert malformed.status_code == 422 and "invalid request" in malformed.json()["detail"]
    missing = client.post("/v1/subjects", json={"display_name": "x"}, headers=studio)
    assert missing.status_code == 422 and "consent" in missing.json()["detail"]
    bad_scope = client.post(
        "/v1/subjects", json={"display_name": "x", "consent": {**CONSENT, "scope": ["ads"]}}, headers=studio
    )
    assert bad_scope.status_code == 422 and "unknown consent purpose ads" in bad_scope.json()["detail"]
    for path in ("/v1/subjects/nope", "/v1/jobs/nope"):
        assert client.get(path, headers=studio).status_code == 404
    assert client.get("/v1/headshots/nope/file", headers=studio).status_code == 404
    subject = client.post("/v1/subjects", json={"display_name": "x", "consent": CONSENT}, headers=studio).json()
    wrong_kind = client.post(f"/v1/subjects/{subject['id']}/jobs", json={"kind": "paint"}, headers=studio)
    assert wrong_kind.status_code == 422
    no_photos = client.post(f"/v1/subjects/{subject['id']}/jobs", json={"kind": "pack"}, headers=studio)
    assert no_photos.status_code == 409 and "no accepted reference photo" in no_photos.json()["detail"]


def test_generation_without_a_model_is_503(tmp_path, keys, database_url):
    settings = Settings(data_dir=tmp_path / "data", database_url=database_url)  # the keys fixture's database
    with TestClient(create_app(settings)) as client:
        studio = auth(keys["studio"])
        subject = client.post("/v1/subjects", json={"display_name": "x", "consent": CONSENT}, headers=studio).json()
        response = client.post(f"/v1/subjects/{subject['id']}/jobs", json={"kind": "pack"}, headers=studio)
        assert response.status_code == 503 and "HEADSHOT_SDXL_MODEL" in response.json()["detail"]


def test_public_page(client, settings, store):
    page = client.get("/verify")
    assert page.status_code == 200 and "<form" in page.text
    result = client.post("/verify", files={"file": ("p.jpg", (FACES / "img3.jpg").read_bytes(), "image/jpeg")})
    assert result.status_code == 200 and "does not mean the photo is real" in result.text
    bad = client.post("/verify", files={"file": ("p.jpg", b"nope", "image/jpeg")})
    assert bad.status_code == 415 and "not a JPEG" in bad.text
    settings.public_verify_page = False
    assert client.get("/verify").status_code == 404


def _upload(client, key, subject_id, name, data=None):
    data = data if data is not None else (FACES / name).read_bytes()
    return client.post(
        f"/v1/subjects/{subject_id}/photos", files={"file": (name, data, "image/jpeg")}, headers=auth(key)
    )


def test_studio_to_auditor_to_erasure(client, keys, settings):
    studio, auditor = keys["studio"], keys["auditor"]
    subject = client.post("/v1/subjects", json={"display_name": "Ada", "consent": CONSENT}, headers=auth(studio))
    assert subject.status_code == 201
    subject_id = subject.json()["id"]

    uploads = [_upload(client, studio, subject_id, name).json() for name in ("img1.jpg", "img2.jpg", "img4.jpg")]
    assert [u["accepted"] for u in uploads] == [True, True, True]
    group = _upload(client, studio, subject_id, "couple.jpg").json()
    assert not group["accepted"] and group["reason"].startswith("2 faces")
    again = _upload(client, studio, subject_id, "img1.jpg")
    assert again.status_code == 409
    assert _upload(client, studio, subject_id, "x.jpg", b"junk").status_code == 415

    # another tenant sees nothing of it
    other = auth(keys["other"])
    assert client.get(f"/v1/subjects/{subject_id}", headers=other).status_code == 404
    assert _upload(client, keys["other"], subject_id, "img5.jpg").status_code == 404
    assert client.post(f"/v1/subjects/{subject_id}/jobs", json={"kind": "pack"}, headers=other).status_code == 404

    job = client.post(
        f"/v1/subjects/{subject_id}/jobs", json={"kind": "pack", "parameters": PACK}, headers=auth(studio)
    )
    # the in-process worker may claim it before the answer is written, on a busy machine
    assert job.status_code == 202 and job.json()["status"] in ("queued", "running")
    assert client.get(f"/v1/jobs/{job.json()['id']}", headers=other).status_code == 404
    finished = wait_for(client, studio, job.json()["id"])
    assert finished["status"] == "succeeded", finished["error"]
    assert finished["progress"] == 1.0 and finished["step"] == 4 and finished["loss"] is not None
    assert finished["lora_sha256"] and finished["model_sha256"]

    listing = client.get(f"/v1/subjects/{subject_id}/headshots", headers=auth(studio)).json()
    assert len(listing["headshots"]) == 2 and len(listing["top_k"]) == 1
    assert client.get(f"/v1/subjects/{subject_id}/headshots", headers=other).status_code == 404
    first = listing["headshots"][0]
    assert first["label"] == "ai_verified" and first["credentials"]["manifest_label"].startswith("urn:c2pa:")
    assert client.get(first["file"], headers=other).status_code == 404
    download = client.get(first["file"], headers=auth(studio))
    assert download.status_code == 200 and download.headers["content-type"] == "image/png"
    delivered = download.content

    verifier = auth(keys["verifier"])
    verdict = client.post("/v1/verify", files={"file": ("h.png", delivered, "image/png")}, headers=verifier).json()
    assert verdict["label"] == "ai_verified"
    assert sorted(i["sha256"] for i in verdict["c2pa"]["ingredients"]) == sorted(u["sha256"] for u in uploads)
    stripped = encode(Image.open(io.BytesIO(delivered)).convert("RGB"), "PNG")
    verdict = client.post("/v1/verify", files={"file": ("s.png", stripped, "image/png")}, headers=verifier).json()
    assert verdict["label"] == "ai_soft_binding"

    chain = client.get(f"/v1/audit/headshots/{first['id']}", headers=auth(auditor)).json()
    jwks = client.get("/.well-known/jwks.json").json()
    assert verify_record(chain, jwks).record_type == "headshot-chain"  # signed (tests/service/test_signed_records.py)
    assert chain["subject"]["consent"]["text_version"] == "consent-v3"
    assert sorted(p["sha256"] for p in chain["reference_photos"]) == sorted(u["sha256"] for u in uploads)
    assert chain["lora_sha256"] == finished["lora_sha256"] and chain["base_model_sha256"] == finished["model_sha256"]
    lookup = client.post("/v1/audit/lookup", files={"file": ("s.png", stripped, "image/png")}, headers=auth(auditor))
    assert lookup.json()["found"] and lookup.json()["headshot"]["id"] == first["id"]
    assert verify_record(lookup.json(), jwks).record_type == "headshot-chain"
    training = client.post(
        "/v1/audit/training-lookup",
        files={
            "file": ("r.jpg", encode(Image.open(FACES / "img2.jpg").convert("RGB"), "JPEG", quality=80), "image/jpeg")
        },
        headers=auth(auditor),
    ).json()
    assert training["used_for_training"] and training["matches"][0]["match"].startswith("near-duplicate")
    assert training["matches"][0]["models"][0]["lora_sha256"] == finished["lora_sha256"]
    export = client.get(f"/v1/audit/subjects/{subject_id}/export", headers=auth(auditor)).json()
    assert len(export["photos"]) == 4 and export["jobs"][0]["status"] == "succeeded"
    assert {"create", "upload"} <= {event["action"] for event in export["audit_log"]}
    assert client.get(f"/v1/audit/headshots/{first['id']}", headers=auth(studio)).status_code == 403

    erased = client.delete(f"/v1/subjects/{subject_id}", headers=auth(studio)).json()
    assert erased["erased"] and sorted(erased["photo_hashes"]) == sorted(
        [*(u["sha256"] for u in uploads), group["sha256"]]
    )
    assert erased["delivered_headshots_still_recognised"] == [first["credentials"]["manifest_label"]]
    assert client.get(f"/v1/subjects/{subject_id}", headers=auth(studio)).status_code == 404
    assert not (settings.data_dir / "subjects" / subject_id).exists()
    assert not (settings.data_dir / "jobs" / finished["id"]).exists()
    verdict = client.post("/v1/verify", files={"file": ("s.png", stripped, "image/png")}, headers=verifier).json()
    assert verdict["label"] == "ai_soft_binding", verdict["evidence"]  # the delivered headshot is still recognised
    assert "ingredients" not in verdict["recovered_manifest"]  # ... without the reference photos' hashes
    tombstone = client.get(f"/v1/audit/subjects/{subject_id}/export", headers=auth(auditor)).json()
    assert tombstone["subject"] is None and tombstone["tombstone"]["erased_by"] == "studio-a"
    assert verify_record(tombstone, jwks).record_type == "subject-export"
    lookup = client.post("/v1/audit/lookup", files={"file": ("s.png", stripped, "image/png")}, headers=auth(auditor))
    assert not lookup.json()["found"] and lookup.json()["erased_subjects"][0]["subject_id"] == subject_id


def test_restart_with_jobs_in_flight(settings, keys):
    """Jobs whose worker died: one is taken over once its lease expires; one that lost too many is interrupted."""
    studio = auth(keys["studio"])
    with TestClient(create_app(settings)) as client:
        subject_id = client.post("/v1/subjects", json={"display_name": "B", "consent": CONSENT}, headers=studio).json()[
            "id"
        ]
        for name in ("img1.jpg", "img2.jpg"):
            assert _upload(client, keys["studio"], subject_id, name).json()["accepted"]
    expired = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    with Session(engine_for(settings.resolved_database_url)) as session:  # workers that died mid-training
        jobs = [
            Job(
                tenant="tenant-a",
                subject_id=subject_id,
                kind="train",
                status="running",
                stage="train",
                attempt=1,
                worker="gone:1:in-process",
                lease_expires_at=expired,
                lease_losses=losses,
                created_by="studio-a",
                parameters='{"steps": 4, "rank": 4, "alpha": 4, "resolution": 64, "checkpoint_every": 2}',
            )
            for losses in (0, settings.max_attempts - 1)
        ]
        session.add_all(jobs)
        session.commit()
        taken_over, job_id = jobs[0].id, jobs[1].id
    with TestClient(create_app(settings)) as client:
        finished = wait_for(client, keys["studio"], taken_over)
        assert finished["status"] == "succeeded" and finished["attempt"] == 2, finished
        state = wait_for(client, keys["studio"], job_id)
        assert state["status"] == "interrupted" and "resume" in state["error"]
        assert client.post(f"/v1/jobs/{job_id}/resume", headers=studio).status_code == 202
        assert wait_for(client, keys["studio"], job_id)["status"] == "succeeded"
        assert client.post(f"/v1/jobs/{job_id}/resume", headers=studio).status_code == 409
        assert client.post(f"/v1/jobs/{job_id}/cancel", headers=studio).status_code == 409

        # a generate job with the trained LoRA
        parameters = {"lora_job_id": job_id, "styles": ["modern-office"], "count": 1, "size": 128, "inference_steps": 2}
        generate = client.post(
            f"/v1/subjects/{subject_id}/jobs", json={"kind": "generate", "parameters": parameters}, headers=studio
        )
        assert generate.status_code == 202, generate.text
        assert wait_for(client, keys["studio"], generate.json()["id"])["status"] == "succeeded"
        headshots = client.get(f"/v1/subjects/{subject_id}/headshots", headers=studio).json()["headshots"]
        assert [h["style"] for h in headshots] == ["modern-office"] and headshots[0]["label"] == "ai_verified"
        bad = client.post(f"/v1/subjects/{subject_id}/jobs", json={"kind": "generate"}, headers=studio)
        assert bad.status_code == 422 and "lora_job_id" in bad.json()["detail"]


def test_a_render_taken_over_registers_each_image_once(client, keys, settings):
    """A worker died mid-render, after registering an image and writing a file: its successor's pack is the
    only one registered, and nothing of the dead attempt is left."""
    import json

    from provenance.fingerprint import Fingerprints
    from provenance.registry import RegistryEntry
    from service.registry import RegisteredImage

    studio = auth(keys["studio"])
    subject_id = client.post("/v1/subjects", json={"display_name": "E", "consent": CONSENT}, headers=studio).json()[
        "id"
    ]
    assert _upload(client, keys["studio"], subject_id, "img1.jpg").json()["accepted"]
    train = client.post(
        f"/v1/subjects/{subject_id}/jobs", json={"kind": "train", "parameters": {**PACK, "steps": 2}}, headers=studio
    ).json()
    assert wait_for(client, keys["studio"], train["id"])["status"] == "succeeded"

    parameters = {
        "lora_job_id": train["id"],
        "styles": ["modern-office"],
        "count": 2,
        "size": 128,
        "inference_steps": 2,
    }
    engine = engine_for(settings.resolved_database_url)
    with Session(engine) as session:
        job = Job(
            tenant="tenant-a",
            subject_id=subject_id,
            kind="generate",
            stage="render",
            status="running",
            attempt=1,
            worker="gone:1:gpu",
            lease_expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1),
            created_by="studio-a",
            parameters=json.dumps(parameters),
        )
        session.add(job)
        session.commit()
        job_id = job.id
    Services(settings).registry.add(  # what the dead attempt registered before it died
        RegistryEntry(
            payload=0x1234,
            manifest_label="urn:c2pa:from-the-dead-attempt",
            fingerprints=Fingerprints(frame=(1,) * 7, face=None),
            signed_sha256="00" * 32,
            mime_type="image/png",
            manifest={},
        ),
        job_id=job_id,
    )
    Services(settings).storage.write(f"jobs/{job_id}/render-1/images/modern-office-1.png", b"half written")

    finished = wait_for(client, keys["studio"], job_id)
    assert finished["status"] == "succeeded" and finished["attempt"] == 3, finished  # render again, then score
    headshots = client.get(f"/v1/subjects/{subject_id}/headshots", headers=studio).json()["headshots"]
    mine = sorted(h["credentials"]["manifest_label"] for h in headshots if h["job_id"] == job_id)
    with Session(engine) as session:
        registered = session.exec(select(RegisteredImage).where(RegisteredImage.job_id == job_id)).all()
    assert len(mine) == 2 and sorted(row.manifest_label for row in registered) == mine
    assert Services(settings).registry.find_payload(0x1234) is None
    assert sorted(path.name for path in (settings.data_dir / "jobs" / job_id).iterdir()) == ["render-2"]


def test_stored_copy_loses_its_location(client, keys, settings):
    import pyexiv2

    with pyexiv2.ImageData((FACES / "img8.jpg").read_bytes()) as metadata:
        metadata.modify_exif(
            {
                "Exif.GPSInfo.GPSLatitude": "48/1 51/1 0/1",
                "Exif.GPSInfo.GPSLatitudeRef": "N",
                "Exif.Image.Artist": "Ada",
            }
        )
        located = metadata.get_bytes()
    studio = auth(keys["studio"])
    subject_id = client.post("/v1/subjects", json={"display_name": "D", "consent": CONSENT}, headers=studio).json()[
        "id"
    ]
    uploaded = _upload(client, keys["studio"], subject_id, "located.jpg", located).json()
    assert uploaded["sha256"] == __import__("hashlib").sha256(located).hexdigest()  # identity: the original bytes
    stored = next((settings.data_dir / "subjects" / subject_id / "photos").iterdir()).read_bytes()
    with pyexiv2.ImageData(stored) as metadata:
        exif = metadata.read_exif()
    assert not any(key.startswith("Exif.GPSInfo") for key in exif) and exif["Exif.Image.Artist"] == "Ada"


def test_consent_withdrawal_stops_jobs_and_erases(client, keys, settings):
    studio = auth(keys["studio"])
    subject_id = client.post("/v1/subjects", json={"display_name": "C", "consent": CONSENT}, headers=studio).json()[
        "id"
    ]
    assert _upload(client, keys["studio"], subject_id, "img5.jpg").json()["accepted"]
    job = client.post(
        f"/v1/subjects/{subject_id}/jobs",
        json={"kind": "train", "parameters": {**PACK, "steps": 400, "checkpoint_every": 100}},
        headers=studio,
    ).json()
    withdrawn = client.post(f"/v1/subjects/{subject_id}/consent/withdraw", headers=studio)
    assert withdrawn.status_code == 200 and withdrawn.json()["erased"]
    assert client.get(f"/v1/jobs/{job['id']}", headers=studio).status_code == 404
    assert client.get(f"/v1/subjects/{subject_id}", headers=studio).status_code == 404
    # the worker finds the job gone at its next fenced write, stops, and removes what it wrote meanwhile
    left = [settings.data_dir / "subjects" / subject_id, settings.data_dir / "jobs" / job["id"]]
    deadline, clear_since = time.monotonic() + 60, None
    while time.monotonic() < deadline and (clear_since is None or time.monotonic() - clear_since < 3):
        if any(path.exists() for path in left):
            clear_since = None
        elif clear_since is None:
            clear_since = time.monotonic()
        time.sleep(0.2)
    assert not any(path.exists() for path in left)


def test_the_face_backend_is_loaded_once_per_process(client, keys, monkeypatch):
    """Uploads share the app's face backend: its models are loaded on the first upload, not on each one."""
    services = client.app.state.services
    loads = []
    real_load = services._load_face_backend
    monkeypatch.setattr(services, "_load_face_backend", lambda: loads.append(1) or real_load())
    studio = keys["studio"]
    subject = client.post("/v1/subjects", json={"display_name": "Ada", "consent": CONSENT}, headers=auth(studio))
    subject_id = subject.json()["id"]
    for name in ("img1.jpg", "img2.jpg", "img4.jpg"):
        assert _upload(client, studio, subject_id, name).json()["accepted"] is True
    assert len(loads) == 1
