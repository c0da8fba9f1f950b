"""Jobs: train / generate / pack, run in stages by whichever worker holds the job's lease.

A job runs as up to three stages: `train` (GPU: the identity LoRA), `render` (GPU: render the images and
disclose each one before it leaves memory) and `score` (CPU: likeness, checks, ranking, the report). A pack
job runs all three, a train job the first, a generate job the last two with an earlier train job's LoRA.

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

import contextlib
import datetime as dt
import json
import logging
import os
import queue
import shutil
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import func, or_, update
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, select

from service.background import PeriodicWork
from service.files import private_directory
from service.tables import Headshot, Job, Photo, Subject
from service.webhooks import JOB_ENDINGS, job_ended

log = logging.getLogger("headshot.jobs")

STAGES = {"train": ("train",), "pack": ("train", "render", "score"), "generate": ("render", "score")}
QUEUE_FOR_STAGE = {"train": "gpu", "render": "gpu", "score": "cpu"}
# The share of a job's progress each stage ends at.
PROGRESS_AFTER = {
    "train": {"train": 1.0},
    "pack": {"train": 0.8, "render": 0.95, "score": 1.0},
    "generate": {"render": 0.9, "score": 1.0},
}
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
                    "error": f"the worker running it stopped {job.lease_losses + 1} times; resume it",
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


def remove_stale_scratch(settings) -> list[Path]:
    """Remove scratch folders whose stage no longer runs (their worker died); they hold copies of a
    person's LoRA. A folder is `<work dir>/<job>/<stage>-<attempt>`; one younger than a lease is left alone,
    as its stage may have been claimed a moment ago. Returns what it removed."""
    root = settings.resolved_work_dir
    if not root.is_dir():
        return []
    removed = []
    young = time.time() - settings.lease_seconds
    with Session(_engine(settings)) as session:
        for job_folder in (folder for folder in root.iterdir() if folder.is_dir()):
            job = session.get(Job, job_folder.name)
            running = f"{job.stage}-{job.attempt}" if job is not None and job.status == "running" else None
            for stage_folder in job_folder.iterdir():
                if stage_folder.name != running and stage_folder.stat().st_mtime < young:
                    shutil.rmtree(stage_folder, ignore_errors=True)
                    removed.append(stage_folder)
            with contextlib.suppress(OSError):
                job_folder.rmdir()
    return removed


def run_stage(settings, job_id: str, stage: str, worker: str, dispatch: Callable[[str, str], None]) -> None:
    """Claim and run one stage of a job, then hand the next stage on (or finish the job)."""
    lease = claim(_engine(settings), job_id, stage, worker, settings.lease_seconds)
    if lease is not None:
        run_claimed_stage(settings, lease, stage, dispatch)


def run_claimed_stage(settings, lease: Lease, stage: str, dispatch: Callable[[str, str], None]) -> None:
    """Run a stage this worker holds the lease of; a cancel is obeyed at every phase (loading, encoding, each
    training step, each batch of images)."""
    from generation.pack import PackError
    from generation.training import TrainingError, TrainingStopped

    scratch = private_directory(settings.resolved_work_dir / lease.job_id / f"{stage}-{lease.attempt}")
    stage_run = StageRun(settings, lease, stage, scratch)
    try:
        with Heartbeat(lease):
            stage_run.load()
            outputs = {"train": stage_run.train, "render": stage_run.render, "score": stage_run.score}[stage]()
        if outputs is not None:
            stage_run.hand_on(outputs, dispatch)
    except LeaseLost:
        stage_run.abandon()
    except (TrainingStopped, JobCancelled):
        stage_run.finish(status="cancelled")
    except (PackError, TrainingError) as exc:
        stage_run.finish(status="failed", error=str(exc))
    except Exception as exc:  # recorded on the job; the worker keeps serving
        log.exception("job %s: %s failed", lease.job_id, stage)
        stage_run.finish(status="failed", error=f"{type(exc).__name__}: {exc}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        with contextlib.suppress(OSError):
            scratch.parent.rmdir()  # the job's folder, once no other stage of it runs here


class StageRun:
    """One attempt at one stage of a job: reads inputs from storage, writes outputs under its attempt's keys."""

    def __init__(self, settings, lease: Lease, stage: str, scratch: Path):
        self.settings = settings
        self.lease = lease
        self.stage = stage
        self.engine = lease.engine
        self.storage = settings.storage()
        self.scratch = scratch
        self.prefix = f"jobs/{lease.job_id}/"

    def load(self) -> None:
        """Read the job; a job that is gone or whose subject withdrew consent is not run."""
        with Session(self.engine) as session:
            job = session.get(Job, self.lease.job_id)
            if job is None:
                raise LeaseLost(f"job {self.lease.job_id} was erased")
            subject = session.get(Subject, job.subject_id)
            if job.cancel_requested or subject is None or subject.consent_withdrawn_at is not None:
                raise JobCancelled
            self.kind = job.kind
            self.subject_id = job.subject_id
            self.parameters = json.loads(job.parameters)
            self.lora_key = job.lora_key
            self.render_key = job.render_key
            if self.kind == "generate":
                trained = session.get(Job, self.parameters.get("lora_job_id"))
                self.lora_key = trained.lora_key if trained else None
        self.start_progress = self._progress_before(self.stage)

    # -- the stages ------------------------------------------------------------------------------

    def train(self) -> dict | None:
        from generation.pack import accept_references, model_record
        from generation.training import LORA_FILE, LikenessCheck, train_identity_lora

        backend = self.settings.face_analyser()
        identity, decisions, accepted = accept_references(self.references(), self.provenance(), backend)
        model = self.settings.load_sdxl()
        self._stop_if_cancelled()
        lora_dir = self.scratch / "lora"
        self._restore_checkpoint(lora_dir / "checkpoints")
        result = train_identity_lora(
            model.pipeline,
            [image for _, image in accepted],
            lora_dir,
            self.training_config(),
            progress=self._on_training,
            record=model_record(model, decisions),
            on_checkpoint=self._save_checkpoint,
            stop_requested=self.lease.cancel_requested,
            check=LikenessCheck(identity, backend),
            names=[reference.name for reference, _ in accepted],
        )
        if result.lora_path is None:
            raise JobCancelled
        lora_key = f"{self.prefix}lora-{self.lease.attempt}/"
        for name in (LORA_FILE, "training.json"):
            self.storage.upload(lora_key + name, lora_dir / name)
        return {
            "lora_key": lora_key,
            "lora_sha256": result.lora_sha256,
            "model_sha256": model.sha256,
            "trained_at": _now(),
        }

    def render(self) -> dict:
        from generation.pack import PackError, Provenance, render_disclosed, training_record
        from generation.training import LORA_FILE

        if not self.lora_key:
            raise PackError("the job's LoRA is missing (was its train job erased?)")
        lora_dir = self.scratch / "lora"
        for name in (LORA_FILE, "training.json"):
            self.storage.download(self.lora_key + name, lora_dir / name)
        record = training_record(lora_dir)
        accepted = [reference["sha256"] for reference in record.get("references", []) if reference.get("accepted")]
        model = self.settings.load_sdxl()
        self._stop_if_cancelled()
        registry = self.settings.registry()
        registry.forget_job(self.lease.job_id)  # what an earlier, unfinished attempt registered
        provenance = Provenance(
            self.settings.credentials.signing_identity(),
            LeasedRegistry(registry, self.lease),
            self.settings.trust(),
            self.settings.image_limits,
        )
        rendered = render_disclosed(model, lora_dir, accepted, self.pack_settings(), provenance, self._on_image)
        render_key = f"{self.prefix}render-{self.lease.attempt}/"
        for image in rendered.images:
            self.storage.write(f"{render_key}images/{image.name}", image.data)
        description = {
            "model": rendered.model,
            "lora": {"key": self.lora_key, "sha256": rendered.lora["sha256"]},
            "images": [image.describe() for image in rendered.images],
        }
        self.storage.write(render_key + "rendered.json", json.dumps(description, indent=2).encode())
        return {"render_key": render_key, "lora_sha256": rendered.lora["sha256"], "model_sha256": model.sha256}

    def score(self) -> None:
        from generation.pack import (
            DisclosedImage,
            RenderedPack,
            accept_references,
            contact_sheet,
            pack_report,
            score_disclosed,
        )

        rendered = json.loads(self.storage.read(self.render_key + "rendered.json"))
        images = [
            DisclosedImage.described(item, self.storage.read(f"{self.render_key}images/{item['name']}"))
            for item in rendered["images"]
        ]
        provenance = self.provenance()
        backend = self.settings.face_analyser()
        identity, decisions, _ = accept_references(self.references(), provenance, backend)
        training = json.loads(self.storage.read(rendered["lora"]["key"] + "training.json"))
        entries = score_disclosed(images, identity, backend, self.pack_settings().top_k, provenance)
        report = pack_report(
            RenderedPack(rendered["model"], rendered["lora"], images),
            training.get("references", decisions),
            identity,
            training,
            entries,
        )
        self.storage.write(self.render_key + "report.json", json.dumps(report, indent=2).encode())
        self.storage.write(self.render_key + "index.html", contact_sheet(report).encode())
        with Session(self.engine) as session:
            self.lease.hold(session, status="succeeded", progress=1.0, finished_at=_now(), worker=None)
            job = session.get(Job, self.lease.job_id)
            for entry in entries:
                session.add(
                    Headshot(
                        tenant=job.tenant,
                        subject_id=job.subject_id,
                        job_id=job.id,
                        storage_key=self.render_key + entry["file"],
                        manifest_label=entry["manifest_label"],
                        watermark_payload=entry["watermark_payload"],
                        style=entry["style"],
                        seed=entry["seed"],
                        report=json.dumps(entry),
                        kept=entry["kept"],
                    )
                )
            session.commit()
        self._remove_other_attempts("render-", keep=self.render_key)
        return None

    # -- moving on -------------------------------------------------------------------------------

    def hand_on(self, outputs: dict, dispatch) -> None:
        """Record the stage's outputs and queue the next stage (or finish), in one fenced UPDATE."""
        stages = STAGES[self.kind]
        following = stages[stages.index(self.stage) + 1] if self.stage != stages[-1] else None
        progress = PROGRESS_AFTER[self.kind][self.stage]
        if following is None:
            self.lease.update(**outputs, status="succeeded", progress=progress, finished_at=_now(), worker=None)
        else:
            self.lease.update(
                **outputs, status="queued", stage=following, progress=progress, worker=None, dispatched_at=None
            )
        for key, prefix in (("lora_key", "lora-"), ("render_key", "render-")):
            if key in outputs:
                self._remove_other_attempts(prefix, keep=outputs[key])
        if following is not None:
            dispatch_job(self.engine, dispatch, self.lease.job_id, following)

    def finish(self, status: str, error: str | None = None) -> None:
        """End the job as cancelled or failed; an unfinished render's images never count, so they go."""
        try:
            self.lease.update(status=status, error=error, finished_at=_now(), worker=None)
        except LeaseLost:
            self.abandon()
            return
        if self.stage == "render":
            self.settings.registry().forget_job(self.lease.job_id)
            self.storage.delete(f"{self.prefix}render-{self.lease.attempt}/")

    def abandon(self) -> None:
        """The lease is gone: remove what this attempt wrote; if the job itself is gone (erased), all of it."""
        with Session(self.engine) as session:
            erased = session.get(Job, self.lease.job_id) is None
        if erased:
            self.storage.delete(self.prefix)
            self.settings.registry().forget_job(self.lease.job_id)
        else:
            for name in (f"lora-{self.lease.attempt}/", f"render-{self.lease.attempt}/"):
                self.storage.delete(self.prefix + name)
        log.warning("job %s: attempt %s lost its lease; stopped", self.lease.job_id, self.lease.attempt)

    # -- inputs ----------------------------------------------------------------------------------

    def references(self) -> list:
        from generation.pack import ReferenceInput

        with Session(self.engine) as session:
            photos = session.exec(select(Photo).where(Photo.subject_id == self.subject_id, Photo.accepted)).all()
        return [
            ReferenceInput(photo.sha256, self.storage.read(photo.storage_key), original_sha256=photo.sha256)
            for photo in photos
        ]

    def provenance(self):
        """What reading references and verifying outputs needs (no signing: that is the render stage's)."""
        from generation.pack import Provenance

        return Provenance(None, None, self.settings.trust(), self.settings.image_limits)

    def training_config(self):
        from generation.training import TrainingConfig

        parameters = self.parameters
        return TrainingConfig(
            steps=int(parameters["steps"]) if parameters.get("steps") else None,
            batch_size=int(parameters.get("batch_size", 2)),
            class_word=str(parameters.get("class_word", "person")),
            gradient_checkpointing=self.settings.gradient_checkpointing,
            rank=int(parameters.get("rank", 16)),
            alpha=int(parameters.get("alpha", 16)),
            learning_rate=float(parameters.get("learning_rate", 1e-4)),
            resolution=int(parameters.get("resolution") or parameters.get("size", 1024)),
            seed=int(parameters.get("seed", 0)),
            checkpoint_every=int(parameters.get("checkpoint_every", 100)),
        )

    def pack_settings(self):
        from generation.pack import PackSettings
        from generation.presets import load_presets, select_presets

        parameters = self.parameters
        return PackSettings(
            select_presets(load_presets(self.settings.presets_file), parameters.get("styles")),
            count=int(parameters.get("count", 4)),
            inference_steps=int(parameters.get("inference_steps", 30)),
            size=int(parameters.get("size", 1024)),
            seed=int(parameters.get("seed", 0)),
            top_k=int(parameters.get("top_k", 10)),
            training=self.training_config(),
        )

    # -- progress and checkpoints ----------------------------------------------------------------

    def _stop_if_cancelled(self) -> None:
        if self.lease.cancel_requested():
            raise JobCancelled

    def _on_training(self, progress) -> None:
        """After each step (training asks `lease.cancel_requested` itself before each one)."""
        if self.lease.lost.is_set():
            raise LeaseLost(f"job {self.lease.job_id}: the lease was lost")
        end = PROGRESS_AFTER[self.kind]["train"]
        loss = {"loss": progress.loss} if progress.loss is not None else {}  # read from the device every few steps
        self.lease.update(
            step=progress.step,
            total_steps=progress.total,
            eta_seconds=progress.eta_seconds,
            progress=end * progress.step / progress.total,
            **loss,
        )

    def _on_image(self, done: int, total: int) -> None:
        """After each batch of images: before the next one is rendered."""
        if self.lease.lost.is_set():
            raise LeaseLost(f"job {self.lease.job_id}: the lease was lost")
        self._stop_if_cancelled()
        end = PROGRESS_AFTER[self.kind]["render"]
        self.lease.update(progress=self.start_progress + (end - self.start_progress) * done / total)

    def _save_checkpoint(self, folder: Path) -> None:
        """Copy a new checkpoint to storage, and remove all but the latest KEEP_CHECKPOINTS there."""
        from generation.training import KEEP_CHECKPOINTS

        self.storage.upload(f"{self.prefix}checkpoints/{folder.name}/{CHECKPOINT_FILE}", folder / CHECKPOINT_FILE)
        stored = sorted({key.split("/")[-2] for key in self.storage.keys(f"{self.prefix}checkpoints/")})
        for older in stored[:-KEEP_CHECKPOINTS]:
            self.storage.delete(f"{self.prefix}checkpoints/{older}/")

    def _restore_checkpoint(self, checkpoints: Path) -> None:
        """Put the latest checkpoint in storage where training looks for it, so it resumes from there."""
        stored = [key for key in self.storage.keys(f"{self.prefix}checkpoints/") if key.endswith(CHECKPOINT_FILE)]
        if stored:
            latest = max(stored, key=lambda key: key.split("/")[-2])
            self.storage.download(latest, checkpoints / latest.split("/")[-2] / CHECKPOINT_FILE)

    def _remove_other_attempts(self, kind: str, keep: str) -> None:
        folders = {key[len(self.prefix) :].split("/")[0] for key in self.storage.keys(self.prefix)}
        for folder in folders:
            if folder.startswith(kind) and f"{self.prefix}{folder}/" != keep:
                self.storage.delete(f"{self.prefix}{folder}/")

    def _progress_before(self, stage: str) -> float:
        stages = STAGES[self.kind]
        index = stages.index(stage)
        return PROGRESS_AFTER[self.kind][stages[index - 1]] if index else 0.0


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

    def candidates(self, query, frame_threshold: int, face_threshold: int):
        return self.registry.candidates(query, frame_threshold, face_threshold)

    def count(self) -> int:
        return self.registry.count()


