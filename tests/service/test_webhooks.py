"""Webhooks (Standard Webhooks) over the real app, a real local HTTP receiver, SQLite and PostgreSQL, and a real
Celery worker on Redis."""

import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select
from standardwebhooks import Webhook as Verifier
from standardwebhooks.webhooks import WebhookVerificationError

from service.app import create_app
from service.database import engine_for
from service.deps import create_key
from service.jobs import sweep
from service.services import Services
from service.settings import Settings
from service.stages import run_stage
from service.tables import Job, Subject, Webhook, WebhookDelivery
from service.webhooks import new_secret
from tests.conftest import require_server
from tests.service.webhook_receiver import Receiver

CONSENT = {"given_by": "Ada Example", "scope": ["training", "generation"], "text_version": "consent-v3"}
SUBJECT_EVENTS = ["consent.withdrawn", "subject.erased"]


@pytest.fixture
def settings(tmp_path, database_url):
    return Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        rate_limit_per_minute=100_000,
        webhook_allowed_hosts=["127.0.0.1"],
        webhook_retry_seconds=0.2,
        webhook_timeout_seconds=2,
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


@pytest.fixture
def receiver():
    with Receiver().serve() as receiver:
        yield receiver


def auth(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def _subject(client, key: str) -> str:
    response = client.post("/v1/subjects", json={"display_name": "Ada", "consent": CONSENT}, headers=auth(key))
    assert response.status_code == 201
    return response.json()["id"]


def _hook(client, key: str, url: str, events=SUBJECT_EVENTS) -> dict:
    response = client.post("/v1/webhooks", json={"url": url, "events": events}, headers=auth(key))
    assert response.status_code == 201, response.text
    return response.json()


def _deliveries(client, key: str, webhook_id: str, settled: int, timeout: float = 30) -> list[dict]:
    """The webhook's deliveries once `settled` of them are no longer pending."""
    deadline = time.monotonic() + timeout
    while True:
        deliveries = client.get(f"/v1/webhooks/{webhook_id}/deliveries", headers=auth(key)).json()["deliveries"]
        if sum(d["status"] != "pending" for d in deliveries) >= settled or time.monotonic() > deadline:
            return deliveries
        time.sleep(0.1)


def test_deliveries_are_signed_and_retried_after_an_error(client, keys, receiver):
    receiver.answers.extend([500])  # the first delivery fails once
    hook = _hook(client, keys["studio"], f"{receiver.url}/hook")
    assert hook["secret"].startswith("whsec_") and hook["events"] == SUBJECT_EVENTS
    shown = client.get(f"/v1/webhooks/{hook['id']}", headers=auth(keys["studio"])).json()
    assert "secret" not in shown and shown["url"] == f"{receiver.url}/hook"

    subject_id = _subject(client, keys["studio"])
    withdrawn = client.post(f"/v1/subjects/{subject_id}/consent/withdraw", headers=auth(keys["studio"]))
    assert withdrawn.status_code == 200

    received = receiver.wait_for(3)  # one refused with 500, then both events delivered
    deliveries = _deliveries(client, keys["studio"], hook["id"], settled=2)
    assert sorted(d["status"] for d in deliveries) == ["succeeded", "succeeded"]
    retried = next(d for d in deliveries if d["attempts"] == 2)
    assert [a["status_code"] for a in retried["attempt_log"]] == [500, 200]
    assert retried["attempt_log"][0]["error"] == "HTTP 500"
    assert next(d for d in deliveries if d is not retried)["attempts"] == 1

    signer = Verifier(hook["secret"])
    payloads = [signer.verify(request.body, request.headers) for request in received]
    assert {p["type"] for p in payloads} == set(SUBJECT_EVENTS)
    assert all(p["data"]["subject_id"] == subject_id for p in payloads)
    assert [r.headers["webhook-id"] for r in received].count(retried["id"]) == 2  # the same id on the retry
    assert {r.path for r in received} == {"/hook"}
    with pytest.raises(WebhookVerificationError):
        Verifier(new_secret()).verify(received[0].body, received[0].headers)
    tampered = received[0].body.replace(subject_id.encode(), b"0" * len(subject_id))
    with pytest.raises(WebhookVerificationError):
        signer.verify(tampered, received[0].headers)


REFUSED = [
    ("http://127.0.0.1:9/hook", "loopback, private or link-local"),
    ("http://localhost:9/hook", "loopback, private or link-local"),
    ("http://10.1.2.3/hook", "loopback, private or link-local"),
    ("http://169.254.169.254/latest/meta-data", "loopback, private or link-local"),
    ("http://[::1]:9/hook", "loopback, private or link-local"),
    ("http://[fd00::1]/hook", "loopback, private or link-local"),
    ("ftp://example.com/hook", "not an http:// or https:// URL"),
    ("http://user:password@example.com/hook", "user name or password"),
    ("http://no-such-host.invalid/hook", "does not resolve"),
]


def test_private_addresses_are_refused(client, keys, settings):
    settings.webhook_allowed_hosts = []
    for url, message in REFUSED:
        body = {"url": url, "events": SUBJECT_EVENTS}
        response = client.post("/v1/webhooks", json=body, headers=auth(keys["studio"]))
        assert response.status_code == 422 and message in response.json()["detail"], url
    assert client.get("/v1/webhooks", headers=auth(keys["studio"])).json()["webhooks"] == []


def test_an_address_that_is_no_longer_allowed_gets_nothing(client, keys, settings, receiver):
    hook = _hook(client, keys["studio"], f"{receiver.url}/hook")
    bad = client.post("/v1/webhooks", json={"url": receiver.url, "events": ["job.paint"]}, headers=auth(keys["studio"]))
    assert bad.status_code == 422 and "unknown event job.paint" in bad.json()["detail"]
    settings.webhook_allowed_hosts = []  # the operator took the host off the list
    subject_id = _subject(client, keys["studio"])
    client.delete(f"/v1/subjects/{subject_id}", headers=auth(keys["studio"]))
    [delivery] = _deliveries(client, keys["studio"], hook["id"], settled=1)
    assert delivery["status"] == "failed" and delivery["attempts"] == 1  # refused: never retried
    assert "refused" in delivery["last_error"] and "127.0.0.1" in delivery["last_error"]
    assert receiver.received == []


def test_redirects_are_not_followed_and_a_slow_receiver_times_out(client, keys, settings, receiver):
    settings.webhook_max_attempts = 1
    settings.webhook_timeout_seconds = 0.5
    receiver.answers.extend([302])
    hook = _hook(client, keys["studio"], f"{receiver.url}/hook", ["subject.erased"])
    client.delete(f"/v1/subjects/{_subject(client, keys['studio'])}", headers=auth(keys["studio"]))
    [redirected] = _deliveries(client, keys["studio"], hook["id"], settled=1)
    assert redirected["status"] == "failed" and redirected["last_status_code"] == 302
    assert "redirects are not followed" in redirected["last_error"]
    assert [r.path for r in receiver.received] == ["/hook"]  # /redirected was never asked for

    receiver.delay = 3
    started = time.monotonic()
    client.delete(f"/v1/subjects/{_subject(client, keys['studio'])}", headers=auth(keys["studio"]))
    assert time.monotonic() - started < 2  # the request does not wait for the receiver
    slow = next(d for d in _deliveries(client, keys["studio"], hook["id"], settled=2) if d["id"] != redirected["id"])
    assert slow["status"] == "failed" and "Timeout" in slow["last_error"]
    assert slow["attempt_log"][0]["duration_ms"] < 2000


def test_webhooks_belong_to_a_tenant_and_need_a_studio_key(client, keys, receiver):
    body = {"url": f"{receiver.url}/hook", "events": SUBJECT_EVENTS}
    assert client.post("/v1/webhooks", json=body).status_code == 401
    assert client.get("/v1/webhooks", headers=auth("hs_not-a-key")).status_code == 401
    for role in ("verifier", "auditor"):
        response = client.post("/v1/webhooks", json=body, headers=auth(keys[role]))
        assert response.status_code == 403 and "studio" in response.json()["detail"]
        assert client.get("/v1/webhooks", headers=auth(keys[role])).status_code == 403

    mine = _hook(client, keys["studio"], f"{receiver.url}/hook")
    admins = _hook(client, keys["admin"], f"{receiver.url}/admin")
    other = auth(keys["other"])
    assert client.get(f"/v1/webhooks/{mine['id']}", headers=other).status_code == 404
    assert client.get(f"/v1/webhooks/{mine['id']}/deliveries", headers=other).status_code == 404
    assert client.delete(f"/v1/webhooks/{mine['id']}", headers=other).status_code == 404
    assert client.get("/v1/webhooks", headers=other).json()["webhooks"] == []
    listed = client.get("/v1/webhooks", headers=auth(keys["studio"])).json()["webhooks"]
    assert [hook["id"] for hook in listed] == [mine["id"]]
    every = client.get("/v1/webhooks", headers=auth(keys["admin"])).json()["webhooks"]
    assert {hook["id"] for hook in every} == {mine["id"], admins["id"]}

    # tenant-b's subject is erased: tenant-a's receiver hears nothing of it
    client.post(f"/v1/subjects/{_subject(client, keys['other'])}/consent/withdraw", headers=other)
    time.sleep(2.5)  # two rounds of the delivery loop
    assert receiver.received == []
    assert client.get(f"/v1/webhooks/{mine['id']}/deliveries", headers=auth(keys["studio"])).json()["deliveries"] == []

    assert client.delete(f"/v1/webhooks/{mine['id']}", headers=auth(keys["studio"])).status_code == 204
    assert client.get(f"/v1/webhooks/{mine['id']}", headers=auth(keys["studio"])).status_code == 404
    assert client.delete(f"/v1/webhooks/{admins['id']}", headers=auth(keys["admin"])).status_code == 204


def test_a_cancelled_job_is_announced_once(tmp_path, keys, settings, receiver, tiny_model):
    from tests.conftest import FACES

    settings.sdxl_model = tiny_model
    with TestClient(create_app(settings)) as client:
        studio = auth(keys["studio"])
        hook = _hook(client, keys["studio"], f"{receiver.url}/jobs", ["job.cancelled", "job.succeeded"])
        subject_id = _subject(client, keys["studio"])
        photo = {"file": ("a.jpg", (FACES / "img1.jpg").read_bytes(), "image/jpeg")}
        assert client.post(f"/v1/subjects/{subject_id}/photos", files=photo, headers=studio).json()["accepted"]
        parameters = {"steps": 200, "rank": 4, "alpha": 4, "resolution": 64, "checkpoint_every": 50}
        job = client.post(
            f"/v1/subjects/{subject_id}/jobs", json={"kind": "train", "parameters": parameters}, headers=studio
        ).json()
        # cancelled while queued (the route ends it) or while training (the worker ends it): announced either way
        assert client.post(f"/v1/jobs/{job['id']}/cancel", headers=studio).status_code == 200
        [request] = receiver.wait_for(1)
        payload = Verifier(hook["secret"]).verify(request.body, request.headers)
        assert payload["type"] == "job.cancelled"
        expected = {"job_id": job["id"], "subject_id": subject_id, "kind": "train", "status": "cancelled"}
        assert payload["data"] == expected
        time.sleep(1.5)
        assert len(receiver.received) == 1


def _job(engine, tenant: str, **fields) -> str:
    with Session(engine) as session:
        subject = Subject(
            tenant=tenant,
            display_name="x",
            consent_given_by="x",
            consent_scope='["training", "generation"]',
            consent_text_version="v1",
            consent_given_at=dt.datetime.now(dt.UTC),
        )
        session.add(subject)
        session.flush()
        job = Job(tenant=tenant, subject_id=subject.id, created_by="test", **{"parameters": "{}", **fields})
        session.add(job)
        session.commit()
        return job.id


def test_workers_announce_failed_interrupted_and_cancelled_jobs(settings):
    """The ends a worker or the sweeper decides are written with the job's own UPDATE."""
    engine = engine_for(settings.resolved_database_url)
    with Session(engine) as session:
        session.add(Webhook(id="hook", tenant="t", url="http://x.invalid", events=json.dumps(list(JOB_EVENTS)),
                            secret=new_secret(), created_by="test"))  # fmt: skip
        session.commit()
    past = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)
    running = {"kind": "pack", "status": "running", "stage": "train", "attempt": 1, "worker": "w"}
    worn_out = _job(engine, "t", **running, lease_expires_at=past, lease_losses=settings.max_attempts - 1)
    cancelled = _job(engine, "t", **running, lease_expires_at=past, cancel_requested=True)
    other_tenant = _job(engine, "u", **running, lease_expires_at=past, cancel_requested=True)
    sweep(engine, lambda *_: None, settings.max_attempts)
    failing = _job(engine, "t", kind="generate", stage="render", parameters='{"lora_job_id": "erased"}')  # fails
    run_stage(Services(settings), failing, "render", worker="w", dispatch=lambda *_: pytest.fail("dispatched"))

    with Session(engine) as session:
        rows = session.exec(select(WebhookDelivery).order_by(WebhookDelivery.created_at)).all()
    announced = {json.loads(row.payload)["data"]["job_id"]: row.event_type for row in rows}
    assert announced == {worn_out: "job.interrupted", cancelled: "job.cancelled", failing: "job.failed"}
    assert other_tenant not in announced
    failed = next(json.loads(row.payload) for row in rows if row.event_type == "job.failed")
    assert "LoRA is missing" in failed["data"]["error"]
    sweep(engine, lambda *_: None, settings.max_attempts)  # nothing ends twice
    with Session(engine) as session:
        assert len(session.exec(select(WebhookDelivery)).all()) == 3


