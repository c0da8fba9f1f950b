"""Previews and the identity methods through the HTTP API: a real app, the in-process worker, the tiny SDXL with
its tiny IP-Adapter FaceID and insightface-shaped pack, on SQLite and PostgreSQL."""

import io
import json

import c2pa
import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from service.app import create_app
from service.database import engine_for
from service.deps import create_key
from service.settings import Settings
from tests.conftest import FACES
from tests.service.test_app import auth, wait_for

PHOTOS = ("img1.jpg", "img2.jpg", "img4.jpg")
PREVIEW = {"styles": ["corporate-grey"], "count": 2, "size": 64, "inference_steps": 2}


@pytest.fixture
def settings(tmp_path, tiny_model, tiny_faceid, tiny_insightface_pack, database_url):
    return Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        sdxl_model=tiny_model,
        ip_adapter=tiny_faceid,
        insightface_pack=tiny_insightface_pack,
        rate_limit_per_minute=100_000,
        lease_seconds=5,
    )


@pytest.fixture
def keys(settings):
    with Session(engine_for(settings.resolved_database_url)) as session:
        return {
            "studio": create_key(session, "studio-a", "studio", "tenant-a"),
            "verifier": create_key(session, "recruiter", "verifier"),
        }


def _subject(client, key: str, scope: list[str], photos=PHOTOS) -> tuple[str, list[dict]]:
    consent = {"given_by": "Ada Example", "scope": scope, "text_version": "consent-v3"}
    subject_id = client.post("/v1/subjects", json={"display_name": "Ada", "consent": consent}, headers=auth(key))
    subject_id = subject_id.json()["id"]
    uploads = [
        client.post(
            f"/v1/subjects/{subject_id}/photos",
            files={"file": (name, (FACES / name).read_bytes(), "image/jpeg")},
            headers=auth(key),
        ).json()
        for name in photos
    ]
    return subject_id, uploads


def _report(settings, job_id: str) -> dict:
    """The job's report.json, where its render stage stored it (jobs/<id>/render-<attempt>/)."""
    (report,) = (settings.data_dir / "jobs" / job_id).glob("render-*/report.json")
    return json.loads(report.read_text())


def _created_action(data: bytes) -> dict:
    with c2pa.Reader("image/png", io.BytesIO(data)) as reader:
        actions = next(a for a in reader.get_active_manifest()["assertions"] if a["label"] == "c2pa.actions.v2")
    return actions["data"]["actions"][0]


def test_a_preview_renders_faceid_images_without_training(settings, keys):
    """A subject who consented to generation only gets a preview (no LoRA is trained), disclosed and scored by
    dlib; a faceid pack job runs the same two stages."""
    studio = keys["studio"]
    with TestClient(create_app(settings)) as client:
        subject_id, uploads = _subject(client, studio, ["generation"])
        assert all(upload["accepted"] for upload in uploads)
        refused = client.post(f"/v1/subjects/{subject_id}/jobs", json={"kind": "pack"}, headers=auth(studio))
        assert refused.status_code == 409 and "does not cover training" in refused.json()["detail"]

        created = client.post(f"/v1/subjects/{subject_id}/previews", json=PREVIEW, headers=auth(studio))
        assert created.status_code == 202, created.text
        preview = created.json()
        assert preview["kind"] == "preview" and preview["parameters"]["identity"] == "faceid"
        finished = wait_for(client, studio, preview["id"])
        assert finished["status"] == "succeeded", finished["error"]
        assert finished["progress"] == 1.0 and finished["step"] == 0 and finished["lora_sha256"] is None
        assert finished["attempt"] >= 1 and finished["worker"] is None  # claimed under a lease, released at the end

        headshots = client.get(f"/v1/subjects/{subject_id}/headshots", headers=auth(studio)).json()["headshots"]
        assert len(headshots) == 2 and all(h["kept"] and h["method"] == "faceid" for h in headshots)
        assert all(h["label"] == "ai_verified" and h["job_id"] == preview["id"] for h in headshots)
        data = client.get(headshots[0]["file"], headers=auth(studio)).content
        verifier = auth(keys["verifier"])
        verdict = client.post("/v1/verify", files={"file": ("p.png", data, "image/png")}, headers=verifier).json()
        assert verdict["label"] == "ai_verified"
        assert sorted(i["sha256"] for i in verdict["c2pa"]["ingredients"]) == sorted(u["sha256"] for u in uploads)
        created_action = _created_action(data)
        assert created_action["parameters"]["identity_method"] == "faceid"
        hashes = created_action["parameters"]["model_hashes"]
        assert set(hashes) == {"sdxl-base", "ip-adapter-faceid", "face-encoder", "face-detector"}
        assert hashes["sdxl-base"] == finished["model_sha256"]
        record = client.get(f"/v1/jobs/{preview['id']}/training-record", headers=auth(studio))
        assert record.status_code == 409 and "trained no LoRA" in record.json()["detail"]

        pack = client.post(
            f"/v1/subjects/{subject_id}/jobs",
            json={"kind": "pack", "parameters": {**PREVIEW, "count": 1, "identity": "faceid", "top_k": 1}},
            headers=auth(studio),
        )
        assert pack.status_code == 202 and pack.json()["stage"] == "render"  # no train stage
        finished_pack = wait_for(client, studio, pack.json()["id"])
        assert finished_pack["status"] == "succeeded", finished_pack["error"]
    report = _report(settings, preview["id"])
    assert report["method"] == "faceid" and report["likeness"]["encoder"] == "dlib"
    assert report["adapter"]["sha256"] == hashes["ip-adapter-faceid"]