class InProcessWorker:
    """The default dispatcher: one thread in the service process runs every stage, in dispatch order.

    Stages dispatched to it live in memory, so at start it dispatches every queued job again (a claim
    that loses to another process is a no-op). Between stages it sweeps for expired leases. Webhook
    deliveries and audit anchors run beside it (service/background.py), never on its thread.
    """

    def __init__(self, settings):
        self.settings = settings
        self.worker = worker_name("in-process")
        self._queue: queue.Queue[tuple[str, str] | None] = queue.Queue()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        remove_stale_scratch(self.settings)
        engine = _engine(self.settings)
        with Session(engine) as session:
            queued = session.exec(select(Job.id, Job.stage).where(Job.status == "queued")).all()
        for job_id, stage in queued:
            self.dispatch(job_id, stage)
        self._thread = threading.Thread(target=self._work, name="headshot-jobs", daemon=True)
        self._thread.start()
        self._periodic = PeriodicWork(self.settings)  # webhook deliveries and audit anchors, on threads of their own
        self._periodic.start()

    def stop(self) -> None:
        if self._thread:
            self._queue.put(None)
            self._thread.join(timeout=30)
            self._periodic.stop()

    def dispatch(self, job_id: str, stage: str) -> None:
        self._queue.put((job_id, stage))

    def _work(self) -> None:
        interval = max(0.5, self.settings.lease_seconds / 2)
        while True:
            try:
                item = self._queue.get(timeout=interval)
            except queue.Empty:
                self._sweep()
                continue
            if item is None:
                return
            run_stage(self.settings, *item, worker=self.worker, dispatch=self.dispatch)

    def _sweep(self) -> None:
        try:
            sweep(_engine(self.settings), self.dispatch, self.settings.max_attempts)
        except SQLAlchemyError as exc:
            log.warning("job sweep failed: %s", exc)


def _engine(settings):
    from service.database import engine_for

    return engine_for(settings.resolved_database_url)
