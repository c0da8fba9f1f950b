"""Studios: train / generate / pack jobs, and the headshots they produce."""

import json
import math
from pathlib import PurePosixPath
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from pydantic import BaseModel, Field, model_validator
from sqlmodel import select

from service.deps import Caller, SessionDep, SettingsDep, audit, get_owned, require
from service.jobs import STAGES, dispatch_job
from service.schemas import HeadshotList, HeadshotOut, JobOut
from service.tables import Headshot, Job, Photo, Subject
from service.text import plain_text
from service.webhooks import job_ended

router = APIRouter(tags=["jobs"])
Studio = Annotated[Caller, Depends(require("studio"))]
NEEDS = {"train": {"training"}, "generate": {"generation"}, "pack": {"training", "generation"}}
MAX_CHECKPOINTS = 100  # checkpoints one training run may write (the latest two are kept)


class JobParameters(BaseModel):
    steps: int | None = Field(
        None, ge=1, le=100_000, description="Training steps; default: scaled by the number of accepted photos."
    )
    batch_size: int = Field(2, ge=1, le=16, description="Photos per training step (their latents are cached).")
    class_word: Literal["person", "woman", "man"] = Field(
        "person", description="Who the photos show; the caption is 'a photo of hsk <class_word>'."
    )
    resolution: int | None = Field(None, ge=32, le=2048, description="Training resolution; default: size.")
    rank: int = Field(16, ge=1, le=256)
    alpha: int = Field(16, ge=1, le=1024)
    learning_rate: float = Field(1e-4, gt=0, le=1)
    seed: int = Field(0, ge=0, le=2**63 - 1)
    styles: list[plain_text(64)] | None = Field(
        None, max_length=50, description="Style preset names (default: all presets)."
    )
    count: int = Field(4, ge=1, le=100, description="Images per style.")
    inference_steps: int = Field(30, ge=1, le=200)
    size: int = Field(1024, ge=32, le=2048)
    top_k: int = Field(10, ge=1, le=1000)
    checkpoint_every: int = Field(
        100, ge=1, description=f"Steps between checkpoints; at least steps / {MAX_CHECKPOINTS}."
    )
    lora_job_id: plain_text(64) | None = Field(
        None, description="For generate: the succeeded train job whose LoRA to use."
    )

    @model_validator(mode="after")
    def few_enough_checkpoints(self) -> "JobParameters":
        least = math.ceil(self.steps / MAX_CHECKPOINTS)
        if self.checkpoint_every < least:
            raise ValueError(
                f"checkpoint_every must be at least {least} for {self.steps} steps "
                f"(at most {MAX_CHECKPOINTS} checkpoints a run)"
            )
        return self


class JobIn(BaseModel):
    kind: Literal["train", "generate", "pack"]
    parameters: JobParameters = Field(default_factory=JobParameters)


def get_job(session, caller: Caller, job_id: str) -> Job:
    return get_owned(session, caller, Job, job_id, "job")


@router.post("/v1/subjects/{subject_id}/jobs", status_code=202)
def create_job(
    subject_id: str, body: JobIn, request: Request, caller: Studio, session: SessionDep, settings: SettingsDep
) -> JobOut:
    subject = get_owned(session, caller, Subject, subject_id, "subject")
    if subject.consent_withdrawn_at is not None:
        raise HTTPException(409, "consent was withdrawn for this subject")
    missing = NEEDS[body.kind] - set(json.loads(subject.consent_scope))
    if missing:
        raise HTTPException(409, f"the subject's consent does not cover {', '.join(sorted(missing))}")
    if settings.sdxl_model is None:
        raise HTTPException(503, "no SDXL model is configured on this server (HEADSHOT_SDXL_MODEL); ask its operator")
    _check_styles(body.parameters.styles, settings)
    if not session.exec(select(Photo).where(Photo.subject_id == subject.id, Photo.accepted)).first():
        raise HTTPException(409, "the subject has no accepted reference photo; upload some first")
    active = session.exec(select(Job).where(Job.tenant == subject.tenant, Job.status.in_(("queued", "running")))).all()
    if len(active) >= settings.max_active_jobs:
        raise HTTPException(
            429,
            f"{len(active)} jobs are queued or running for this tenant (limit {settings.max_active_jobs}); "
            "wait for some to finish",
            {"Retry-After": "60"},
        )
    if body.kind == "generate":
        trained = body.parameters.lora_job_id and session.get(Job, body.parameters.lora_job_id)
        if not trained or trained.subject_id != subject.id or trained.kind != "train" or trained.status != "succeeded":
            raise HTTPException(422, "generate needs parameters.lora_job_id: a succeeded train job of this subject")
    job = Job(
        tenant=subject.tenant,
        subject_id=subject.id,
        kind=body.kind,
        parameters=body.parameters.model_dump_json(),
        total_steps=(body.parameters.steps or 0) if body.kind != "generate" else 0,  # set when training starts
        created_by=caller.key_name,
    )
    job.stage = STAGES[body.kind][0]
    session.add(job)
    audit(session, caller, "create", "job", job.id, body.kind)
    session.commit()
    dispatch_job(session.get_bind(), request.app.state.jobs.dispatch, job.id, job.stage)
    session.refresh(job)
    return JobOut.from_row(job)


