"""Jobs: train / generate / pack / preview, run in stages by whichever worker holds the job's lease.

A job runs as up to three stages: `train` (GPU: the identity LoRA), `render` (GPU: render the images and
disclose each one before it leaves memory) and `score` (CPU: likeness, checks, ranking, the report). A pack
job runs all three, a train job the first, a generate job the last two with an earlier train job's LoRA. A
pack with the `faceid` identity (IP-Adapter FaceID, no LoRA) and a preview (a few faceid images, before
anyone pays for training) run render and score only.

The database is the source of truth, whoever dispatches the stages (a thread in the service by default,
Celery workers with HEADSHOT_BROKER_URL: service/worker.py):

- A worker claims a stage with one conditional UPDATE (queued -> running, attempt + 1, its name, a lease of
  HEADSHOT_LEASE_SECONDS) and renews the lease from a heartbeat thread every third of that.
- Everything a stage writes to the database is fenced by (worker, attempt): an UPDATE that matches no row
  means the lease was lost (or the job was cancelled or erased), and the stage stops without writing more.
  Images are registered inside such a fenced transaction, so a worker that lost its lease registers nothing.
- Every worker runs a sweeper: a running job whose lease expired is queued again and its stage dispatched;
  the next worker resumes from the last training checkpoint in storage, and a render first removes what an
  unfinished render registered. A job whose workers went silent HEADSHOT_MAX_ATTEMPTS times is `interrupted`.
- Files go under keys that name the attempt (`jobs/<id>/render-<attempt>/`) and count only once a fenced
  UPDATE records the key; headshot rows are inserted in the job's final transaction, all at once.
"""

import datetime as dt
import logging
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import func, or_, update
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, select

from service.tables import Job
from service.webhooks import JOB_ENDINGS, job_ended

log = logging.getLogger("headshot.jobs")

STAGES = {
    "train": ("train",),
    "pack": ("train", "render", "score"),
    "generate": ("render", "score"),
    "preview": ("render", "score"),
}
QUEUE_FOR_STAGE = {"train": "gpu", "render": "gpu", "score": "cpu"}
# The share of a job's progress each stage ends at.
PROGRESS_AFTER = {
    "train": {"train": 1.0},
    "pack": {"train": 0.8, "render": 0.95, "score": 1.0},
    "generate": {"render": 0.9, "score": 1.0},
    "preview": {"render": 0.9, "score": 1.0},
}


def job_stages(kind: str, identity: str = "lora") -> tuple[str, ...]:
    """The stages a job runs: its kind's, without training when its identity method trains nothing (faceid)."""
    stages = STAGES[kind]
    return tuple(stage for stage in stages if stage != "train") if identity == "faceid" else stages


CHECKPOINT_FILE = "state.pt"


class LeaseLost(Exception):
    """Another worker took the job over, or it was cancelled or erased: stop without writing anything more."""


class JobCancelled(Exception):
    """The job's cancel flag was set; the stage stops at the next step."""


def worker_name(role: str) -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{role}"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class Lease:
    """A worker's hold on one stage of one job, for one attempt."""

    engine: object
    job_id: str
    worker: str
    attempt: int
    seconds: float
    lost: threading.Event = field(default_factory=threading.Event)

    def renew(self, session: Session, **changes) -> bool:
        """Extend the lease (and apply `changes`) inside `session`'s transaction; False if it is not ours."""
        statement = (
            update(Job)
            .where(
                Job.id == self.job_id,
                Job.worker == self.worker,
                Job.attempt == self.attempt,
                Job.status == "running",
            )
            .values(lease_expires_at=_now() + dt.timedelta(seconds=self.seconds), **changes)
            .execution_options(synchronize_session=False)
        )
        return session.exec(statement).rowcount == 1

    def hold(self, session: Session, **changes) -> None:
        """As `renew`, raising LeaseLost when the lease is gone: call it first in a transaction that must
        only commit while this worker holds the job (on PostgreSQL it also locks the job row until then)."""
        if self.lost.is_set() or not self.renew(session, **changes):
            self.lost.set()
            raise LeaseLost(f"job {self.job_id}: attempt {self.attempt} no longer holds the lease")
        if changes.get("status") in JOB_ENDINGS:
            job_ended(session, self.job_id)  # its webhooks, in the transaction that ends it

    def update(self, **changes) -> None:
        with Session(self.engine) as session:
            self.hold(session, **changes)
            session.commit()

    def cancel_requested(self) -> bool:
        with Session(self.engine) as session:
            job = session.get(Job, self.job_id)
            return job is None or job.cancel_requested


