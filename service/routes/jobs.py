"""Studios: train / generate / pack jobs, and the headshots they produce."""

import json
from pathlib import PurePosixPath
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from pydantic import BaseModel, Field
from sqlmodel import select

from service.deps import Caller, ServicesDep, SessionDep, audit, get_owned, require
from service.job_parameters import JobParameters
from service.jobs import dispatch_job, job_stages
from service.schemas import HeadshotList, HeadshotOut, JobOut
from service.tables import Headshot, Job, Photo, Subject
from service.text import plain_text
from service.webhooks import job_ended

router = APIRouter(tags=["jobs"])
Studio = Annotated[Caller, Depends(require("studio"))]
StudioOrAuditor = Annotated[Caller, Depends(require("studio", "auditor"))]
PREVIEW_COUNT_LIMIT = 4  # images per style a preview may ask for: a first look, not a pack


class JobIn(BaseModel):
    kind: Literal["train", "generate", "pack"]
    parameters: JobParameters = Field(default_factory=JobParameters)


class PreviewIn(BaseModel):
    """A few faceid images of the subject, rendered without training (IP-Adapter FaceID on their photos)."""

    styles: list[plain_text(64)] | None = Field(
        None, max_length=10, description="Style preset names (default: all presets)."
    )
    count: int = Field(1, ge=1, le=PREVIEW_COUNT_LIMIT, description="Images per style.")
    inference_steps: int = Field(30, ge=1, le=200)
    size: int = Field(1024, ge=32, le=2048)
    seed: int = Field(0, ge=0, le=2**63 - 1)
    class_word: Literal["person", "woman", "man"] = Field("person", description="Who the photos show.")
    adapter_scale: float | None = Field(None, ge=0, le=2, description="The IP-Adapter's strength (default 1.0).")


def consent_needed(kind: str, identity: str) -> set[str]:
    """The consent purposes a job needs: training where it trains a LoRA, generation where it renders."""
    stages = job_stages(kind, identity)
    return {purpose for stage, purpose in (("train", "training"), ("render", "generation")) if stage in stages}


def get_job(session, caller: Caller, job_id: str) -> Job:
    return get_owned(session, caller, Job, job_id, "job")


@router.post("/v1/subjects/{subject_id}/jobs", status_code=202)
def create_job(
    subject_id: str, body: JobIn, request: Request, caller: Studio, session: SessionDep, services: ServicesDep
) -> JobOut:
    return _create_job(subject_id, body.kind, body.parameters, request, caller, session, services)


@router.post("/v1/subjects/{subject_id}/previews", status_code=202)
def create_preview(
    subject_id: str, body: PreviewIn, request: Request, caller: Studio, session: SessionDep, services: ServicesDep
) -> JobOut:
    """A job (kind `preview`) rendering a few `faceid` images from the subject's accepted photos, without
    training, so that a person can see a first result before anyone pays for training. Like every job it runs
    in stages (render, score) under a lease, needs the subject's consent to generation, and every image is
    disclosed; its headshots are listed with the subject's others."""
    parameters = JobParameters(
        identity="faceid",
        top_k=1000,  # every image of a preview is kept: it is shown, not chosen from
        **body.model_dump(),
    )
    return _create_job(subject_id, "preview", parameters, request, caller, session, services)


def _create_job(
    subject_id: str, kind: str, parameters: JobParameters, request: Request, caller, session, services
) -> JobOut:
    subject = get_owned(session, caller, Subject, subject_id, "subject")
    if subject.consent_withdrawn_at is not None:
        raise HTTPException(409, "consent was withdrawn for this subject")
    missing = consent_needed(kind, parameters.identity) - set(json.loads(subject.consent_scope))
    if missing:
        raise HTTPException(409, f"the subject's consent does not cover {', '.join(sorted(missing))}")
    if services.settings.sdxl_model is None:
        raise HTTPException(503, "no SDXL model is configured on this server (HEADSHOT_SDXL_MODEL); ask its operator")
    _check_identity(kind, parameters, services)
    _check_styles(parameters.styles, services)
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
    if kind == "generate" and parameters.identity != "faceid":
        trained = parameters.lora_job_id and session.get(Job, parameters.lora_job_id)
        if not trained or trained.subject_id != subject.id or trained.kind != "train" or trained.status != "succeeded":
            raise HTTPException(
                422,
                f"generate with {parameters.identity} needs parameters.lora_job_id: a succeeded train job of "
                "this subject",
            )
    stages = job_stages(kind, parameters.identity)
    job = Job(
        tenant=subject.tenant,
        subject_id=subject.id,
        kind=kind,
        parameters=parameters.model_dump_json(),
        total_steps=(parameters.steps or 0) if "train" in stages else 0,  # set when training starts
        created_by=caller.key_name,
    )
    job.stage = stages[0]
    session.add(job)
    audit(
        session,
        caller,
        "create",
        "job",
        job.id,
        kind if parameters.identity == "lora" else f"{kind} {parameters.identity}",
    )
    session.commit()
    dispatch_job(session.get_bind(), request.app.state.jobs.dispatch, job.id, job.stage)
    session.refresh(job)
    return JobOut.from_row(job)


def _check_identity(kind: str, parameters: JobParameters, services) -> None:
    """The identity method fits the job and this server has its files (IP-Adapter FaceID, insightface pack)."""
    from generation.faceid import IdentityError

    if kind == "train" and parameters.identity != "lora":
        raise HTTPException(
            422, "a train job trains the identity LoRA: parameters.identity applies to pack and generate"
        )
    if parameters.identity == "faceid" and parameters.lora_job_id:
        raise HTTPException(422, "identity faceid uses no LoRA: drop parameters.lora_job_id, or use identity hybrid")
    try:
        services.identity_method(parameters.identity)
    except IdentityError as exc:
        raise HTTPException(
            503, f"this server is not set up for identity {parameters.identity} ({exc}); ask its operator"
        ) from None


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
