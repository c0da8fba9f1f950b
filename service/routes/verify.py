"""Recruiters: verify a photo (JSON API, batch, and a public server-rendered page). Uploads are not kept."""

import base64
import hashlib
import html
import re
from typing import Annotated

from fastapi import APIRouter, Depends, File, HTTPException, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse

from provenance import ImageInputError, Verdict, VerifyFailure, verify_image
from service.deps import Caller, ServicesDep, SessionDep, audit, require
from service.uploads import image_error, read_upload

router = APIRouter(tags=["verify"])
Verifier = Annotated[Caller, Depends(require("verifier"))]
MAX_BATCH = 50


def _verify(data: bytes, name: str, services) -> Verdict:
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
        verdict = _verify(data, file.filename or "upload", services)
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
            results.append(_verify(data, name, services))
        except HTTPException as exc:
            results.append(VerifyFailure(file=name, error=exc.detail))
        except ImageInputError as exc:
            results.append(VerifyFailure(file=name, error=str(exc)))
    audit(session, caller, "verify-batch", "upload", f"{len(files)} files")
    session.commit()
    return results


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Is this photo AI-generated? · headshot</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 46rem; margin: 2rem auto; padding: 0 1rem; line-height: 1.5; }}
.verdict {{ border-left: .4rem solid #999; padding: .5rem 1rem; background: #f6f6f6; }}
.ai {{ border-color: #b3261e; }} .real {{ border-color: #2a7; }}
li small {{ color: #555; }}
</style></head><body>
<h1>Is this photo AI-generated?</h1>
<p>Upload a profile photo. We read its Content Credentials, its metadata and our watermark registry, and
tell you what they say. The photo is not kept: it is read in memory and dropped once you have the answer.</p>
<form method="post" action="/verify" enctype="multipart/form-data">
<input type="file" name="file" accept="image/jpeg,image/png,image/webp" required>
<button type="submit">Check</button>
</form>
{result}
</body></html>
"""

# The page's only style block may apply; no script, no frames, forms post back here only.
_STYLE = re.search(r"<style>(.*?)</style>", PAGE.replace("{{", "{").replace("}}", "}"), re.DOTALL).group(1)
PAGE_POLICY = (
    "default-src 'none'; "
    f"style-src 'sha256-{base64.b64encode(hashlib.sha256(_STYLE.encode()).digest()).decode()}'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)

PLAIN = {
    "ai_verified": "AI-generated, and the maker's signature is trusted.",
    "capture_verified": "Taken with a camera, according to trusted Content Credentials.",
    "ai_unverified_signer": "Declared AI-generated, by a signer we cannot confirm.",
    "credentials_no_ai_claim": "It has valid Content Credentials that do not say it is AI-generated.",
    "ai_soft_binding": "AI-generated: a copy of an image we disclosed as AI-generated.",
    "invalid_credentials": "Its Content Credentials are broken or tampered with: they cannot be trusted.",
    "ai_metadata": "Its metadata says it was made with AI (unsigned, so it proves little).",
    "no_provenance": "We found nothing either way. That does not mean the photo is real.",
}


def page_response(result: str = "", status_code: int = 200, headers: dict | None = None) -> HTMLResponse:
    """The public page with `result` (HTML) below the form, under the page's Content-Security-Policy."""
    return HTMLResponse(
        PAGE.format(result=result),
        status_code=status_code,
        headers={**(headers or {}), "Content-Security-Policy": PAGE_POLICY},
    )


def message_response(text: str, status_code: int, headers: dict | None = None) -> HTMLResponse:
    """The public page saying `text` (an error, a refusal)."""
    return page_response(_message(text), status_code, headers)


@router.get("/verify", response_class=HTMLResponse, include_in_schema=False)
def verify_page(request: Request) -> HTMLResponse:
    _public_page_enabled(request)
    return page_response()


@router.get("/verify/", include_in_schema=False)
def verify_page_with_slash() -> RedirectResponse:
    """A relative redirect: never built from the Host header the client sent."""
    return RedirectResponse("/verify", status_code=307)


@router.post("/verify", response_class=HTMLResponse, include_in_schema=False)
def verify_page_upload(
    request: Request, services: ServicesDep, file: Annotated[UploadFile | None, File()] = None
) -> HTMLResponse:
    """The address's rate limit and the body's size were checked before this (service/request_guard.py)."""
    _public_page_enabled(request)
    if file is None or not file.filename:
        return message_response("Choose a photo to check.", 422)
    try:
        verdict = _verify(read_upload(file, services.settings.max_upload_bytes), file.filename, services)
    except HTTPException as exc:
        return message_response(exc.detail, exc.status_code)
    except ImageInputError as exc:
        error = image_error(exc, file.filename)
        return message_response(error.detail, error.status_code)
    css = {True: "ai", False: "real", None: ""}[verdict.ai_generated]
    evidence = "".join(
        f"<li>{html.escape(item.detail)} <small>({item.source}, {item.strength})</small></li>"
        for item in verdict.evidence
    )
    disclosure = ""
    if signer := verdict.c2pa.signer:
        made_with = f", made with {verdict.c2pa.claim_generator}" if verdict.c2pa.claim_generator else ""
        who = f"<b>{html.escape(signer.subject)}</b> ({html.escape(signer.issuer)})"
        disclosure = f"<p>Signed by {who}{html.escape(made_with)}.</p>"
    result = (
        f'<div class="verdict {css}"><h2>{html.escape(PLAIN[verdict.label])}</h2>'
        f"<p>{html.escape(verdict.summary)}</p>{disclosure}</div>"
        f"<h3>Evidence</h3><ul>{evidence or '<li>none</li>'}</ul>"
        f"<p><small>Label <code>{verdict.label}</code> · file {html.escape(verdict.file)}</small></p>"
    )
    return page_response(result)


def _public_page_enabled(request: Request) -> None:
    if not request.app.state.settings.public_verify_page:
        raise HTTPException(404, "the public verification page is switched off on this server")


def _message(text: str) -> str:
    return f'<div class="verdict"><p>{html.escape(text)}</p></div>'