JOB_EVENTS = ("job.succeeded", "job.failed", "job.cancelled", "job.interrupted")
HEADSHOT = str(Path(sys.executable).with_name("headshot"))
BROKER_URL = os.environ.get("HEADSHOT_TEST_WEBHOOK_REDIS", "redis://127.0.0.1:6379/13")


@pytest.fixture
def broker():
    import redis

    client = redis.Redis.from_url(BROKER_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        require_server("Redis", f"{BROKER_URL}: {exc}")
    client.flushdb()  # this database number is the test's own (HEADSHOT_TEST_WEBHOOK_REDIS)
    yield BROKER_URL
    client.flushdb()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_celery_worker_delivers(tmp_path, settings, keys, receiver, broker):
    """With a broker, deliveries are Celery tasks on the `webhooks` queue, sent by a `headshot worker`."""
    settings.broker_url = broker
    env = {
        **os.environ,
        "HEADSHOT_DATA_DIR": str(tmp_path / "worker"),
        "HEADSHOT_DATABASE_URL": settings.resolved_database_url,
        "HEADSHOT_BROKER_URL": broker,
        "HEADSHOT_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
    }
    log = open(tmp_path / "worker.log", "wb")  # noqa: SIM115 (closed below)
    worker = subprocess.Popen(
        [HEADSHOT, "worker", "--queues", "webhooks", "--name", "hooks-0"], env=env, stdout=log, stderr=log
    )
    try:
        with TestClient(create_app(settings)) as client:
            hook = _hook(client, keys["studio"], f"{receiver.url}/hook")
            subject_id = _subject(client, keys["studio"])
            client.post(f"/v1/subjects/{subject_id}/consent/withdraw", headers=auth(keys["studio"]))
            received = receiver.wait_for(2, timeout=60)
            payloads = [Verifier(hook["secret"]).verify(r.body, r.headers) for r in received]
            assert sorted(p["type"] for p in payloads) == SUBJECT_EVENTS
            assert all(d["status"] == "succeeded" for d in _deliveries(client, keys["studio"], hook["id"], 2))
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        log.close()
    assert "headshot.deliver_webhook" in (tmp_path / "worker.log").read_text()
