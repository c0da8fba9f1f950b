"""The bodies of a job's stages: train, render, score (the lease protocol they run under is service/jobs.py).

A stage reads its inputs from storage and the job's row, writes outputs under its attempt's keys
(`jobs/<id>/lora-<attempt>/`, `jobs/<id>/render-<attempt>/`) and hands on to the next stage in one fenced
UPDATE. Everything a stage needs to know about its job is read once, into a `StageContext`.
"""

import contextlib
import datetime as dt
import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlmodel import Session, select

from service.files import private_directory
from service.job_parameters import JobParameters
from service.jobs import (
    PROGRESS_AFTER,
    Heartbeat,
    JobCancelled,
    Lease,
    LeasedRegistry,
    LeaseLost,
    claim,
    dispatch_job,
    job_stages,
)
from service.tables import Headshot, Job, Photo, Subject

log = logging.getLogger("headshot.jobs")

CHECKPOINT_FILE = "state.pt"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class StageContext:
    """What a stage knows about its job, read once when the stage starts."""

    job_id: str
    job_kind: str  # train, generate, pack or preview: with the identity method, which stages run (job_stages)
    stage: str
    attempt: int
    subject_id: str
    parameters: JobParameters
    lora_key: str | None  # the trained LoRA in storage (for a generate job: its train job's)
    render_key: str | None

    @classmethod
    def read(cls, session: Session, lease: Lease, stage: str) -> "StageContext":
        """The job's context; a job that is gone or whose subject withdrew consent is not run."""
        job = session.get(Job, lease.job_id)
        if job is None:
            raise LeaseLost(f"job {lease.job_id} was erased")
        subject = session.get(Subject, job.subject_id)
        if job.cancel_requested or subject is None or subject.consent_withdrawn_at is not None:
            raise JobCancelled
        parameters = JobParameters.model_validate(json.loads(job.parameters))
        lora_key = job.lora_key
        if job.kind == "generate":
            trained = session.get(Job, parameters.lora_job_id)
            lora_key = trained.lora_key if trained else None
        return cls(job.id, job.kind, stage, lease.attempt, job.subject_id, parameters, lora_key, job.render_key)

    @property
    def stages(self) -> tuple[str, ...]:
        return job_stages(self.job_kind, self.parameters.identity)

    @property
    def progress_before(self) -> float:
        stages = self.stages
        index = stages.index(self.stage)
        return PROGRESS_AFTER[self.job_kind][stages[index - 1]] if index else 0.0


def remove_stale_scratch(services) -> list[Path]:
    """Remove scratch folders whose stage no longer runs (their worker died); they hold copies of a
    person's LoRA. A folder is `<work dir>/<job>/<stage>-<attempt>`; one younger than a lease is left alone,
    as its stage may have been claimed a moment ago. Returns what it removed."""
    root = services.settings.resolved_work_dir
    if not root.is_dir():
        return []
    removed = []
    young = time.time() - services.settings.lease_seconds
    with Session(services.engine) as session:
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


def run_stage(services, job_id: str, stage: str, worker: str, dispatch: Callable[[str, str], None]) -> None:
    """Claim and run one stage of a job, then hand the next stage on (or finish the job)."""
    lease = claim(services.engine, job_id, stage, worker, services.settings.lease_seconds)
    if lease is not None:
        run_claimed_stage(services, lease, stage, dispatch)


