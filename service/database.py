"""The database: SQLite in the data directory by default, PostgreSQL (`postgresql+psycopg://...`) too.

The schema is managed by Alembic migrations (`service/migrations/`). An embedded SQLite database is brought
up to date on first use; a shared PostgreSQL database is upgraded by the operator (`headshot db upgrade`),
so that several replicas starting at once never race to migrate it.
"""

from pathlib import Path

from sqlalchemy import Engine, create_engine

from service.files import private_file

MIGRATIONS = Path(__file__).with_name("migrations")
IDLE_IN_TRANSACTION_MS = 60_000


class DatabaseError(RuntimeError):
    """The database cannot be used as it is; the message says what to do."""


def engine_for(url: str) -> Engine:
    """An engine with an up-to-date schema (service/services.py keeps one per process)."""
    engine = new_engine(url)
    if url.startswith("sqlite:///"):
        upgrade(engine)
    elif current_revision(engine) != head_revision():
        raise DatabaseError(
            f"the database schema is not up to date (at {current_revision(engine) or 'nothing'}, needs "
            f"{head_revision()}); run `headshot db upgrade` once"
        )
    return engine


def new_engine(url: str) -> Engine:
    """An engine with the service's options, its schema not checked (`headshot db upgrade` migrates it).

    A SQLite file is created readable by this user only; SQLite gives its journal and WAL files the same mode.
    """
    # hide_parameters: errors and logs never repeat the values in a statement (names, consent records)
    options: dict = {"pool_pre_ping": True, "hide_parameters": True}
    if url.startswith("sqlite:///"):
        private_file(Path(url.removeprefix("sqlite:///")))
        options["connect_args"] = {"check_same_thread": False, "timeout": 30}
    elif url.startswith("postgresql"):
        # No transaction of ours waits long on anything but the database; a process frozen inside one (a
        # stopped VM, a paused worker) would hold its row locks, and with them its jobs, until it woke.
        options["connect_args"] = {"options": f"-c idle_in_transaction_session_timeout={IDLE_IN_TRANSACTION_MS}"}
    return create_engine(url, **options)


def upgrade(engine: Engine) -> str:
    """Apply every pending migration; returns the revision now current."""
    from alembic import command

    with engine.begin() as connection:
        config = _config()
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
    return current_revision(engine)


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_config()).get_current_head()


def _config():
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config
