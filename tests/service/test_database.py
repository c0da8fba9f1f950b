import pytest
from typer.testing import CliRunner

from service.cli import app
from service.database import DatabaseError, _config, current_revision, engine_for, head_revision
from tests.conftest import fresh_postgres_database


def test_migrations_match_the_tables(tmp_path):
    """The latest migration creates exactly the schema the SQLModel tables describe."""
    from alembic import command

    engine = engine_for(f"sqlite:///{tmp_path / 'a.db'}")  # migrated on first use
    assert current_revision(engine) == head_revision()
    with engine.begin() as connection:
        config = _config()
        config.attributes["connection"] = connection
        command.check(config)  # raises if autogenerate finds any difference


def test_postgres_needs_db_upgrade(tmp_path, monkeypatch):
    with fresh_postgres_database() as url:
        with pytest.raises(DatabaseError, match="run `headshot db upgrade` once"):
            engine_for(url)
        monkeypatch.setenv("HEADSHOT_DATA_DIR", str(tmp_path))
        monkeypatch.setenv("HEADSHOT_DATABASE_URL", url)
        first = CliRunner().invoke(app, ["db", "upgrade"])
        assert first.exit_code == 0 and f"at {head_revision()} (was None)" in first.output
        again = CliRunner().invoke(app, ["db", "upgrade"])
        assert again.exit_code == 0 and "(was already)" in again.output
        engine_for.cache_clear()
        engine = engine_for(url)
        assert current_revision(engine) == head_revision()
        engine.dispose()


def test_unreachable_database_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HEADSHOT_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("HEADSHOT_DATABASE_URL", "postgresql+psycopg://nobody@127.0.0.1:1/none")
    result = CliRunner().invoke(app, ["db", "upgrade"])
    assert result.exit_code == 1 and "cannot reach the database" in result.output