def run_claimed_stage(services, lease: Lease, stage: str, dispatch: Callable[[str, str], None]) -> None:
    """Run a stage this worker holds the lease of; a cancel is obeyed at every phase (loading, encoding, each
    training step, each batch of images)."""
    from generation.faceid import IdentityError
    from generation.pack import PackError
    from generation.training import TrainingError, TrainingStopped

    scratch = private_directory(services.settings.resolved_work_dir / lease.job_id / f"{stage}-{lease.attempt}")
    stage_run = StageRun(services, lease, stage, scratch)
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
    except (PackError, TrainingError, IdentityError) as exc:
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

    def __init__(self, services, lease: Lease, stage: str, scratch: Path):
        self.services = services
        self.settings = services.settings
        self.lease = lease
        self.stage = stage
        self.engine = lease.engine
        self.storage = services.storage
        self.scratch = scratch
        self.prefix = f"jobs/{lease.job_id}/"
        self.context: StageContext | None = None
        self._render_started = 0.0  # when rendering began (time.monotonic), for the ETA

    def load(self) -> None:
        with Session(self.engine) as session:
            self.context = StageContext.read(session, self.lease, self.stage)

    # -- the stages ------------------------------------------------------------------------------

    def train(self) -> dict | None:
        from generation.lora_files import LORA_FILE
        from generation.pack import accept_references, model_record
        from generation.training import LikenessCheck, train_identity_lora

        backend = self.services.face_backend
        identity, decisions, accepted = accept_references(self.references(), self.provenance(), backend)
        model = self.services.load_sdxl()
        self._stop_if_cancelled()
        lora_dir = self.scratch / "lora"
        self._restore_checkpoint(lora_dir / "checkpoints")
        result = train_identity_lora(
            model.pipeline,
            [image for _, image in accepted],
            lora_dir,
            self.context.parameters.training_config(self.settings.gradient_checkpointing),
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
        from generation.pack import Provenance, render_disclosed

        settings = self._pack_settings()
        generator, accepted, references = self._generator(settings)
        self._stop_if_cancelled()
        registry = self.services.registry
        registry.forget_job(self.lease.job_id)  # what an earlier, unfinished attempt registered
        provenance = Provenance(
            self.services.credentials.signing_identity(),
            LeasedRegistry(registry, self.lease),
            self.services.trust(),
            self.settings.image_limits,
        )
        rendered = render_disclosed(generator, accepted, settings, provenance, self._on_image, references)
        render_key = f"{self.prefix}render-{self.lease.attempt}/"
        for image in rendered.images:
            self.storage.write(f"{render_key}images/{image.name}", image.data)
        description = {
            "model": rendered.model,
            "lora": {"key": self.context.lora_key, "sha256": rendered.lora["sha256"]} if rendered.lora else None,
            "images": [image.describe() for image in rendered.images],
            "identity": rendered.identity,
        }
        self.storage.write(render_key + "rendered.json", json.dumps(description, indent=2).encode())
        outputs = {"render_key": render_key, "model_sha256": rendered.model["sha256"]}
        return outputs | ({"lora_sha256": rendered.lora["sha256"]} if rendered.lora else {})

    def _generator(self, settings):
        """The job's generator (generation/faceid.identity_generator), the reference hashes its images name as
        ingredients, and the photos it conditions on: the LoRA's (from its training record) for lora; the
        subject's accepted photos, embedded by the adapter, for faceid; both for hybrid."""
        from generation.faceid import identity_generator
        from generation.lora_files import LORA_FILE
        from generation.pack import PackError, accept_references, training_record

        method, lora_dir, accepted, photos = settings.identity, None, [], []
        if method.trains_lora:
            if not self.context.lora_key:
                raise PackError("the job's LoRA is missing (was its train job erased?)")
            lora_dir = self.scratch / "lora"
            for name in (LORA_FILE, "training.json"):
                self.storage.download(self.context.lora_key + name, lora_dir / name)
            record = training_record(lora_dir)
            accepted = [item["sha256"] for item in record.get("references", []) if item.get("accepted")]
        if method.uses_adapter:
            _, _, usable = accept_references(self.references(), self.provenance(), self._scorer(method))
            photos = [image for _, image in usable]
            embedded = [reference.sha256 for reference, _ in usable]
            accepted = embedded + [digest for digest in accepted if digest not in embedded]
        model = self.services.load_sdxl()
        return identity_generator(model, method, lora_dir, settings.training), accepted, photos

    def score(self) -> None:
        from generation.faceid import IdentityMethod
        from generation.pack import (
            DisclosedImage,
            RenderedPack,
            accept_references,
            contact_sheet,
            pack_report,
            score_disclosed,
        )

        render_key = self.context.render_key
        rendered = json.loads(self.storage.read(render_key + "rendered.json"))
        images = [
            DisclosedImage.described(item, self.storage.read(f"{render_key}images/{item['name']}"))
            for item in rendered["images"]
        ]
        provenance = self.provenance()
        backend = self._scorer(IdentityMethod(self.context.parameters.identity))  # no adapter file needed here
        identity, decisions, _ = accept_references(self.references(), provenance, backend)
        lora = rendered.get("lora")
        training = json.loads(self.storage.read(lora["key"] + "training.json")) if lora else {}
        entries = score_disclosed(images, identity, backend, self.context.parameters.top_k, provenance)
        with Session(self.engine) as session:
            job = session.get(Job, self.lease.job_id)
            tenant, subject_id = job.tenant, job.subject_id
        headshots = {
            entry["file"]: Headshot(
                tenant=tenant,
                subject_id=subject_id,
                job_id=self.lease.job_id,
                storage_key=render_key + entry["file"],
                manifest_label=entry["manifest_label"],
                watermark_payload=entry["watermark_payload"],
                style=entry["style"],
                seed=entry["seed"],
                report=json.dumps(entry),
                kept=entry["kept"],
            )
            for entry in entries
        }
        downloads = {file: f"/v1/headshots/{headshot.id}/file" for file, headshot in headshots.items()}
        for entry in entries:
            entry.update(headshot_id=headshots[entry["file"]].id, download=downloads[entry["file"]])
        report = pack_report(
            RenderedPack(rendered["model"], lora, images, rendered.get("identity", {"method": "lora"})),
            training.get("references", decisions),
            identity,
            training,
            entries,
        )
        self.storage.write(render_key + "report.json", json.dumps(report, indent=2).encode())
        self.storage.write(render_key + "index.html", contact_sheet(report, downloads).encode())
        with Session(self.engine) as session:
            self.lease.hold(session, status="succeeded", progress=1.0, finished_at=_now(), worker=None)
            session.add_all(headshots.values())
            session.commit()
        self._remove_other_attempts("render-", keep=render_key)
        return None

    # -- moving on -------------------------------------------------------------------------------

    def hand_on(self, outputs: dict, dispatch) -> None:
        """Record the stage's outputs and queue the next stage (or finish), in one fenced UPDATE."""
        job_kind = self.context.job_kind
        stages = self.context.stages
        following = stages[stages.index(self.stage) + 1] if self.stage != stages[-1] else None
        progress = PROGRESS_AFTER[job_kind][self.stage]
        if following is None:
            self.lease.update(**outputs, status="succeeded", progress=progress, finished_at=_now(), worker=None)
        else:
            self.lease.update(
                **outputs,
                status="queued",
                stage=following,
                progress=progress,
                worker=None,
                dispatched_at=None,
                lease_losses=0,
                eta_seconds=None,
            )
        for key, folder_prefix in (("lora_key", "lora-"), ("render_key", "render-")):
            if key in outputs:
                self._remove_other_attempts(folder_prefix, keep=outputs[key])
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
            self.services.registry.forget_job(self.lease.job_id)
            self.storage.delete(f"{self.prefix}render-{self.lease.attempt}/")

    def abandon(self) -> None:
        """The lease is gone: remove what this attempt wrote; if the job itself is gone (erased), all of it."""
        with Session(self.engine) as session:
            erased = session.get(Job, self.lease.job_id) is None
        if erased:
            self.storage.delete(self.prefix)
            self.services.registry.forget_job(self.lease.job_id)
        else:
            for name in (f"lora-{self.lease.attempt}/", f"render-{self.lease.attempt}/"):
                self.storage.delete(self.prefix + name)
        log.warning("job %s: attempt %s lost its lease; stopped", self.lease.job_id, self.lease.attempt)

    # -- inputs ----------------------------------------------------------------------------------

    def references(self) -> list:
        from generation.pack import ReferenceInput

        with Session(self.engine) as session:
            photos = session.exec(
                select(Photo).where(Photo.subject_id == self.context.subject_id, Photo.accepted)
            ).all()
        return [
            ReferenceInput(photo.sha256, self.storage.read(photo.storage_key), original_sha256=photo.sha256)
            for photo in photos
        ]

    def _scorer(self, method):
        """The face backend that checks references and scores likeness for `method`: never the ArcFace that
        conditions the adapter (generation/faceid.likeness_backend)."""
        from generation.faceid import likeness_backend

        return likeness_backend(self.services.face_backend, method)

    def provenance(self):
        """What reading references and verifying outputs needs (no signing: that is the render stage's)."""
        from generation.pack import Provenance

        return Provenance(None, None, self.services.trust(), self.settings.image_limits)

    def _pack_settings(self):
        parameters = self.context.parameters
        identity = self.services.identity_method(parameters.identity, adapter_scale=parameters.adapter_scale)
        return parameters.pack_settings(self.settings.presets_file, self.settings.gradient_checkpointing, identity)

    # -- progress and checkpoints ----------------------------------------------------------------

    def _stop_if_cancelled(self) -> None:
        if self.lease.cancel_requested():
            raise JobCancelled

    def _on_training(self, progress) -> None:
        """After each step (training asks `lease.cancel_requested` itself before each one)."""
        if self.lease.lost.is_set():
            raise LeaseLost(f"job {self.lease.job_id}: the lease was lost")
        end = PROGRESS_AFTER[self.context.job_kind]["train"]
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
        start, end = self.context.progress_before, PROGRESS_AFTER[self.context.job_kind]["render"]
        if done == 0:  # rendering starts now
            self._render_started = time.monotonic()
            return
        eta = (time.monotonic() - self._render_started) / done * (total - done)
        self.lease.update(progress=start + (end - start) * done / total, eta_seconds=round(eta, 1))

    def _save_checkpoint(self, folder: Path) -> None:
        """Copy a new checkpoint to storage, and remove all but the latest KEEP_CHECKPOINTS there."""
        from generation.lora_files import KEEP_CHECKPOINTS

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

    def _remove_other_attempts(self, folder_prefix: str, keep: str) -> None:
        folders = {key[len(self.prefix) :].split("/")[0] for key in self.storage.keys(self.prefix)}
        for folder in folders:
            if folder.startswith(folder_prefix) and f"{self.prefix}{folder}/" != keep:
                self.storage.delete(f"{self.prefix}{folder}/")
