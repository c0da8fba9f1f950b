"""Recruiters: verify a photo (JSON API and batch; the public page is service/routes/verify_page.py). Uploads are
not kept."""

import hashlib
from typing import Annotated

from fastapi import APIRouter, Depends, File, HTTPException, UploadFile

from provenance import ImageInputError, Verdict, VerifyFailure, verify_image
from service.deps import Caller, ServicesDep, SessionDep, audit, require
from service.uploads import image_error, read_upload

router = APIRouter(tags=["verify"])
Verifier = Annotated[Caller, Depends(require("verifier"))]
MAX_BATCH = 50


def verify_bytes(data: bytes, name: str, services) -> Verdict:
    """The verdict on one uploaded photo, with this server's trust anchors, registry and remote-manifest rule."""
    return verify_image(
        data,
        services.trust(),
        services.settings.image_limits,
        name=name,
        registry=services.registry,
        remote_manifests=services.remote_manifests,
    )


@router.post("/v1/verify", response_model=Verdict)
def verify(
    file: Annotated[UploadFile, File(description="The photo to verify (JPEG, PNG or WebP).")],
    caller: Verifier,
    session: SessionDep,
    services: ServicesDep,
) -> Verdict:
    """Whether the photo is AI-generated and why: the same JSON as `headshot verify --json`."""
    data = read_upload(file, services.settings.max_upload_bytes)
    try:
        verdict = verify_bytes(data, file.filename or "upload", services)
    except ImageInputError as exc:
        raise image_error(exc, file.filename) from None
    audit(session, caller, "verify", "upload", hashlib.sha256(data).hexdigest(), verdict.label)
    session.commit()
    return verdict


@router.post("/v1/verify/batch", response_model=list[Verdict | VerifyFailure])
def verify_batch(
    files: Annotated[list[UploadFile], File(description=f"Up to {MAX_BATCH} photos.")],
    caller: Verifier,
    session: SessionDep,
    services: ServicesDep,
) -> list[Verdict | VerifyFailure]:
    """One result per file, in order; a file that cannot be read gets `{"file", "error"}`."""
    if len(files) > MAX_BATCH:
        raise HTTPException(413, f"{len(files)} files: a batch holds at most {MAX_BATCH}")
    results: list[Verdict | VerifyFailure] = []
    for file in files:
        name = file.filename or "upload"
        try:
            data = read_upload(file, services.settings.max_upload_bytes)
            results.append(verify_bytes(data, name, services))
        except HTTPException as exc:
            results.append(VerifyFailure(file=name, error=exc.detail))
        except ImageInputError as exc:
            results.append(VerifyFailure(file=name, error=str(exc)))
    audit(session, caller, "verify-batch", "upload", f"{len(files)} files")
    session.commit()
    return results
