"""The FastAPI application: a thin HTTP layer over `provenance` (and, later, `generation` and `scoring`)."""

from importlib.metadata import version
from typing import Annotated

from fastapi import Depends, FastAPI, File, HTTPException, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from provenance import ImageInputError, Verdict, verify_image
from service.settings import Settings

_STATUS_FOR_KIND = {"too_large": 413, "unsupported": 415, "empty": 422, "corrupt": 422, "invalid": 422}


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    app = FastAPI(
        title="headshot",
        version=version("headshot"),
        description="Disclosed AI headshots: generated with consent, scored, and verifiable.",
    )
    app.state.settings = settings

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}" for error in exc.errors()
        )
        return JSONResponse(status_code=422, content={"detail": f"invalid request: {problems}"})

    @app.get("/healthz", tags=["service"])
    def healthz() -> dict:
        return {"status": "ok", "version": version("headshot")}

    @app.post("/v1/verify", tags=["verify"], response_model=Verdict)
    def verify(
        file: Annotated[UploadFile, File(description="The photo to verify (JPEG, PNG or WebP).")],
        settings: Annotated[Settings, Depends(get_settings)],
    ) -> Verdict:
        """Say whether the photo is AI-generated and why. The photo is not kept."""
        data = read_upload(file, settings.max_upload_bytes)
        try:
            trust = settings.trust()
            return verify_image(
                data, trust, settings.image_limits, name=file.filename or "upload", registry=settings.registry()
            )
        except ImageInputError as exc:
            raise HTTPException(_STATUS_FOR_KIND.get(exc.kind, 422), f"{file.filename or 'upload'}: {exc}") from None

    return app


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def read_upload(file: UploadFile, max_bytes: int) -> bytes:
    """Read an uploaded file, stopping as soon as it passes the byte limit."""
    data = file.file.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise HTTPException(
            413,
            f"{file.filename or 'upload'}: the file is over the limit of {max_bytes:,} bytes; send a smaller image",
        )
    return data
