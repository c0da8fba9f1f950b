"""Scale-out for real: an API process and Celery workers (separate processes) on PostgreSQL and Redis.

Every process has its own data directory; they share only what the settings name: the database, the
broker, the storage directory and the signing credentials. A GPU worker is killed (SIGKILL), or frozen,
mid-training; another one takes the job over once the lease expires, resumes from the last checkpoint,
and the job finishes exactly once.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine
from sqlmodel import Session, select

from service.database import upgrade
from service.registry import RegisteredImage
from service.tables import Headshot, Job
from tests.conftest import FACES, fresh_postgres_database, require_server

HEADSHOT = str(Path(sys.executable).with_name("headshot"))
BROKER_URL = os.environ.get("HEADSHOT_TEST_CELERY_REDIS", "redis://127.0.0.1:6379/14")
CONSENT = {"given_by": "Ada Example", "scope": ["training", "generation"], "text_version": "consent-v3"}
PACK = {
    "steps": 40,
    "checkpoint_every": 5,
    "rank": 4,
    "alpha": 4,
    "resolution": 64,
    "size": 128,
    "count": 1,
    "inference_steps": 2,
    "styles": ["corporate-grey", "outdoor-natural"],
    "top_k": 1,
}


@pytest.fixture
def broker():
    import redis

    client = redis.Redis.from_url(BROKER_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        require_server("Redis", f"{BROKER_URL}: {exc}")
    client.flushdb()  # this database number is the test's own (HEADSHOT_TEST_CELERY_REDIS)
    yield BROKER_URL
    client.flushdb()


@pytest.fixture
def database():
    with fresh_postgres_database() as url:
        engine = create_engine(url)
        upgrade(engine)  # `headshot db upgrade`, once, before any replica starts
        yield url, engine
        engine.dispose()


class Cluster:
    """Processes started with `headshot ...`, each with its own data directory and log file."""

    def __init__(self, root: Path, shared_env: dict):
        self.root = root
        self.shared_env = shared_env
        self.processes: dict[str, subprocess.Popen] = {}

    def env(self, name: str) -> dict:
        return {**os.environ, **self.shared_env, "HEADSHOT_DATA_DIR": str(self.root / name)}

    def start(self, name: str, *arguments: str) -> subprocess.Popen:
        log = open(self.root / f"{name}.log", "wb")  # noqa: SIM115 (closed with the process)
        process = subprocess.Popen([HEADSHOT, *arguments], env=self.env(name), stdout=log, stderr=subprocess.STDOUT)
        self.processes[name] = process
        return process

    def run(self, name: str, *arguments: str) -> str:
        result = subprocess.run([HEADSHOT, *arguments], env=self.env(name), capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def logs(self) -> str:
        return "\n".join(f"--- {path.name}\n{path.read_text()[-3000:]}" for path in sorted(self.root.glob("*.log")))

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(condition, timeout: float, what: str, cluster: Cluster):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}\n{cluster.logs()}")


@pytest.mark.parametrize("fate", ["killed", "frozen"])
def test_a_worker_lost_mid_training_loses_nothing(fate, tmp_path, tiny_model, database, broker):
    """killed: SIGKILL. frozen: SIGSTOP until another worker has taken the job over, then SIGCONT: the old
    worker wakes up still training, finds its lease gone at its next write and stops, writing nothing."""
    url, engine = database
    shared = tmp_path / "shared"
    cluster = Cluster(
        tmp_path,
        {
            "HEADSHOT_DATABASE_URL": url,
            "HEADSHOT_BROKER_URL": broker,
            "HEADSHOT_STORAGE_DIR": str(shared / "storage"),
            "HEADSHOT_CREDENTIALS_DIR": str(shared / "credentials"),
            "HEADSHOT_SDXL_MODEL": str(tiny_model),
            "HEADSHOT_LEASE_SECONDS": "3",
            "HEADSHOT_RATE_LIMIT_PER_MINUTE": "100000",
            "OMP_NUM_THREADS": "1",
        },
    )
    port = free_port()
    try:
        studio_key = cluster.run("cli", "keys", "create", "--role", "studio", "--name", "studio-a").split()[-1]
        verifier_key = cluster.run("cli", "keys", "create", "--role", "verifier", "--name", "recruiter").split()[-1]
        cluster.start("api", "serve", "--port", str(port))
        first_gpu = cluster.start("gpu-1", "worker", "--queues", "gpu", "--name", "gpu-1")
        cluster.start("cpu-1", "worker", "--queues", "cpu", "--name", "cpu-1")
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
        wait_until(lambda: _healthy(client), 60, "the API", cluster)
        studio = {"Authorization": f"Bearer {studio_key}"}

        subject = client.post("/v1/subjects", json={"display_name": "Ada", "consent": CONSENT}, headers=studio)
        subject_id = subject.json()["id"]
        for name in ("img1.jpg", "img2.jpg", "img4.jpg"):
            upload = client.post(
                f"/v1/subjects/{subject_id}/photos",
                files={"file": (name, (FACES / name).read_bytes(), "image/jpeg")},
                headers=studio,
            )
            assert upload.status_code == 201 and upload.json()["accepted"], upload.text
        job = client.post(f"/v1/subjects/{subject_id}/jobs", json={"kind": "pack", "parameters": PACK}, headers=studio)
        assert job.status_code == 202, job.text
        job_id = job.json()["id"]

        def read_job() -> dict:
            return client.get(f"/v1/jobs/{job_id}", headers=studio).json()

        training = wait_until(
            lambda: (state := read_job())["worker"] == "gpu-1" and state["step"] >= 12 and state,
            180,
            "step 12",
            cluster,
        )
        first_gpu.send_signal(signal.SIGKILL if fate == "killed" else signal.SIGSTOP)
        if fate == "killed":
            first_gpu.wait()
        killed_at = read_job()["step"]
        assert training["stage"] == "train" and killed_at < PACK["steps"]

        cluster.start("gpu-2", "worker", "--queues", "gpu", "--name", "gpu-2")
        taken_over = wait_until(lambda: (state := read_job())["worker"] == "gpu-2" and state, 120, "gpu-2", cluster)
        assert taken_over["stage"] == "train" and taken_over["attempt"] == 2  # the stage's second attempt
        if fate == "frozen":
            first_gpu.send_signal(signal.SIGCONT)
            wait_until(lambda: "lost its lease" in (tmp_path / "gpu-1.log").read_text(), 60, "gpu-1 to stop", cluster)
            assert first_gpu.poll() is None  # it lives on, serving its queue
        finished = wait_until(
            lambda: (state := read_job())["status"] not in ("queued", "running") and state, 240, "the end", cluster
        )
        assert finished["status"] == "succeeded", f"{finished}\n{cluster.logs()}"
        assert finished["step"] == PACK["steps"] and finished["progress"] == 1.0

        with Session(engine) as session:
            row = session.get(Job, job_id)
            headshots = session.exec(select(Headshot).where(Headshot.job_id == job_id)).all()
            registered = session.exec(select(RegisteredImage).where(RegisteredImage.job_id == job_id)).all()
        # train by gpu-1 (killed), train again by gpu-2, render, score: four claims; the lost lease counted
        # against the train stage only
        assert row.attempt == 4 and row.lease_losses == 0 and row.worker is None
        assert (finished["stage"], finished["attempt"]) == ("score", 1)
        # exactly one pack: one image per style, each registered once, nothing left of other attempts
        assert len(headshots) == 2
        assert sorted(image.manifest_label for image in registered) == sorted(h.manifest_label for h in headshots)
        storage = shared / "storage" / "jobs" / job_id
        assert sorted(path.name for path in storage.iterdir()) == ["checkpoints", "lora-2", "render-3"]
        report = json.loads((storage / "render-3" / "report.json").read_text())
        resumed_from = report["training"]["resumed_from"]
        assert resumed_from > 0 and resumed_from % PACK["checkpoint_every"] == 0 and resumed_from <= killed_at
        assert len(report["training"]["loss"]) == PACK["steps"]

        listing = client.get(f"/v1/subjects/{subject_id}/headshots", headers=studio).json()
        assert len(listing["headshots"]) == 2 and len(listing["top_k"]) == 1
        delivered = client.get(listing["headshots"][0]["file"], headers=studio)
        assert delivered.status_code == 200
        verdict = client.post(
            "/v1/verify",
            files={"file": ("h.png", delivered.content, "image/png")},
            headers={"Authorization": f"Bearer {verifier_key}"},
        ).json()
        assert verdict["label"] == "ai_verified", verdict
    finally:
        cluster.stop()


def _healthy(client: httpx.Client) -> bool:
    try:
        return client.get("/healthz").status_code == 200
    except httpx.TransportError:
        return False
