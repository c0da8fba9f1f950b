"""The in-process job worker: runs train / generate / pack jobs one at a time in a background thread.

The database is the source of truth: the worker reads queued jobs from it and writes status, step, loss
and ETA back. A job that was running when the process died is marked `interrupted` at the next start and
can be resumed (training picks up its last checkpoint). Headshot rows are written only after a whole job
has succeeded, in one transaction, so nothing half-made is ever listed.
"""

import datetime as dt
import json
import queue
import threading
from pathlib import Path

from sqlmodel import Session, select

from service.tables import Headshot, Job, Photo, Subject


class JobCancelled(Exception):
    """The job's cancel flag was set; the worker stops at the next step."""


class JobRunner:
    def __init__(self, settings, engine):
        self.settings = settings
        self.engine = engine
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        with Session(self.engine) as session:
            for job in session.exec(select(Job).where(Job.status == "running")).all():
                job.status, job.error = "interrupted", "the service stopped while this job ran; resume it"
                session.add(job)
            session.commit()
            queued = [job.id for job in session.exec(select(Job).where(Job.status == "queued")).all()]
        self._thread = threading.Thread(target=self._work, name="headshot-jobs", daemon=True)
        self._thread.start()
        for job_id in queued:
            self.submit(job_id)

    def stop(self) -> None:
        if self._thread:
            self._queue.put(None)
            self._thread.join(timeout=30)

    def submit(self, job_id: str) -> None:
        self._queue.put(job_id)

    def job_dir(self, job_id: str) -> Path:
        return self.settings.data_dir / "jobs" / job_id

    def _work(self) -> None:
        while (job_id := self._queue.get()) is not None:
            try:
                self._run(job_id)
            except Exception as exc:  # a job's failure is recorded on the job; the worker keeps serving
                self._update(job_id, status="failed", error=f"{type(exc).__name__}: {exc}", finished_at=_now())

    def _run(self, job_id: str) -> None:
        from generation.pack import PackError, PackSettings, Provenance, ReferenceInput, make_pack
        from generation.presets import load_presets, select_presets
        from generation.training import TrainingConfig, TrainingStopped

        with Session(self.engine) as session:
            job = session.get(Job, job_id)
            if job is None or job.status != "queued":
                return
            subject = session.get(Subject, job.subject_id)
            if subject is None or subject.consent_withdrawn_at is not None:
                self._update(job_id, status="cancelled", error="consent was withdrawn", finished_at=_now())
                return
            photos = [
                (photo.sha256, photo.stored_path)
                for photo in session.exec(select(Photo).where(Photo.subject_id == subject.id, Photo.accepted)).all()
            ]
            parameters = json.loads(job.parameters)
            job.status, job.started_at, job.error = "running", _now(), None
            session.add(job)
            session.commit()
            kind = job.kind

        training_share = {"train": 1.0, "pack": 0.8, "generate": 0.0}[kind]

        def on_training(progress) -> None:
            if self._cancel_requested(job_id):
                raise TrainingStopped
            self._update(
                job_id,
                step=progress.step,
                total_steps=progress.total,
                loss=progress.loss,
                eta_seconds=progress.eta_seconds,
                progress=training_share * progress.step / progress.total,
            )

        def on_image(done: int, total: int) -> None:
            if self._cancel_requested(job_id):
                raise JobCancelled
            self._update(job_id, progress=training_share + (1 - training_share) * done / total)

        model = self.settings.load_sdxl()
        training = TrainingConfig(
            steps=int(parameters.get("steps", 400)),
            rank=int(parameters.get("rank", 16)),
            alpha=int(parameters.get("alpha", 16)),
            learning_rate=float(parameters.get("learning_rate", 1e-4)),
            resolution=int(parameters.get("resolution") or parameters.get("size", 1024)),
            seed=int(parameters.get("seed", 0)),
            checkpoint_every=int(parameters.get("checkpoint_every", 100)),
        )
        references = [
            ReferenceInput(sha256, Path(stored_path).read_bytes(), original_sha256=sha256)
            for sha256, stored_path in photos
        ]
        settings = PackSettings(
            select_presets(load_presets(self.settings.presets_file), parameters.get("styles")),
            count=int(parameters.get("count", 4)),
            inference_steps=int(parameters.get("inference_steps", 30)),
            size=int(parameters.get("size", 1024)),
            seed=int(parameters.get("seed", 0)),
            top_k=int(parameters.get("top_k", 10)),
            training=training,
        )
        provenance = Provenance(
            self.settings.credentials.signing_identity(),
            self.settings.registry(),
            self.settings.trust(),
            self.settings.image_limits,
        )
        out = self.job_dir(job_id)
        try:
            if kind == "train":
                self._train(job_id, model, references, out, settings, provenance, on_training)
                return
            trained_lora = self._lora_for(parameters) if kind == "generate" else None
            report = make_pack(
                model,
                references,
                out / "pack",
                settings,
                provenance,
                self.settings.face_analyser(),
                on_training=on_training,
                on_image=on_image,
                trained_lora=trained_lora,
            )
        except (TrainingStopped, JobCancelled):
            self._finish_cancelled(job_id)
            return
        except PackError as exc:
            self._update(job_id, status="failed", error=str(exc), finished_at=_now())
            return
        self._record_headshots(job_id, out / "pack", report)

    def _train(self, job_id, model, references, out, settings, provenance, on_training) -> None:
        from generation.pack import accept_references, model_record
        from generation.training import TrainingStopped, train_identity_lora

        _, decisions, accepted = accept_references(references, provenance, self.settings.face_analyser())
        try:
            result = train_identity_lora(
                model.pipeline,
                [image for _, image in accepted],
                out / "lora",
                settings.training,
                on_training,
                record=model_record(model, decisions),
            )
        except TrainingStopped:
            self._finish_cancelled(job_id)
            return
        if result.lora_path is None:
            self._finish_cancelled(job_id)
            return
        self._update(
            job_id,
            status="succeeded",
            progress=1.0,
            lora_sha256=result.lora_sha256,
            model_sha256=model.sha256,
            finished_at=_now(),
        )

    def _lora_for(self, parameters: dict) -> Path:
        return self.job_dir(parameters["lora_job_id"]) / "lora"

    def _record_headshots(self, job_id: str, pack_dir: Path, report: dict) -> None:
        with Session(self.engine) as session:
            job = session.get(Job, job_id)
            for image in report["images"]:
                session.add(
                    Headshot(
                        tenant=job.tenant,
                        subject_id=job.subject_id,
                        job_id=job_id,
                        stored_path=str(pack_dir / image["file"]),
                        manifest_label=image["manifest_label"],
                        watermark_payload=image.get("watermark_payload", ""),
                        style=image["style"],
                        seed=image["seed"],
                        report=json.dumps(image),
                        kept=image["kept"],
                    )
                )
            job.status, job.progress, job.finished_at = "succeeded", 1.0, _now()
            job.lora_sha256, job.model_sha256 = report["lora"]["sha256"], report["model"]["sha256"]
            session.add(job)
            session.commit()

    def _finish_cancelled(self, job_id: str) -> None:
        self._update(job_id, status="cancelled", finished_at=_now())

    def _cancel_requested(self, job_id: str) -> bool:
        with Session(self.engine) as session:
            job = session.get(Job, job_id)
            return job is None or job.cancel_requested

    def _update(self, job_id: str, **changes) -> None:
        with Session(self.engine) as session:
            job = session.get(Job, job_id)
            if job is None:
                return
            for key, value in changes.items():
                setattr(job, key, value)
            session.add(job)
            session.commit()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
