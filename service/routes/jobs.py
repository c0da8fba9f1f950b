"""Studios: train / generate / pack jobs, and the headshots they produce."""

import json
from pathlib import PurePosixPath
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from pydantic import BaseModel, Field
from sqlmodel import select

from service.deps import Caller, ServicesDep, SessionDep, audit, get_owned, require
from service.job_parameters import JobParameters
from service.jobs import STAGES, dispatch_job
from service.routes.subjects import get_subject
from service.tables import Headshot, Job, Photo
from service.webhooks import job_ended

router = APIRouter(tags=["jobs"])
Studio = Annotated[Caller, Depends(require("studio"))]
NEEDS = {"train": {"training"}, "generate": {"generation"}, "pack": {"training", "generation"}}


class JobIn(BaseModel):
    kind: Literal["train", "generate", "pack"]
    parameters: JobParameters = Field(default_factory=JobParameters)


def job_out(job: Job) -> dict:
    return {
        "id": job.id,
        "subject_id": job.subject_id,
        "kind": job.kind,
        "status": job.status,
        "stage": job.stage,
        "attempt": job.attempt,
        "worker": job.worker,
        "progress": round(job.progress, 4),
        "step": job.step,
        "total_steps": job.total_steps,
        "loss": job.loss,
        "eta_seconds": job.eta_seconds,
        "error": job.error,
        "parameters": json.loads(job.parameters),
        "lora_sha256": job.lora_sha256,
        "model_sha256": job.model_sha256,
        "created_at": job.created_at.isoformat(),
        "started_at": job.started_at.isoformat() if job.started_at else None,
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
    }


def get_job(session, caller: Caller, job_id: str) -> Job:
    return get_owned(session, caller, Job, job_id, "job")


@router.post("/v1/subjects/{subject_id}/jobs", status_code=202)
def create_job(
    subject_id: str, body: JobIn, request: Request, caller: Studio, session: SessionDep, services: ServicesDep
) -> dict:
    subject = get_subject(session, caller, subject_id)
    if subject.consent_withdrawn_at is not None:
        raise HTTPException(409, "consent was withdrawn for this subject")
    missing = NEEDS[body.kind] - set(json.loads(subject.consent_scope))
    if missing:
        raise HTTPException(409, f"the subject's consent does not cover {', '.join(sorted(missing))}")
    if services.settings.sdxl_model is None:
        raise HTTPException(503, "no SDXL model is configured on this server (HEADSHOT_SDXL_MODEL); ask its operator")
    _check_styles(body.parameters.styles, services)
    if not session.exec(select(Photo).where(Photo.subject_id == subject.id, Photo.accepted)).first():
        raise HTTPException(409, "the subject has no accepted reference photo; upload some first")
    active = session.exec(select(Job).where(Job.tenant == subject.tenant, Job.status.in_(("queued", "running")))).all()
    if len(active) >= services.settings.max_active_jobs:
        raise HTTPException(
            429,
            f"{len(active)} jobs are queued or running for this tenant (limit {services.settings.max_active_jobs}); "
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
    return job_out(job)


def _check_styles(styles: list[str] | None, services) -> None:
    """Unknown style names are the caller's mistake (422) now, not a failed job after training."""
    from generation.presets import PresetError, load_presets, select_presets

    try:
        presets = load_presets(services.settings.presets_file)
    except PresetError as exc:
        raise HTTPException(503, f"this server's style presets cannot be read ({exc}); ask its operator") from None
    try:
        select_presets(presets, styles)
    except PresetError as exc:
        raise HTTPException(422, str(exc)) from None


@router.get("/v1/jobs/{job_id}")
def read_job(job_id: str, caller: Annotated[Caller, Depends(require("studio", "auditor"))], session: SessionDep):
    return job_out(get_job(session, caller, job_id))


@router.post("/v1/jobs/{job_id}/cancel")
def cancel_job(job_id: str, caller: Studio, session: SessionDep) -> dict:
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
    return job_out(job)


@router.post("/v1/jobs/{job_id}/resume", status_code=202)
def resume_job(job_id: str, request: Request, caller: Studio, session: SessionDep) -> dict:
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
    return job_out(job)


def headshot_out(headshot: Headshot) -> dict:
    report = json.loads(headshot.report)
    return {
        "id": headshot.id,
        "job_id": headshot.job_id,
        "style": headshot.style,
        "seed": headshot.seed,
        "score": report["score"],
        "rank": report["rank"],
        "kept": headshot.kept,
        "passed": report["passed"],
        "likeness": report["likeness"],
        "checks": report["checks"],
        "label": report["label"],
        "credentials": {
            "manifest_label": headshot.manifest_label,
            "ai_generated": True,
            "watermark_payload": headshot.watermark_payload,
        },
        "delivered_at": headshot.delivered_at.isoformat() if headshot.delivered_at else None,
        "file": f"/v1/headshots/{headshot.id}/file",
    }


@router.get("/v1/subjects/{subject_id}/headshots")
def list_headshots(subject_id: str, caller: Studio, session: SessionDep) -> dict:
    subject = get_subject(session, caller, subject_id)
    rows = session.exec(select(Headshot).where(Headshot.subject_id == subject.id)).all()
    headshots = sorted((headshot_out(row) for row in rows), key=lambda item: (item["job_id"], item["rank"]))
    return {"subject_id": subject.id, "headshots": headshots, "top_k": [h["id"] for h in headshots if h["kept"]]}


@router.get(
    "/v1/headshots/{headshot_id}/file",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}, "description": "The disclosed file."}},
)
def download_headshot(headshot_id: str, caller: Studio, session: SessionDep, services: ServicesDep) -> Response:
    """The disclosed file (there is no undisclosed one). Downloading it marks it delivered."""
    import datetime as dt

    from service.storage import StorageError

    headshot = get_owned(session, caller, Headshot, headshot_id, "headshot")
    try:
        data = services.storage.read(headshot.storage_key)
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
