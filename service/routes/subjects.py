"""Studios: subjects with their consent, reference photos, withdrawal and erasure."""

import datetime as dt
import hashlib
import json
from typing import Annotated

from fastapi import APIRouter, Depends, File, HTTPException, UploadFile
from pydantic import AwareDatetime, BaseModel, Field
from sqlmodel import select

from service.deps import Caller, ServicesDep, SessionDep, audit, get_owned, require
from service.tables import Headshot, Job, Photo, Subject, Tombstone
from service.text import plain_text
from service.uploads import image_error, read_upload
from service.webhooks import enqueue

router = APIRouter(tags=["subjects"])
Studio = Annotated[Caller, Depends(require("studio"))]
PURPOSES = ("training", "generation")


class ConsentIn(BaseModel):
    given_by: plain_text(200) = Field(description="Who consented (the person, or their legal representative).")
    scope: list[plain_text(32)] = Field(
        min_length=1, max_length=8, description=f"What for: any of {', '.join(PURPOSES)}."
    )
    text_version: plain_text(100) = Field(description="Version of the consent text they agreed to.")
    given_at: AwareDatetime | None = Field(
        None, description="When, with its timezone (e.g. 2026-11-30T09:00:00Z); default: now."
    )


class SubjectIn(BaseModel):
    display_name: plain_text(200)
    consent: ConsentIn


def subject_out(subject: Subject) -> dict:
    return {
        "id": subject.id,
        "tenant": subject.tenant,
        "display_name": subject.display_name,
        "consent": {
            "given_by": subject.consent_given_by,
            "scope": json.loads(subject.consent_scope),
            "text_version": subject.consent_text_version,
            "given_at": subject.consent_given_at.isoformat(),
            "withdrawn_at": subject.consent_withdrawn_at.isoformat() if subject.consent_withdrawn_at else None,
        },
        "created_at": subject.created_at.isoformat(),
    }


def get_subject(session, caller: Caller, subject_id: str) -> Subject:
    return get_owned(session, caller, Subject, subject_id, "subject")


@router.post("/v1/subjects", status_code=201)
def create_subject(body: SubjectIn, caller: Studio, session: SessionDep) -> dict:
    unknown = sorted(set(body.consent.scope) - set(PURPOSES))
    if unknown:
        raise HTTPException(422, f"unknown consent purpose {', '.join(unknown)}; use {', '.join(PURPOSES)}")
    subject = Subject(
        tenant=caller.tenant,
        display_name=body.display_name,
        consent_given_by=body.consent.given_by,
        consent_scope=json.dumps(sorted(set(body.consent.scope))),
        consent_text_version=body.consent.text_version,
        consent_given_at=body.consent.given_at or dt.datetime.now(dt.UTC),
    )
    session.add(subject)
    audit(session, caller, "create", "subject", subject.id)
    session.commit()
    return subject_out(subject)


@router.get("/v1/subjects/{subject_id}")
def read_subject(
    subject_id: str, caller: Annotated[Caller, Depends(require("studio", "auditor"))], session: SessionDep
):
    return subject_out(get_subject(session, caller, subject_id))


@router.post("/v1/subjects/{subject_id}/photos", status_code=201)
def upload_photo(
    subject_id: str,
    file: Annotated[UploadFile, File(description="A photo of the subject (JPEG, PNG or WebP).")],
    caller: Studio,
    session: SessionDep,
    services: ServicesDep,
) -> dict:
    """Store a reference photo: its original bytes' hash is its identity; its own credentials are read first."""
    from generation.permissions import training_permission
    from provenance import ImageInputError, verify_image
    from provenance.images import MIME_TYPES, decode_image

    subject = get_subject(session, caller, subject_id)
    if subject.consent_withdrawn_at is not None:
        raise HTTPException(409, "consent was withdrawn for this subject; no photos can be added")
    data = read_upload(file, services.settings.max_upload_bytes)
    try:
        image = decode_image(data, services.settings.image_limits)
        credentials = verify_image(data, services.trust(), services.settings.image_limits).c2pa
        permission = training_permission(credentials)
    except ImageInputError as exc:
        raise image_error(exc, file.filename) from None
    sha256 = hashlib.sha256(data).hexdigest()
    existing = session.exec(select(Photo).where(Photo.subject_id == subject.id, Photo.sha256 == sha256)).first()
    if existing is not None:
        raise HTTPException(409, f"this photo was already uploaded for this subject (photo {existing.id})")

    accepted, reason = permission.allowed, permission.reason
    frame_hash = None
    if accepted:
        accepted, reason, frame_hash = _reference_check(session, subject, image, services)
    storage_key = f"subjects/{subject.id}/photos/{sha256}{_extension(image.format)}"
    services.storage.write(storage_key, _without_location(data))
    photo = Photo(
        subject_id=subject.id,
        tenant=subject.tenant,
        sha256=sha256,
        frame_hash=frame_hash,
        storage_key=storage_key,
        mime_type=MIME_TYPES[image.format],
        accepted=accepted,
        reason=reason,
        credentials_state=credentials.state,
        training_mining=json.dumps(credentials.training_mining) if credentials.training_mining else None,
    )
    session.add(photo)
    audit(session, caller, "upload", "photo", photo.id, f"subject {subject.id}, sha256 {sha256}")
    session.commit()
    return {
        "id": photo.id,
        "sha256": sha256,
        "accepted": accepted,
        "reason": reason,
        "credentials": {"state": credentials.state, "training_mining": credentials.training_mining},
    }


