"""Recruiters: verify a photo (JSON API and batch; the public page is service/routes/verify_page.py). Uploads are
not kept."""

import hashlib
from typing import Annotated

from fastapi import APIRouter, Depends, File, HTTPException, UploadFile

from provenance import ImageInputError, Verdict, VerifyFailure
from service.deps import Caller, ServicesDep, SessionDep, audit, require
from service.uploads import UploadedImage, read_upload, uploaded_image

router = APIRouter(tags=["verify"])
Verifier = Annotated[Caller, Depends(require("verifier"))]
MAX_BATCH = 50


@router.post("/v1/verify", response_model=Verdict)
def verify(
    caller: Verifier,
    upload: Annotated[UploadedImage, Depends(uploaded_image("The photo to verify (JPEG, PNG or WebP)."))],
    session: SessionDep,
    services: ServicesDep,
) -> Verdict:
    """Whether the photo is AI-generated and why: the same JSON as `headshot verify --json`."""
    with upload.image_errors():
        verdict = services.verify_upload(upload.data, upload.name)
    audit(session, caller, "verify", "upload", hashlib.sha256(upload.data).hexdigest(), verdict.label)
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
            results.append(services.verify_upload(data, name))
        except HTTPException as exc:
            results.append(VerifyFailure(file=name, error=exc.detail))
        except ImageInputError as exc:
            results.append(VerifyFailure(file=name, error=str(exc)))
    audit(session, caller, "verify-batch", "upload", f"{len(files)} files")
    session.commit()
    return results
