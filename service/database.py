"""The database engine: SQLite in the data directory by default; PostgreSQL (`postgresql+psycopg://...`) too."""

from functools import lru_cache
from pathlib import Path

from sqlalchemy import Engine
from sqlmodel import SQLModel, create_engine


@lru_cache(maxsize=4)
def engine_for(url: str) -> Engine:
    """One engine per database URL and process, with the schema created."""
    import service.registry
    import service.tables  # noqa: F401

    options: dict = {"pool_pre_ping": True}
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        options["connect_args"] = {"check_same_thread": False, "timeout": 30}
    engine = create_engine(url, **options)
    SQLModel.metadata.create_all(engine)
    return engine