@router.post("/v1/subjects/{subject_id}/consent/withdraw")
def withdraw_consent(subject_id: str, caller: Studio, session: SessionDep, services: ServicesDep) -> dict:
    """Stop the subject's jobs and erase the subject (see DELETE /v1/subjects/{id})."""
    subject = get_subject(session, caller, subject_id)
    subject.consent_withdrawn_at = dt.datetime.now(dt.UTC)
    session.add(subject)
    audit(session, caller, "withdraw-consent", "subject", subject.id)
    enqueue(
        session,
        subject.tenant,
        "consent.withdrawn",
        {"subject_id": subject.id, "withdrawn_at": subject.consent_withdrawn_at.isoformat()},
    )
    session.commit()
    return erase(session, caller, subject, services)


@router.delete("/v1/subjects/{subject_id}")
def delete_subject(subject_id: str, caller: Studio, session: SessionDep, services: ServicesDep) -> dict:
    return erase(session, caller, get_subject(session, caller, subject_id), services)


def erase(session, caller: Caller, subject: Subject, services) -> dict:
    """Remove the subject's photos, LoRA weights, images and personal data; keep what recognises delivered ones.

    Delivered headshots stay in the soft-binding registry (watermark and fingerprints) with their manifest
    stripped of ingredients (the reference photos' hashes), so a stripped copy still verifies as
    `ai_soft_binding`; undelivered ones leave the registry entirely. A tombstone (hashes only) remains.
    """
    registry, storage = services.registry, services.storage
    photos = session.exec(select(Photo).where(Photo.subject_id == subject.id)).all()
    jobs = session.exec(select(Job).where(Job.subject_id == subject.id)).all()
    headshots = session.exec(select(Headshot).where(Headshot.subject_id == subject.id)).all()
    kept = []
    for headshot in headshots:
        if headshot.delivered_at is not None:
            registry.strip_personal_data(headshot.manifest_label)
            kept.append(headshot.manifest_label)
        session.delete(headshot)
    for job in jobs:  # a worker still running one finds it gone at its next fenced write and removes the rest
        registry.forget_job(job.id, keep=kept)
        storage.delete(f"jobs/{job.id}/")
        session.delete(job)
    for photo in photos:
        session.delete(photo)
    storage.delete(f"subjects/{subject.id}/")
    tombstone = Tombstone(
        subject_id=subject.id,
        tenant=subject.tenant,
        erased_by=caller.key_name,
        photo_hashes=json.dumps(sorted(photo.sha256 for photo in photos)),
        kept_manifests=json.dumps(kept),
    )
    session.add(tombstone)
    session.delete(subject)
    audit(session, caller, "erase", "subject", subject.id, f"{len(photos)} photos, {len(headshots)} headshots")
    enqueue(
        session,
        subject.tenant,
        "subject.erased",
        {"subject_id": subject.id, "erased_at": tombstone.erased_at.isoformat(), "delivered_headshots_kept": len(kept)},
    )
    session.commit()
    return tombstone_out(tombstone)


def tombstone_out(tombstone: Tombstone) -> dict:
    return {
        "subject_id": tombstone.subject_id,
        "erased": True,
        "erased_by": tombstone.erased_by,
        "erased_at": tombstone.erased_at.isoformat(),
        "photo_hashes": json.loads(tombstone.photo_hashes),
        "delivered_headshots_still_recognised": json.loads(tombstone.kept_manifests),
    }


def _reference_check(session, subject: Subject, image, services) -> tuple[bool, str, str | None]:
    """Scoring's reference-set check of this photo against the subject's accepted photos."""
    from provenance.images import decode_image
    from scoring.score import ScoringError, build_identity

    previous = session.exec(select(Photo).where(Photo.subject_id == subject.id, Photo.accepted)).all()
    storage = services.storage
    photos = []
    for photo in previous:  # upright, as the new photo is: decode_image applies their EXIF orientation
        image_limits = services.settings.image_limits
        photos.append((photo.id, decode_image(storage.read(photo.storage_key), image_limits).convert("RGB")))
    photos.append(("new", image.convert("RGB")))
    try:
        identity = build_identity(photos, services.face_backend)
    except ScoringError:
        identity = None
    if identity is None:
        return False, "no face found", None
    verdict = next(reference for reference in identity.references if reference.name == "new")
    return verdict.accepted, verdict.reason, f"{verdict.analysis.frame_hash:016x}" if verdict.analysis else None


def _without_location(data: bytes) -> bytes:
    """The stored copy: the same bytes, without EXIF GPS tags (pixels untouched)."""
    import pyexiv2

    try:
        with pyexiv2.ImageData(data) as metadata:
            gps = [key for key in metadata.read_exif() if key.startswith("Exif.GPSInfo")]
            if not gps:
                return data
            metadata.modify_exif(dict.fromkeys(gps))
            return metadata.get_bytes()
    except RuntimeError:
        return data


def _extension(image_format: str) -> str:
    return {"JPEG": ".jpg", "MPO": ".jpg", "PNG": ".png", "WEBP": ".webp"}[image_format]
