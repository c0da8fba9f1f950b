"""The FastAPI application: thin routes over `provenance`, `scoring` and `generation` (see service/routes/)."""

from contextlib import asynccontextmanager
from importlib.metadata import version

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeoutError

from service.limits import rate_limiter
from service.routes import audit, jobs, records, subjects, verify, webhooks
from service.settings import Settings


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        settings.registry()  # load the fingerprint index now, so that /healthz answering means ready
        if settings.broker_url:  # stages go to `headshot worker`s through Celery
            from service.worker import CeleryDispatcher

            app.state.jobs = CeleryDispatcher(settings)
        else:
            from service.jobs import InProcessWorker

            app.state.jobs = InProcessWorker(settings)
        app.state.jobs.start()
        yield
        app.state.jobs.stop()

    app = FastAPI(
        title="headshot",
        version=version("headshot"),
        description="Disclosed AI headshots: generated with consent, scored, and verifiable. "
        "Send `Authorization: Bearer <key>` (keys: `headshot keys create`).",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.key_limiter = rate_limiter(settings.rate_limit_per_minute, "key", settings.resolved_redis_url)
    app.state.public_limiter = rate_limiter(
        settings.public_rate_limit_per_minute, "public", settings.resolved_redis_url
    )

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

    @app.get("/healthz", tags=["service"])
    def healthz() -> dict:
        return {"status": "ok", "version": version("headshot")}

    for module in (subjects, jobs, verify, audit, records, webhooks):
        app.include_router(module.router)
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
