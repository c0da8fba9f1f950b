import datetime as dt
import logging
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient
from PIL import Image
from sqlmodel import Session

from service.app import create_app
from service.database import engine_for
from service.deps import create_key
from service.limits import RateLimiter, RedisRateLimiter
from service.settings import Settings
from service.tables import Job
from tests.conftest import FACES, encode, require_server


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket():
    clock = FakeClock()
    limiter = RateLimiter(per_minute=3, clock=clock)
    assert [limiter.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = limiter.take("a")
    assert wait == pytest.approx(20.0)  # one token every 20 s
    assert limiter.retry_after(wait) == "20"
    assert limiter.take("b") == 0.0  # buckets are separate
    assert limiter.wait("a") == pytest.approx(20.0) and limiter.wait("c") == 0.0  # `wait` takes nothing
    clock.now = 20.0
    assert limiter.wait("a") == 0.0
    assert limiter.take("a") == 0.0
    assert limiter.take("a") > 0


@pytest.fixture
def settings(tmp_path, tiny_model):
    return Settings(
        data_dir=tmp_path / "data",
        rate_limit_per_minute=3,
        public_rate_limit_per_minute=2,
        max_active_jobs=1,
        sdxl_model=tiny_model,
    )


def test_rate_limits(settings):
    with Session(engine_for(settings.resolved_database_url)) as session:
        first, second = create_key(session, "a", "verifier"), create_key(session, "b", "verifier")
    photo = {"file": ("p.jpg", (FACES / "img3.jpg").read_bytes(), "image/jpeg")}
    with TestClient(create_app(settings)) as client:
        codes = [
            client.post("/v1/verify", files=photo, headers={"Authorization": f"Bearer {first}"}).status_code
            for _ in range(4)
        ]
        assert codes == [200, 200, 200, 429]
        limited = client.post("/v1/verify", files=photo, headers={"Authorization": f"Bearer {first}"})
        assert "rate limit of 3 requests per minute" in limited.json()["detail"] and limited.headers["Retry-After"]
        assert client.post("/v1/verify", files=photo, headers={"Authorization": f"Bearer {second}"}).status_code == 200

        pages = [client.post("/verify", files=photo).status_code for _ in range(3)]
        assert pages == [200, 200, 429]
        assert "Too many checks" in client.post("/verify", files=photo).text


def test_job_queue_depth(settings):
    with Session(engine_for(settings.resolved_database_url)) as session:
        studio = {"Authorization": f"Bearer {create_key(session, 's', 'studio', 'acme')}"}
    consent = {"given_by": "A", "scope": ["training", "generation"], "text_version": "v1"}
    with TestClient(create_app(settings)) as client:
        subject = client.post("/v1/subjects", json={"display_name": "A", "consent": consent}, headers=studio).json()
        upload = client.post(
            f"/v1/subjects/{subject['id']}/photos",
            headers=studio,
            files={"file": ("a.jpg", (FACES / "img1.jpg").read_bytes(), "image/jpeg")},
        )
        assert upload.json()["accepted"]
        with Session(engine_for(settings.resolved_database_url)) as session:  # a job already running
            session.add(
                Job(
                    tenant="acme",
                    subject_id=subject["id"],
                    kind="train",
                    status="running",
                    worker="another-replica",
                    lease_expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1),
                    created_by="s",
                    parameters="{}",
                )
            )
            session.commit()
        response = client.post(f"/v1/subjects/{subject['id']}/jobs", json={"kind": "train"}, headers=studio)
        assert response.status_code == 429
        assert "limit 1" in response.json()["detail"] and response.headers["Retry-After"] == "60"


SMALL_JPEG = encode(Image.new("RGB", (64, 64), "gray"), "JPEG")
REDIS_TEST_URL = os.environ.get("HEADSHOT_TEST_REDIS", "redis://127.0.0.1:6379/15")


@pytest.fixture
def redis_url() -> Iterator[str]:
    """The test Redis (a database of its own); the keys the test made are deleted afterwards."""
    client = redis.Redis.from_url(REDIS_TEST_URL, socket_connect_timeout=3)
    try:
        client.ping()
    except redis.ConnectionError as exc:
        require_server("Redis", f"{REDIS_TEST_URL}: {exc}")
    before = set(client.scan_iter("headshot:*"))
    yield REDIS_TEST_URL
    if created := set(client.scan_iter("headshot:*")) - before:
        client.delete(*created)
    client.close()


def test_redis_replicas_share_one_budget(redis_url):
    prefix = f"headshot:test-{uuid.uuid4().hex}"
    first, second = (RedisRateLimiter(3, redis_url, "key", prefix=prefix) for _ in range(2))
    assert [first.take("a"), second.take("a"), first.take("a")] == [0.0, 0.0, 0.0]
    assert 0 < second.take("a") <= 20 and 0 < first.take("a") <= 20  # one token every 20 s, for both
    assert second.take("b") == 0.0  # buckets are separate
    assert second.retry_after(first.take("a")) == "20"

    with redis.Redis.from_url(redis_url) as client:
        assert 0 < client.pttl(f"{prefix}:key:a") <= 60_000  # a bucket idle for a minute is full: it expires
        assert set(client.hkeys(f"{prefix}:key:a")) == {b"tokens", b"at"}


