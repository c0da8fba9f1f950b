"""The C2PA soft-binding resolution API: another verifier that reads our watermark gets our credentials back.

Public like the page (no API key; each address rate-limited, service/request_guard.py), with the upload
limits of /v1/verify. Routes and bodies follow the C2PA Soft Binding Resolution API 1.1.0; the logic is in
provenance/resolution.py. No URL is ever fetched: /matches/byReference answers 501.
"""

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from provenance import ImageInputError
from provenance.images import decode_image
from provenance.resolution import (
    ResolutionQueryError,
    matches_by_binding,
    matches_by_content,
    supported_algorithms,
)
from service.deps import ServicesDep

router = APIRouter(tags=["soft-binding resolution"])
# Spec statuses for an asset we cannot take: 415 for another type, 413 for too large, 400 for a broken one.
_CONTENT_STATUS = {"unsupported": 415, "too_large": 413}
MaxResults = Annotated[int, Query(ge=1, le=100, alias="maxResults", description="At most this many matches.")]


class AlgorithmName(BaseModel):
    alg: str


class AlgorithmList(BaseModel):
    watermarks: list[AlgorithmName]
    fingerprints: list[AlgorithmName]


class BindingQuery(BaseModel):
    alg: str = Field(description="A soft-binding algorithm from /services/supportedAlgorithms.")
    value: str = Field(max_length=4096, description="The soft-binding value, base64-encoded.")


class QueryMatch(BaseModel):  # the specification's field names
    manifestId: str
    similarityScore: int = Field(ge=0, le=100)


class QueryResult(BaseModel):
    matches: list[QueryMatch]


@router.get("/services/supportedAlgorithms", response_model=AlgorithmList)
def supported() -> dict:
    """The soft-binding algorithms this service resolves."""
    return supported_algorithms()


@router.get("/matches/byBinding", response_model=QueryResult)
def by_binding(
    services: ServicesDep,
    alg: Annotated[str, Query(max_length=200, description="The soft-binding algorithm.")],
    value: Annotated[str, Query(max_length=4096, description="The soft-binding value, base64-encoded.")],
    max_results: MaxResults = 10,
) -> dict:
    """Manifests registered with this soft binding (for our watermark: its 64-bit payload)."""
    return _binding(services, alg, value, max_results)


@router.post("/matches/byBinding", response_model=QueryResult)
def by_binding_post(services: ServicesDep, query: BindingQuery, max_results: MaxResults = 10) -> dict:
    """The same query with the value in a JSON body."""
    return _binding(services, query.alg, query.value, max_results)


_IMAGE_BODY = {"schema": {"type": "string", "format": "binary"}}


@router.post(
    "/matches/byContent",
    response_model=QueryResult,
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "The image itself (JPEG, PNG or WebP).",
            "content": {"image/jpeg": _IMAGE_BODY, "image/png": _IMAGE_BODY, "image/webp": _IMAGE_BODY},
        }
    },
)
async def by_content(
    request: Request,
    services: ServicesDep,
    alg: Annotated[str | None, Query(max_length=200)] = None,
    max_results: MaxResults = 10,
    hint_alg: Annotated[str | None, Query(alias="hintAlg", max_length=200)] = None,
    hint_value: Annotated[str | None, Query(alias="hintValue", max_length=4096)] = None,
) -> dict:
    """Manifests of the disclosed image this is a copy of, found from its pixels (watermark, then fingerprints
    confirmed by the watermark). Hints are accepted and not needed: the image is read in full."""
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("image/"):
        raise HTTPException(415, f"send the image itself with an image/* Content-Type, not {content_type or 'none'}")
    settings = services.settings
    body = await request.body()  # bounded by the request guard before it is read
    if len(body) > settings.max_upload_bytes:
        raise HTTPException(413, f"the image is over the limit of {settings.max_upload_bytes:,} bytes")
    try:
        image = await run_in_threadpool(decode_image, body, settings.image_limits)
        matches = await run_in_threadpool(matches_by_content, image, services.registry, alg, max_results)
    except ImageInputError as exc:
        raise HTTPException(_CONTENT_STATUS.get(exc.kind, 400), str(exc)) from None
    except ResolutionQueryError as exc:
        raise HTTPException(400, str(exc)) from None
    return {"matches": [match.as_dict() for match in matches]}


@router.post("/matches/byReference", status_code=501, include_in_schema=False)
def by_reference() -> None:
    """Not offered: this server fetches no URL. Upload the image to /matches/byContent."""
    raise HTTPException(501, "this server fetches no URL; send the image itself to /matches/byContent")


@router.get(
    "/manifests/{manifestId}",
    response_class=Response,
    responses={200: {"content": {"application/c2pa": {}}, "description": "The C2PA manifest store."}},
)
def manifest_store(
    services: ServicesDep,
    manifestId: Annotated[str, Path(max_length=200, description="The manifest's label, urn:c2pa:...")],
    return_active_manifest: Annotated[bool, Query(alias="returnActiveManifest")] = False,
) -> Response:
    """The manifest store a disclosure was signed with, as `application/c2pa` (any C2PA reader validates it).
    Our stores hold one manifest, the active one, so `returnActiveManifest` changes nothing."""
    entry = services.registry.find_manifest(manifestId)
    if entry is None:
        raise HTTPException(404, f"no manifest {manifestId} here")
    if entry.manifest_store is None:
        raise HTTPException(
            404,
            f"the manifest store of {manifestId} is not kept: registered before stores were kept, or its subject "
            "was erased",
        )
    return Response(entry.manifest_store, media_type="application/c2pa")


def _binding(services, alg: str, value: str, max_results: int) -> dict:
    try:
        matches = matches_by_binding(services.registry, alg, value, max_results)
    except ResolutionQueryError as exc:
        raise HTTPException(400, str(exc)) from None
    return {"matches": [match.as_dict() for match in matches]}
