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
from service.schemas import HeadshotList, HeadshotOut, JobOut
from service.tables import Headshot, Job, Photo, Subject
from service.webhooks import job_ended

router = APIRouter(tags=["jobs"])
Studio = Annotated[Caller, Depends(require("studio"))]
StudioOrAuditor = Annotated[Caller, Depends(require("studio", "auditor"))]
NEEDS = {"train": {"training"}, "generate": {"generation"}, "pack": {"training", "generation"}}


class JobIn(BaseModel):
    kind: Literal["train", "generate", "pack"]
    parameters: JobParameters = Field(default_factory=JobParameters)


def get_job(session, caller: Caller, job_id: str) -> Job:
    return get_owned(session, caller, Job, job_id, "job")


@router.post("/v1/subjects/{subject_id}/jobs", status_code=202)
def create_job(
    subject_id: str, body: JobIn, request: Request, caller: Studio, session: SessionDep, services: ServicesDep
) -> JobOut:
    subject = get_owned(session, caller, Subject, subject_id, "subject")
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
    return JobOut.from_row(job)


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
def read_job(
    job_id: str, caller: Annotated[Caller, Depends(require("studio", "auditor"))], session: SessionDep
) -> JobOut:
    return JobOut.from_row(get_job(session, caller, job_id))


def _pack_file(session, caller: Caller, job_id: str, services, name: str) -> bytes:
    """report.json or index.html of a job that rendered images, once it succeeded."""
    from service.storage import StorageError

    job = get_job(session, caller, job_id)
    if job.kind == "train":
        raise HTTPException(
            404,
            f"a train job renders no images, so it has no {name}; its record is at /v1/jobs/{job.id}/training-record",
        )
    if job.status != "succeeded" or not job.render_key:
        raise HTTPException(409, f"{name} is written when the job succeeds; it is {job.status} (stage {job.stage})")
    try:
        return services.storage.read(job.render_key + name)
    except StorageError:
        raise HTTPException(
            410, f"job {job.id}: its {name} is missing from storage; ask the operator to restore it"
        ) from None


@router.get(
    "/v1/jobs/{job_id}/report.json",
    response_class=Response,
    responses={
        200: {
            "content": {"application/json": {"schema": {"type": "string", "format": "binary"}}},
            "description": "The pack's report.json, the file as stored (its fields: see the README).",
        }
    },
)
def job_report(job_id: str, caller: StudioOrAuditor, session: SessionDep, services: ServicesDep) -> Response:
    """The report of a succeeded pack or generate job: references, model and LoRA, training curve, every image
    (with `download`, its file's address)."""
    return Response(_pack_file(session, caller, job_id, services, "report.json"), media_type="application/json")


@router.get(
    "/v1/jobs/{job_id}/index.html",
    response_class=Response,
    responses={200: {"content": {"text/html": {}}, "description": "The pack's contact sheet."}},
)
def job_contact_sheet(job_id: str, caller: StudioOrAuditor, session: SessionDep, services: ServicesDep) -> Response:
    """The contact sheet of a succeeded pack or generate job; its images link to /v1/headshots/{id}/file (which
    needs the same key, and marks a headshot delivered when downloaded)."""
    data = _pack_file(session, caller, job_id, services, "index.html")
    return Response(data, media_type="text/html; charset=utf-8", headers={"Content-Security-Policy": _sheet_policy()})


def _sheet_policy() -> str:
    """The contact sheet's own style block and images from this server; nothing else."""
    import base64
    import hashlib

    from generation.pack import CONTACT_SHEET_STYLE

    style = base64.b64encode(hashlib.sha256(CONTACT_SHEET_STYLE.encode()).digest()).decode()
    return (
        f"default-src 'none'; img-src 'self'; style-src 'sha256-{style}'; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    )


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
