"""Auditors: which photos, under which consent, trained which model, and which outputs came from it.

The chain of a headshot and a subject's export are signed records (service/signed_records.py): the same
JSON as before, plus a `jws` that `headshot audit verify-export` checks offline.
"""

import hashlib
import json
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException
from sqlmodel import select

from service.deps import Caller, ServicesDep, SessionDep, audit, require
from service.schemas import (
    ChainHeadshot,
    ChainJob,
    ExportAuditEvent,
    ExportHeadshot,
    ExportJob,
    ExportPhoto,
    HeadshotChain,
    LookupFound,
    LookupNotFound,
    ReferencePhoto,
    SignedErasedSubjectExport,
    SignedHeadshotChain,
    SignedSubjectExport,
    SubjectExport,
    SubjectOut,
    TombstoneOut,
    TrainedModel,
    TrainingLookup,
    TrainingMatch,
)
from service.tables import AuditEvent, Headshot, Job, Photo, Subject, Tombstone
from service.uploads import UploadedImage, uploaded_image

router = APIRouter(tags=["audit"])
Auditor = Annotated[Caller, Depends(require("auditor"))]
NEAR_DUPLICATE_PHASH = 6


def _chain(session, headshot: Headshot) -> HeadshotChain:
    subject = session.get(Subject, headshot.subject_id)
    job = session.get(Job, headshot.job_id)
    photos = session.exec(select(Photo).where(Photo.subject_id == headshot.subject_id, Photo.accepted)).all()
    report = json.loads(headshot.report)
    return HeadshotChain(
        headshot=ChainHeadshot.from_row(headshot),
        subject=SubjectOut.from_row(subject) if subject else None,
        reference_photos=[ReferencePhoto.from_row(p, uploaded_at=p.created_at) for p in photos],
        base_model_sha256=job.model_sha256 if job else None,
        lora_sha256=job.lora_sha256 if job else None,
        job=ChainJob.from_row(job, parameters=json.loads(job.parameters)) if job else None,
        generation_parameters=report.get("parameters"),
    )


def _visible_headshot(session, caller: Caller, **where) -> Headshot | None:
    query = select(Headshot)
    for column, value in where.items():
        query = query.where(getattr(Headshot, column) == value)
    headshot = session.exec(query).first()
    return headshot if headshot is not None and caller.sees(headshot.tenant) else None


@router.get("/v1/audit/headshots/{headshot_id}")
def audit_headshot(
    headshot_id: str, caller: Auditor, session: SessionDep, services: ServicesDep
) -> SignedHeadshotChain:
    headshot = _visible_headshot(session, caller, id=headshot_id)
    if headshot is None:
        raise HTTPException(404, f"no headshot {headshot_id}")
    audit(session, caller, "audit-read", "headshot", headshot_id)
    session.commit()
    return services.audit_keys.sign(_chain(session, headshot).model_dump(), "headshot-chain")


@router.post("/v1/audit/lookup")
def audit_lookup(
    caller: Auditor,
    upload: Annotated[UploadedImage, Depends(uploaded_image("A headshot, possibly a stripped copy."))],
    session: SessionDep,
    services: ServicesDep,
) -> LookupFound | LookupNotFound:
    """The chain behind an uploaded headshot, found by its credentials or, for stripped copies, soft bindings."""
    from provenance import verify_image

    data = upload.data
    with upload.image_errors():
        verdict = verify_image(
            data,
            services.trust(),
            services.settings.image_limits,
            registry=services.registry,
            remote_manifests=services.remote_manifests,
        )
    label = verdict.c2pa.manifest_label
    if verdict.recovered_manifest:
        label = verdict.recovered_manifest.get("label")
    audit(session, caller, "audit-lookup", "upload", hashlib.sha256(data).hexdigest(), verdict.label)
    session.commit()
    headshot = _visible_headshot(session, caller, manifest_label=label) if label else None
    if headshot is not None:
        chain = {"found": True, "verdict_label": verdict.label, **_chain(session, headshot).model_dump()}
        return services.audit_keys.sign(chain, "headshot-chain")
    erased = [
        TombstoneOut.from_row(t)
        for t in session.exec(select(Tombstone)).all()
        if caller.sees(t.tenant) and label in json.loads(t.kept_manifests)
    ]
    return LookupNotFound(
        found=False,
        verdict_label=verdict.label,
        manifest_label=label,
        erased_subjects=erased,
        why_not_found=_why_not_found(verdict.label, label, erased),
    )


def _why_not_found(verdict_label: str, manifest_label: str | None, erased: list) -> str:
    """Why a lookup found no headshot chain, beside a verdict that may well say the image is ours."""
    if manifest_label is None:
        return (
            f"nothing in the file identifies one of this installation's images (verdict {verdict_label}): no Content "
            "Credentials, and no registered watermark"
        )
    if erased:
        return (
            f"the image is {manifest_label}, a delivered headshot of a subject that was erased: its record is gone and "
            "only the tombstone in erased_subjects remains"
        )
    return (
        f"the image is {manifest_label}, but no headshot your key can see has it: it was disclosed outside a job "
        "(e.g. `headshot disclose`), or by another tenant"
    )