def _check_styles(styles: list[str] | None, settings) -> None:
    """Unknown style names are the caller's mistake (422) now, not a failed job after training."""
    from generation.presets import PresetError, load_presets, select_presets

    try:
        presets = load_presets(settings.presets_file)
    except PresetError as exc:
        raise HTTPException(503, f"this server's style presets cannot be read ({exc}); ask its operator") from None
    try:
        select_presets(presets, styles)
    except PresetError as exc:
        raise HTTPException(422, str(exc)) from None


@router.get("/v1/jobs/{job_id}")
def read_job(
    job_id: str, caller: Annotated[Caller, Depends(require("studio", "auditor"))], session: SessionDep
) -> JobOut:
    return JobOut.from_row(get_job(session, caller, job_id))


@router.post("/v1/jobs/{job_id}/cancel")
def cancel_job(job_id: str, caller: Studio, session: SessionDep) -> JobOut:
    job = get_job(session, caller, job_id)
    if job.status in ("succeeded", "failed", "cancelled"):
        raise HTTPException(409, f"the job already ended ({job.status})")
    job.cancel_requested = True
    if job.status in ("queued", "interrupted"):
        job.status = "cancelled"
    session.add(job)
    audit(session, caller, "cancel", "job", job.id)
    job_ended(session, job.id)  # cancelled at once when no worker held it
    session.commit()
    return JobOut.from_row(job)


@router.post("/v1/jobs/{job_id}/resume", status_code=202)
def resume_job(job_id: str, request: Request, caller: Studio, session: SessionDep) -> JobOut:
    job = get_job(session, caller, job_id)
    if job.status not in ("interrupted", "failed", "cancelled"):
        raise HTTPException(
            409, f"only an interrupted, failed or cancelled job can be resumed; this one is {job.status}"
        )
    job.status, job.cancel_requested, job.error, job.finished_at = "queued", False, None, None
    job.lease_losses, job.dispatched_at = 0, None
    session.add(job)
    audit(session, caller, "resume", "job", job.id, f"from {job.stage}")
    session.commit()
    dispatch_job(session.get_bind(), request.app.state.jobs.dispatch, job.id, job.stage)
    session.refresh(job)
    return JobOut.from_row(job)


@router.get("/v1/subjects/{subject_id}/headshots")
def list_headshots(subject_id: str, caller: Studio, session: SessionDep) -> HeadshotList:
    subject = get_owned(session, caller, Subject, subject_id, "subject")
    rows = session.exec(select(Headshot).where(Headshot.subject_id == subject.id)).all()
    headshots = sorted((HeadshotOut.from_row(row) for row in rows), key=lambda item: (item.job_id, item.rank))
    return HeadshotList(subject_id=subject.id, headshots=headshots, top_k=[h.id for h in headshots if h.kept])


@router.get(
    "/v1/headshots/{headshot_id}/file",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}, "description": "The disclosed file."}},
)
def download_headshot(headshot_id: str, caller: Studio, session: SessionDep, settings: SettingsDep) -> Response:
    """The disclosed file (there is no undisclosed one). Downloading it marks it delivered."""
    import datetime as dt

    from service.storage import StorageError

    headshot = get_owned(session, caller, Headshot, headshot_id, "headshot")
    try:
        data = settings.storage().read(headshot.storage_key)
    except StorageError:
        raise HTTPException(
            410, f"headshot {headshot.id}: its file is missing from storage; ask the operator to restore it"
        ) from None
    if headshot.delivered_at is None:
        headshot.delivered_at = dt.datetime.now(dt.UTC)
        session.add(headshot)
    audit(session, caller, "download", "headshot", headshot.id)
    session.commit()
    suffix = PurePosixPath(headshot.storage_key).suffix
    disposition = f'attachment; filename="headshot-{headshot.id}{suffix}"'
    return Response(data, media_type=headshot.mime_type, headers={"Content-Disposition": disposition})