def test_redis_wait_tells_without_taking(redis_url):
    """`wait` (asked before a key is looked up, for failed authentications) takes no token."""
    limiter = RedisRateLimiter(2, redis_url, "f", prefix=f"headshot:test-{uuid.uuid4().hex}")
    assert [limiter.wait("a") for _ in range(5)] == [0.0] * 5
    assert [limiter.take("a"), limiter.take("a")] == [0.0, 0.0]
    assert 0 < limiter.wait("a") <= 30 and 0 < limiter.wait("a") <= 30  # empty now, and still not taking
    assert limiter.wait("b") == 0.0


def test_redis_bucket_refills(redis_url):
    limiter = RedisRateLimiter(120, redis_url, "key", prefix=f"headshot:test-{uuid.uuid4().hex}")  # 2 a second
    allowed = 0
    while limiter.take("a") == 0 and allowed < 1000:
        allowed += 1
    assert 120 <= allowed < 130  # the full bucket, and what refilled while draining it
    wait = limiter.take("a")
    assert 0 < wait <= 0.5
    time.sleep(wait + 0.05)
    assert limiter.take("a") == 0.0
    assert limiter.take("a") > 0


def replica_settings(data_dir: Path) -> Settings:
    """A replica's settings: its own object, read from the environment like a separate process's."""
    return Settings(data_dir=data_dir, rate_limit_per_minute=3, public_rate_limit_per_minute=2)


def test_redis_rate_limits_across_replicas(tmp_path, redis_url, monkeypatch):
    monkeypatch.setenv("HEADSHOT_REDIS_URL", redis_url)
    data_dir = tmp_path / "data"
    with Session(engine_for(replica_settings(data_dir).resolved_database_url)) as session:
        headers = {"Authorization": f"Bearer {create_key(session, 'a', 'verifier')}"}
    photo = {"file": ("p.jpg", SMALL_JPEG, "image/jpeg")}  # verified fast: these tests are about the limits
    address = (f"10.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}.1", 50000)  # its own public-page bucket
    with (
        TestClient(create_app(replica_settings(data_dir)), client=address) as first,
        TestClient(create_app(replica_settings(data_dir)), client=address) as second,
    ):
        codes = [
            client.post("/v1/verify", files=photo, headers=headers).status_code for client in (first, second, first)
        ]
        assert codes == [200, 200, 200]
        for client in (second, first):
            limited = client.post("/v1/verify", files=photo, headers=headers)
            assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
            assert "rate limit of 3 requests per minute" in limited.json()["detail"]

        pages = [client.post("/verify", files=photo).status_code for client in (first, second, first)]
        assert pages == [200, 200, 429]
        assert second.post("/verify", files=photo).headers["Retry-After"]


def test_unreachable_redis_lets_requests_through(tmp_path, caplog, monkeypatch):
    monkeypatch.setenv("HEADSHOT_REDIS_URL", "redis://127.0.0.1:1/0")
    settings = replica_settings(tmp_path / "data")
    with Session(engine_for(settings.resolved_database_url)) as session:
        headers = {"Authorization": f"Bearer {create_key(session, 'a', 'verifier')}"}
    photo = {"file": ("p.jpg", SMALL_JPEG, "image/jpeg")}  # verified fast: these tests are about the limits
    with TestClient(create_app(settings)) as client, caplog.at_level(logging.WARNING, logger="service.limits"):
        assert [client.post("/v1/verify", files=photo, headers=headers).status_code for _ in range(5)] == [200] * 5
        assert [client.post("/verify", files=photo).status_code for _ in range(4)] == [200] * 4
    warnings = [record.getMessage() for record in caplog.records]
    assert len(warnings) == 3  # one per limiter (keys, the public page, failed authentications) for the outage
    assert all("Redis at redis://127.0.0.1:1/0 unreachable" in warning for warning in warnings)


@pytest.fixture
def own_redis_server(tmp_path) -> Iterator[tuple[str, Callable[[], None], Callable[[], None]]]:
    """A Redis server of the test's own, with functions that stop and restart it (an outage)."""
    if shutil.which("redis-server") is None:
        require_server("redis-server", "the redis-server program is not on PATH")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"redis://127.0.0.1:{port}/0"
    server: list[subprocess.Popen] = []

    def start() -> None:
        command = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(tmp_path)]
        server.append(subprocess.Popen(command, stdout=subprocess.DEVNULL))
        with redis.Redis.from_url(url) as client:
            for _ in range(100):
                try:
                    client.ping()
                    return
                except redis.ConnectionError:
                    time.sleep(0.05)
        pytest.fail(f"redis-server on port {port} did not start")

    def stop() -> None:
        server[-1].terminate()
        server[-1].wait(10)

    start()
    yield url, stop, start
    if server[-1].poll() is None:
        stop()


def test_redis_outage_fails_open_and_recovers(own_redis_server, caplog):
    url, stop, start = own_redis_server
    clock = FakeClock()
    limiter = RedisRateLimiter(1, url, "key", clock=clock)
    assert limiter.take("a") == 0.0 and limiter.take("a") > 0
    stop()
    with caplog.at_level(logging.WARNING, logger="service.limits"):
        for _ in range(3):
            assert limiter.take("a") == 0.0  # fail-open: allowed while Redis is out
            clock.now += limiter.RECONNECT_SECONDS  # each take tries Redis again
        assert len(caplog.records) == 1  # one warning for the whole outage
        assert f"rate limits off: Redis at {url} unreachable" in caplog.records[0].getMessage()
        start()  # empty again: no persistence
        assert limiter.take("a") == 0.0 and limiter.take("a") > 0  # limiting again
    assert "rate limits on again" in caplog.records[-1].getMessage() and len(caplog.records) == 2
