"""The FastAPI application: thin routes over `provenance`, `scoring` and `generation` (see service/routes/)."""

from contextlib import asynccontextmanager
from importlib.metadata import version

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeoutError
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartParser

from service.api_docs import docs_router
from service.request_guard import PUBLIC_PAGE, RequestGuard, largest_body
from service.routes import audit, jobs, records, subjects, verify, webhooks
from service.security_headers import SecurityHeaders
from service.services import Services
from service.settings import Settings


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    services = Services(settings)  # its collaborators are built on first use, once for this app

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        services.registry  # noqa: B018  (loads the fingerprint index now: /healthz answering means ready)
        if settings.broker_url:  # stages go to `headshot worker`s through Celery
            from service.worker import CeleryDispatcher

            app.state.jobs = CeleryDispatcher(services)
        else:
            from service.in_process_worker import InProcessWorker

            app.state.jobs = InProcessWorker(services)
        app.state.jobs.start()
        yield
        app.state.jobs.stop()

    app = FastAPI(
        title="headshot",
        version=version("headshot"),
        description="Disclosed AI headshots: generated with consent, scored, and verifiable. "
        "Send `Authorization: Bearer <key>` (keys: `headshot keys create`).",
        lifespan=lifespan,
        docs_url=None,  # served by service/api_docs.py, without a CDN or inline script
        redoc_url=None,
    )
    app.router.redirect_slashes = False  # Starlette builds those redirects from the Host header
    app.state.settings = settings
    app.state.services = services
    app.add_middleware(RequestGuard, services=services)
    app.add_middleware(SecurityHeaders)
    # Uploaded files stay in memory up to the largest body a route takes (the guard refuses larger ones):
    # nothing of a photo is written to a temporary file. The parser's setting is per process: keep the largest.
    MultiPartParser.spool_max_size = max(MultiPartParser.spool_max_size, largest_body(settings.max_upload_bytes))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        if request.url.path == PUBLIC_PAGE:  # the public page answers as a page
            return verify.message_response(str(exc.detail), exc.status_code, exc.headers)
        return await http_exception_handler(request, exc)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}" for error in exc.errors()
        )
        return JSONResponse(status_code=422, content={"detail": f"invalid request: {problems}"})

    @app.exception_handler(SQLAlchemyTimeoutError)
    @app.exception_handler(OperationalError)
    async def database_unavailable(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(
            status_code=503,
            content={"detail": "the database is busy or unreachable; retry shortly"},
            headers={"Retry-After": "5"},
        )

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        """A bug, not bad input: answered as JSON like every error; the traceback goes to the log."""
        return JSONResponse(
            status_code=500,
            content={"detail": "internal error: the request could not be completed; it was logged for the operator"},
        )

    @app.get("/healthz", tags=["service"])
    def healthz() -> dict:
        return {"status": "ok", "version": version("headshot")}

    for module in (subjects, jobs, verify, audit, records, webhooks):
        app.include_router(module.router)
    app.include_router(docs_router(app.title))
    app.openapi = lambda: _openapi_with_plain_errors(app)
    return app


def _openapi_with_plain_errors(app: FastAPI) -> dict:
    """Document the error body every route really sends: `{"detail": "<what is wrong and what to do>"}`."""
    if app.openapi_schema is None:
        from fastapi.openapi.utils import get_openapi

        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        schema.setdefault("components", {}).setdefault("schemas", {})["HTTPValidationError"] = {
            "title": "HTTPValidationError",
            "type": "object",
            "properties": {"detail": {"type": "string", "title": "Detail"}},
            "required": ["detail"],
        }
        app.openapi_schema = schema
    return app.openapi_schema