def test_previews_are_checked_like_jobs(settings, keys, tmp_path):
    studio = keys["studio"]
    with TestClient(create_app(settings)) as client:
        subject_id, _ = _subject(client, studio, ["training"], photos=("img1.jpg",))
        no_generation = client.post(f"/v1/subjects/{subject_id}/previews", json=PREVIEW, headers=auth(studio))
        assert no_generation.status_code == 409 and "does not cover generation" in no_generation.json()["detail"]
        photoless, _ = _subject(client, studio, ["generation"], photos=())
        empty = client.post(f"/v1/subjects/{photoless}/previews", json=PREVIEW, headers=auth(studio))
        assert empty.status_code == 409 and "no accepted reference photo" in empty.json()["detail"]
        too_many = client.post(f"/v1/subjects/{photoless}/previews", json={"count": 5}, headers=auth(studio))
        assert too_many.status_code == 422
        unknown = client.post(f"/v1/subjects/{photoless}/previews", json={"styles": ["nope"]}, headers=auth(studio))
        assert unknown.status_code == 422 and "unknown style nope" in unknown.json()["detail"]
        assert client.post("/v1/subjects/nobody/previews", json=PREVIEW, headers=auth(studio)).status_code == 404
        both, _ = _subject(client, studio, ["training", "generation"], photos=("img1.jpg",))
        wrong_kind = client.post(
            f"/v1/subjects/{both}/jobs",
            json={"kind": "train", "parameters": {"identity": "faceid"}},
            headers=auth(studio),
        )
        assert wrong_kind.status_code == 422 and "train job trains the identity LoRA" in wrong_kind.json()["detail"]
        hybrid_without_lora = client.post(
            f"/v1/subjects/{both}/jobs",
            json={"kind": "generate", "parameters": {"identity": "hybrid"}},
            headers=auth(studio),
        )
        assert hybrid_without_lora.status_code == 422 and "lora_job_id" in hybrid_without_lora.json()["detail"]

    bare = settings.model_copy(update={"ip_adapter": None, "insightface_pack": None})
    with TestClient(create_app(bare)) as client:
        subject_id, _ = _subject(client, studio, ["generation"], photos=("img1.jpg",))
        unready = client.post(f"/v1/subjects/{subject_id}/previews", json=PREVIEW, headers=auth(studio))
        assert unready.status_code == 503
        assert "HEADSHOT_IP_ADAPTER" in unready.json()["detail"] and "ask its operator" in unready.json()["detail"]
        assert "HEADSHOT_INSIGHTFACE_PACK" in unready.json()["detail"]


def test_a_hybrid_pack_job_trains_then_renders_with_lora_and_adapter(
    tmp_path, tiny_model, tiny_faceid, tiny_insightface_pack
):
    """On SQLite only (the stages are the lora pack's, shown on both databases elsewhere): train, then render
    with the trained LoRA and the adapter at the asked scale."""
    settings = Settings(
        data_dir=tmp_path / "data",
        sdxl_model=tiny_model,
        ip_adapter=tiny_faceid,
        insightface_pack=tiny_insightface_pack,
        lease_seconds=5,
    )
    with Session(engine_for(settings.resolved_database_url)) as session:
        studio = create_key(session, "studio-a", "studio", "tenant-a")
    parameters = {**PREVIEW, "count": 1, "steps": 2, "rank": 4, "alpha": 4, "checkpoint_every": 2, "top_k": 1}
    with TestClient(create_app(settings)) as client:
        subject_id, _ = _subject(client, studio, ["training", "generation"])
        job = client.post(
            f"/v1/subjects/{subject_id}/jobs",
            json={"kind": "pack", "parameters": {**parameters, "identity": "hybrid", "adapter_scale": 0.25}},
            headers=auth(studio),
        ).json()
        assert job["stage"] == "train"
        finished = wait_for(client, studio, job["id"])
        assert finished["status"] == "succeeded", finished["error"]
        headshot = client.get(f"/v1/subjects/{subject_id}/headshots", headers=auth(studio)).json()["headshots"][0]
        assert headshot["method"] == "hybrid"
        created_action = _created_action(client.get(headshot["file"], headers=auth(studio)).content)
    assert created_action["parameters"]["identity_method"] == "hybrid"
    assert created_action["parameters"]["model_hashes"]["identity-lora"] == finished["lora_sha256"]
    assert "ip-adapter-faceid" in created_action["parameters"]["model_hashes"]
    report = _report(settings, job["id"])
    assert report["adapter"]["scale"] == 0.25 and report["lora"]["sha256"] == finished["lora_sha256"]
    assert report["images"][0]["parameters"]["ip_adapter_scale"] == 0.25