@router.post("/v1/audit/training-lookup")
def training_lookup(
    caller: Auditor,
    upload: Annotated[
        UploadedImage, Depends(uploaded_image("Any photo: was it (or a near-duplicate) used for training?"))
    ],
    session: SessionDep,
    services: ServicesDep,
) -> TrainingLookup:
    from provenance.images import decode_image
    from scoring.faces import hash_distance, perceptual_hash

    data = upload.data
    with upload.image_errors():
        image = decode_image(data, services.settings.image_limits)
    sha256 = hashlib.sha256(data).hexdigest()
    frame_hash = perceptual_hash(image)
    matches = []
    for photo in session.exec(select(Photo)).all():
        if not caller.sees(photo.tenant):
            continue
        exact = photo.sha256 == sha256
        distance = hash_distance(int(photo.frame_hash, 16), frame_hash) if photo.frame_hash else None
        if exact or (distance is not None and distance <= NEAR_DUPLICATE_PHASH):
            subject = session.get(Subject, photo.subject_id)
            jobs = session.exec(select(Job).where(Job.subject_id == photo.subject_id, Job.kind != "generate")).all()
            matches.append(
                TrainingMatch(
                    match="exact" if exact else f"near-duplicate (pHash distance {distance})",
                    photo_sha256=photo.sha256,
                    accepted_for_training=photo.accepted,
                    subject=SubjectOut.from_row(subject) if subject else None,
                    models=[
                        TrainedModel.from_row(job, job_id=job.id, base_model_sha256=job.model_sha256) for job in jobs
                    ],
                )
            )
    erased = [
        TombstoneOut.from_row(t)
        for t in session.exec(select(Tombstone)).all()
        if caller.sees(t.tenant) and sha256 in json.loads(t.photo_hashes)
    ]
    audit(session, caller, "audit-training-lookup", "upload", sha256, f"{len(matches)} matches")
    session.commit()
    used = any(m.accepted_for_training for m in matches)
    return TrainingLookup(
        sha256=sha256,
        used_for_training=used,
        used_by_erased_subject=bool(erased),
        summary=_training_summary(used, matches, erased),
        matches=matches,
        erased_subjects=erased,
    )


def _training_summary(used: bool, matches: list, erased: list) -> str:
    """The answer in one sentence: used for training, used by an erased subject, uploaded but refused, or unknown."""
    sentences = []
    if used:
        models = sum(len(m.models) for m in matches if m.accepted_for_training)
        sentences.append(f"used for training: an accepted reference photo, in {models} train or pack job(s)")
    elif matches:
        sentences.append("uploaded as a reference photo but not accepted, so not used for training")
    if erased:
        sentences.append(
            f"used by {len(erased)} erased subject(s): uploaded to a subject since erased, whose photos and models "
            "were deleted; the tombstone keeps only the photo hashes"
        )
    if not sentences:
        sentences.append(
            f"not found among the reference photos your key can see (same SHA-256, or pHash distance up to "
            f"{NEAR_DUPLICATE_PHASH})"
        )
    return "; ".join(sentences)


@router.get("/v1/audit/subjects/{subject_id}/export")
def export_subject(
    subject_id: str, caller: Auditor, session: SessionDep, services: ServicesDep
) -> SignedSubjectExport | SignedErasedSubjectExport:
    """The subject's whole record (or its tombstone), signed; each audit event with its place in the chain."""
    subject = session.get(Subject, subject_id)
    if subject is None or not caller.sees(subject.tenant):
        tombstone = session.exec(select(Tombstone).where(Tombstone.subject_id == subject_id)).first()
        if tombstone is not None and caller.sees(tombstone.tenant):
            audit(session, caller, "audit-export", "subject", subject_id, "tombstone")
            session.commit()
            erased = {"subject": None, "tombstone": TombstoneOut.from_row(tombstone).model_dump()}
            return services.audit_keys.sign(erased, "subject-export")
        raise HTTPException(404, f"no subject {subject_id}")
    photos = session.exec(select(Photo).where(Photo.subject_id == subject.id)).all()
    jobs = session.exec(select(Job).where(Job.subject_id == subject.id)).all()
    headshots = session.exec(select(Headshot).where(Headshot.subject_id == subject.id)).all()
    related = {subject.id, *(p.id for p in photos), *(j.id for j in jobs), *(h.id for h in headshots)}
    events = session.exec(select(AuditEvent).where(AuditEvent.object_id.in_(related)).order_by(AuditEvent.seq)).all()
    audit(session, caller, "audit-export", "subject", subject.id)
    session.commit()
    export = SubjectExport(
        subject=SubjectOut.from_row(subject),
        photos=[
            ExportPhoto.from_row(
                p,
                training_mining=json.loads(p.training_mining) if p.training_mining else None,
                uploaded_at=p.created_at,
            )
            for p in photos
        ],
        jobs=[
            ExportJob.from_row(j, base_model_sha256=j.model_sha256, parameters=json.loads(j.parameters)) for j in jobs
        ],
        headshots=[ExportHeadshot.from_row(h) for h in headshots],
        audit_log=[
            ExportAuditEvent.from_row(e, key=e.key_name, object=f"{e.object_type} {e.object_id}") for e in events
        ],
    )
    return services.audit_keys.sign(export.model_dump(), "subject-export")
