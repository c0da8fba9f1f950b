"""Signed records: the training record of a trained model, and the public keys that check every record."""

import json
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException
from sqlmodel import select

from service.deps import Caller, ServicesDep, SessionDep, audit, get_owned, require
from service.schemas import Jwks, SignedTrainingRecord, TrainingConsent, TrainingRecord, TrainingReference
from service.tables import Job, Photo, Subject

router = APIRouter(tags=["audit"])
StudioOrAuditor = Annotated[Caller, Depends(require("studio", "auditor"))]


@router.get("/.well-known/jwks.json")
def jwks(services: ServicesDep) -> Jwks:
    """The installation's audit keys (JWKS): the current one first, then retired ones, which still verify
    what they signed. No key is needed to read them."""
    return services.audit_keys.jwks()


@router.get("/v1/jobs/{job_id}/training-record")
def training_record(
    job_id: str, caller: StudioOrAuditor, session: SessionDep, services: ServicesDep
) -> SignedTrainingRecord:
    """What a trained model was made from, signed: the base model's and the LoRA's hashes, each reference
    photo's SHA-256 with the consent it was given under, licence notes, and when it was trained."""
    from service.storage import StorageError

    job = get_owned(session, caller, Job, job_id, "job")
    if job.kind == "generate":
        trained_by = json.loads(job.parameters).get("lora_job_id")
        raise HTTPException(
            409, f"job {job.id} generated with the LoRA of job {trained_by}: ask for that job's training record"
        )
    if job.kind == "preview" or json.loads(job.parameters).get("identity") == "faceid":
        raise HTTPException(
            409, f"job {job.id} used IP-Adapter FaceID on the reference photos and trained no LoRA: no training record"
        )
    if not job.lora_key:
        raise HTTPException(409, f"job {job.id} has not trained its LoRA yet ({job.status}, at {job.stage})")
    try:
        training = json.loads(services.storage.read(job.lora_key + "training.json"))
    except StorageError:
        raise HTTPException(
            410, f"job {job.id}: its training.json is missing from storage; ask the operator to restore it"
        ) from None
    subject = session.get(Subject, job.subject_id)
    photos = {photo.sha256: photo for photo in session.exec(select(Photo).where(Photo.subject_id == job.subject_id))}
    consent = TrainingConsent(
        id=subject.id,
        given_by=subject.consent_given_by,
        scope=json.loads(subject.consent_scope),
        text_version=subject.consent_text_version,
        given_at=subject.consent_given_at.isoformat(),
        withdrawn_at=subject.consent_withdrawn_at.isoformat() if subject.consent_withdrawn_at else None,
    )
    references = []
    for reference in training.get("references", []):
        photo = photos.get(reference["sha256"])
        references.append(
            TrainingReference(
                sha256=reference["sha256"],
                photo_id=photo.id if photo else None,
                used_for_training=bool(reference.get("accepted")),
                reason=reference.get("reason"),
                training_permission=reference.get("training_permission"),
                licence_note=reference.get("licence_note"),
                credentials_training_mining=json.loads(photo.training_mining)
                if photo and photo.training_mining
                else None,
                consent_id=consent.id,
                consent_scope=consent.scope,
                consent_text_version=consent.text_version,
            )
        )
    record = TrainingRecord(
        job_id=job.id,
        kind=job.kind,
        tenant=job.tenant,
        subject_id=job.subject_id,
        base_model_sha256=training.get("base_model", {}).get("sha256") or job.model_sha256,
        lora_sha256=training.get("lora_sha256") or job.lora_sha256,
        training=training.get("config"),
        training_started_at=job.started_at.isoformat() if job.started_at else None,
        trained_at=job.trained_at.isoformat() if job.trained_at else None,
        consent=consent,
        reference_photos=references,
        licence_notes=sorted({r.licence_note for r in references if r.licence_note}),
        created_by=job.created_by,
    )
    audit(session, caller, "training-record", "job", job.id)
    session.commit()
    return services.audit_keys.sign(record.model_dump(), "training-record")
