"""Leases, fencing and the sweeper (service/jobs.py) on SQLite and PostgreSQL, without models."""

import datetime as dt
import threading
import time

import pytest
from sqlmodel import Session

from provenance.fingerprint import Fingerprints
from provenance.registry import RegistryEntry
from service.database import engine_for
from service.jobs import LeasedRegistry, LeaseLost, claim, sweep
from service.registry import DatabaseRegistry
from service.services import Services
from service.settings import Settings
from service.stages import run_stage
from service.tables import Job, Subject


@pytest.fixture
def engine(database_url):
    return engine_for(database_url)


def _job(engine, **fields) -> str:
    with Session(engine) as session:
        subject = Subject(
            tenant="t",
            display_name="x",
            consent_given_by="x",
            consent_scope='["training", "generation"]',
            consent_text_version="v1",
            consent_given_at=dt.datetime.now(dt.UTC),
        )
        session.add(subject)
        session.flush()
        job = Job(tenant="t", subject_id=subject.id, kind="pack", parameters="{}", created_by="test", **fields)
        session.add(job)
        session.commit()
        return job.id


def _read(engine, job_id: str) -> Job:
    with Session(engine) as session:
        return session.get(Job, job_id)


def _entry(payload: int) -> RegistryEntry:
    return RegistryEntry(
        payload=payload,
        manifest_label=f"urn:c2pa:{payload:x}",
        fingerprints=Fingerprints(frame=(payload,) * 7, face=None),
        signed_sha256="ab" * 32,
        mime_type="image/png",
        manifest={},
    )


def test_only_one_worker_claims_a_stage(engine):
    job_id = _job(engine)
    results = []
    threads = [
        threading.Thread(target=lambda name=name: results.append(claim(engine, job_id, "train", name, 30)))
        for name in ("a", "b", "c")
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    leases = [lease for lease in results if lease is not None]
    assert len(leases) == 1 and leases[0].attempt == 1
    job = _read(engine, job_id)
    assert job.status == "running" and job.worker == leases[0].worker and job.lease_expires_at is not None
    assert claim(engine, job_id, "train", "d", 30) is None  # running: nobody else
    assert claim(engine, _job(engine), "render", "e", 30) is None  # a message for a stage the job is not at


def test_a_lost_lease_refuses_every_write(engine):
    job_id = _job(engine)
    lease = claim(engine, job_id, "train", "slow", lease_seconds=0.01)
    registry = LeasedRegistry(DatabaseRegistry(engine), lease)
    registry.add(_entry(1))
    time.sleep(0.05)  # the worker went silent
    assert sweep(engine, lambda *_: None, max_attempts=3) == [job_id]  # expired: queued again and dispatched
    with pytest.raises(LeaseLost):
        lease.update(step=5)
    with pytest.raises(LeaseLost):
        registry.add(_entry(2))
    assert registry.find_payload(2) is None and registry.find_payload(1) is not None
    job = _read(engine, job_id)
    assert job.status == "queued" and job.step == 0 and job.lease_losses == 1 and job.dispatched_at is not None

    successor = claim(engine, job_id, "train", "next", 30)
    assert successor.attempt == 2
    successor.update(step=6)
    assert _read(engine, job_id).step == 6


def test_sweeper_decides_by_lease_and_history(engine):
    past = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)
    future = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=60)
    running = {"status": "running", "stage": "train", "attempt": 1, "worker": "w"}
    alive = _job(engine, **running, lease_expires_at=future)
    dead = _job(engine, **running, lease_expires_at=past)
    cancelled = _job(engine, **running, lease_expires_at=past, cancel_requested=True)
    worn_out = _job(engine, **running, lease_expires_at=past, lease_losses=2)
    undispatched = _job(engine, stage="score")
    before_leases = _job(engine, status="running", stage="train")  # running when migration 0002 ran
    dispatched = []

    assert sorted(sweep(engine, lambda job_id, stage: dispatched.append((job_id, stage)), 3)) == sorted(
        [dead, undispatched, before_leases]
    )
    assert sorted(dispatched) == sorted([(dead, "train"), (undispatched, "score"), (before_leases, "train")])
    assert _read(engine, alive).status == "running"
    assert _read(engine, dead).status == "queued" and _read(engine, dead).worker is None
    assert _read(engine, cancelled).status == "cancelled"
    interrupted = _read(engine, worn_out)
    assert interrupted.status == "interrupted" and "stopped 3 times" in interrupted.error
    assert sweep(engine, lambda *_: pytest.fail("dispatched twice"), 3) == []


def test_a_broker_that_is_down_leaves_the_job_to_the_sweeper(engine):
    job_id = _job(engine)

    def unreachable(job_id, stage):
        raise ConnectionError("broker down")

    assert sweep(engine, unreachable, 3) == [job_id]
    assert _read(engine, job_id).dispatched_at is None  # still waiting: the next sweep tries again
    assert sweep(engine, lambda *_: None, 3) == [job_id]
    assert _read(engine, job_id).dispatched_at is not None


def test_a_stale_message_runs_nothing(engine, database_url, tmp_path):
    job_id = _job(engine, stage="score")
    settings = Settings(data_dir=tmp_path, database_url=database_url)
    run_stage(Services(settings), job_id, "train", worker="w", dispatch=lambda *_: pytest.fail("dispatched"))
    job = _read(engine, job_id)
    assert job.status == "queued" and job.attempt == 0


def test_an_unreachable_broker_does_not_fail_the_request(engine, database_url, tmp_path):
    """The real Celery client on a port nobody listens on: the job stays queued for the sweeper."""
    from service.jobs import dispatch_job
    from service.worker import CeleryDispatcher

    job_id = _job(engine)
    dispatcher = CeleryDispatcher(
        Services(Settings(data_dir=tmp_path, database_url=database_url, broker_url="redis://127.0.0.1:1/0"))
    )
    dispatch_job(engine, dispatcher.dispatch, job_id, "train")
    job = _read(engine, job_id)
    assert job.status == "queued" and job.dispatched_at is None
    dispatcher.stop()


def test_scratch_left_by_a_dead_worker_is_removed(engine, database_url, tmp_path):
    import os

    from service.stages import remove_stale_scratch

    settings = Settings(data_dir=tmp_path, database_url=database_url, lease_seconds=60)
    running = _job(engine, status="running", stage="train", attempt=2, worker="alive")
    finished = _job(engine, status="succeeded", stage="score", attempt=4)
    folders = {
        "current": settings.resolved_work_dir / running / "train-2",
        "earlier attempt": settings.resolved_work_dir / running / "train-1",
        "finished job": settings.resolved_work_dir / finished / "render-3",
        "erased job": settings.resolved_work_dir / "gone" / "train-1",
        "just claimed": settings.resolved_work_dir / finished / "score-5",
    }
    for name, folder in folders.items():
        (folder / "lora").mkdir(parents=True)
        (folder / "lora" / "state.pt").write_bytes(b"weights")
        if name != "just claimed":
            old = time.time() - 120
            os.utime(folder, (old, old))
    removed = remove_stale_scratch(Services(settings))
    assert sorted(removed) == sorted(folders[name] for name in ("earlier attempt", "finished job", "erased job"))
    assert folders["current"].exists() and folders["just claimed"].exists()
    assert not (settings.resolved_work_dir / "gone").exists()