class Heartbeat:
    """Renews a lease every third of its length until stopped; marks it lost when renewal fails."""

    def __init__(self, lease: Lease):
        self.lease = lease
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{lease.job_id}", daemon=True)

    def __enter__(self) -> "Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _beat(self) -> None:
        while not self._stop.wait(self.lease.seconds / 3):
            try:
                with Session(self.lease.engine) as session:
                    held = self.lease.renew(session)
                    session.commit()
            except SQLAlchemyError as exc:  # the database is away: keep trying until the lease runs out
                log.warning("job %s: heartbeat failed: %s", self.lease.job_id, exc)
                continue
            if not held:
                self.lease.lost.set()
                return


def claim(engine, job_id: str, stage: str, worker: str, lease_seconds: float) -> Lease | None:
    """Take the job's `stage` if it is queued for it; None if another worker has it or it moved on."""
    now = _now()
    with Session(engine) as session:
        attempt = session.exec(
            update(Job)
            .where(Job.id == job_id, Job.status == "queued", Job.stage == stage)
            .values(
                status="running",
                attempt=Job.attempt + 1,
                worker=worker,
                lease_expires_at=now + dt.timedelta(seconds=lease_seconds),
                started_at=func.coalesce(Job.started_at, now),
                error=None,
            )
            .returning(Job.attempt)
            .execution_options(synchronize_session=False)
        ).scalar_one_or_none()
        session.commit()
    if attempt is None:
        return None
    return Lease(engine, job_id, worker, attempt, lease_seconds)


def dispatch_job(engine, dispatch: Callable[[str, str], None], job_id: str, stage: str) -> None:
    """Hand a queued stage to the workers and note when; a failed hand-off leaves it to the sweeper."""
    try:
        dispatch(job_id, stage)
    except Exception as exc:  # the broker is unreachable: the job stays queued and undispatched
        log.warning("job %s: could not dispatch %s (%s); the sweeper retries", job_id, stage, exc)
        return
    with Session(engine) as session:
        session.exec(
            update(Job)
            .where(Job.id == job_id, Job.status == "queued", Job.stage == stage)
            .values(dispatched_at=_now())
            .execution_options(synchronize_session=False)
        )
        session.commit()


def sweep(engine, dispatch: Callable[[str, str], None], max_attempts: int) -> list[str]:
    """Re-queue running jobs whose lease expired and dispatch queued jobs nobody was told about.

    Safe to run in every worker at once: each change is a conditional UPDATE that only one sweeper wins.
    Returns the ids of the jobs it dispatched.
    """
    now = _now()
    with Session(engine) as session:
        lapsed = or_(Job.lease_expires_at < now, Job.lease_expires_at.is_(None))  # none: running before leases
        # rows another transaction holds (its worker is writing, or frozen mid-write) wait for the next round
        expired = session.exec(
            select(Job).where(Job.status == "running", lapsed).with_for_update(skip_locked=True)
        ).all()
        for job in expired:
            if job.cancel_requested:
                changes = {"status": "cancelled", "finished_at": now}
            elif job.lease_losses + 1 >= max_attempts:
                changes = {
                    "status": "interrupted",
                    "error": f"the worker running its {job.stage} stage stopped {job.lease_losses + 1} times; "
                    "resume it",
                }
            else:
                changes = {"status": "queued", "dispatched_at": None}
            swept = session.exec(
                update(Job)
                .where(Job.id == job.id, Job.attempt == job.attempt, Job.status == "running", lapsed)
                .values(worker=None, lease_expires_at=None, lease_losses=Job.lease_losses + 1, **changes)
                .execution_options(synchronize_session=False)
            ).rowcount
            if swept and changes["status"] != "queued":
                job_ended(session, job.id)
            if changes["status"] == "queued":
                log.warning("job %s: worker %s went silent at %s; queued again", job.id, job.worker, job.stage)
        session.commit()
        waiting = session.exec(select(Job.id, Job.stage).where(Job.status == "queued", Job.dispatched_at.is_(None)))
        waiting = waiting.all()
    for job_id, stage in waiting:
        dispatch_job(engine, dispatch, job_id, stage)
    return [job_id for job_id, _ in waiting]


class LeasedRegistry:
    """The soft-binding registry as a render stage sees it: each image is registered with its job, in a
    transaction that commits only while the stage still holds the job's lease."""

    def __init__(self, registry, lease: Lease):
        self.registry = registry
        self.lease = lease

    def add(self, entry) -> None:
        self.registry.add(entry, job_id=self.lease.job_id, fence=self.lease.hold)

    def find_payload(self, payload: int):
        return self.registry.find_payload(payload)

    def candidates(self, query, frame_threshold: int, face_threshold: int, pdq_threshold: int = -1):
        return self.registry.candidates(query, frame_threshold, face_threshold, pdq_threshold)

    def count(self) -> int:
        return self.registry.count()
