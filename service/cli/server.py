"""`headshot serve`, `headshot worker` and `headshot db upgrade`: running the service."""

from typing import Annotated

import typer

from service.cli.common import app, console, fail, group, reports_errors, services

db_app = group("db", "The database schema (Alembic migrations).")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to listen on (default HEADSHOT_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default HEADSHOT_PORT).")] = None,
    workers: Annotated[int, typer.Option(min=1, help="API processes on this port (needs PostgreSQL if > 1).")] = 1,
) -> None:
    """Start the HTTP service (API docs at /docs)."""
    import uvicorn

    from service.settings import Settings

    settings = Settings()
    if workers > 1 and settings.resolved_database_url.startswith("sqlite"):
        fail("--workers > 1 needs a shared database: set HEADSHOT_DATABASE_URL to PostgreSQL")
    uvicorn.run(
        "service.app:create_app",
        factory=True,
        host=host or settings.host,
        port=port or settings.port,
        workers=workers,
        # X-Forwarded-For is believed from HEADSHOT_TRUSTED_PROXIES only (uvicorn's own default trusts 127.0.0.1)
        proxy_headers=bool(settings.trusted_proxies.strip()),
        forwarded_allow_ips=settings.trusted_proxies.strip() or None,
    )


@app.command()
@reports_errors
def worker(
    queues: Annotated[
        str, typer.Option(help="gpu (train, render), cpu (score), webhooks (deliveries), comma-separated.")
    ] = "gpu,cpu,webhooks",
    name: Annotated[str | None, typer.Option(help="This worker's name in job records (default host:pid).")] = None,
) -> None:
    """Run job stages from the Celery queues on HEADSHOT_BROKER_URL (one stage at a time per process)."""
    from service.worker import QUEUES, run_worker

    worker_services = services()
    if not worker_services.settings.broker_url:
        fail("a worker needs a broker: set HEADSHOT_BROKER_URL, e.g. redis://127.0.0.1:6379/0")
    chosen = [queue.strip() for queue in queues.split(",") if queue.strip()]
    unknown = sorted(set(chosen) - set(QUEUES))
    if not chosen or unknown:
        fail(f"unknown queue {', '.join(unknown) or '(none)'}; use gpu, cpu, webhooks or several, comma-separated")
    run_worker(worker_services, chosen, name)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply pending migrations to HEADSHOT_DATABASE_URL (SQLite is upgraded on first use anyway)."""
    from sqlalchemy.exc import OperationalError

    from service.database import current_revision, new_engine, upgrade
    from service.settings import Settings

    engine = new_engine(Settings().resolved_database_url)
    try:
        before = current_revision(engine)
        after = upgrade(engine)
    except OperationalError as exc:
        fail(f"cannot reach the database {engine.url.render_as_string(hide_password=True)}: {exc.orig}")
    console.print(f"database schema at {after}" + (" (was already)" if before == after else f" (was {before})"))
