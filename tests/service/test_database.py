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
        engine = engine_for(url)
        assert current_revision(engine) == head_revision()
        engine.dispose()


def test_unreachable_database_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HEADSHOT_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("HEADSHOT_DATABASE_URL", "postgresql+psycopg://nobody@127.0.0.1:1/none")
    result = CliRunner().invoke(app, ["db", "upgrade"])
    assert result.exit_code == 1 and "cannot reach the database" in result.output


def test_migration_0002_turns_paths_into_storage_keys(tmp_path):
    """A database made by 0.1 (revision 0001, absolute paths) keeps its files and LoRAs after upgrading."""
    import sqlalchemy as sa
    from alembic import command

    engine = sa.create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    with engine.begin() as connection:
        config = _config()
        config.attributes["connection"] = connection
        command.upgrade(config, "0001")
        now = "2026-11-30 12:00:00.000000"
        connection.execute(
            sa.text("INSERT INTO subjects VALUES ('s1', 't', 'Ada', 'Ada', '[\"training\"]', 'v1', :now, NULL, :now)"),
            {"now": now},
        )
        connection.execute(
            sa.text(
                "INSERT INTO photos VALUES ('p1', 's1', 't', 'abc', NULL, "
                "'/srv/jobs/data/subjects/s1/photos/abc.jpg', 'image/jpeg', 1, 'accepted', 'none', NULL, :now)"
            ),
            {"now": now},
        )
        connection.execute(
            sa.text(
                "INSERT INTO jobs (id, tenant, subject_id, kind, parameters, status, step, total_steps, progress, "
                "cancel_requested, created_by, created_at) VALUES "
                "('j1', 't', 's1', 'train', '{}', 'succeeded', 4, 4, 1.0, 0, 'k', :now), "
                "('j2', 't', 's1', 'generate', '{}', 'succeeded', 0, 0, 1.0, 0, 'k', :now)"
            ),
            {"now": now},
        )
        connection.execute(
            sa.text(
                "INSERT INTO headshots VALUES ('h1', 't', 's1', 'j2', '/srv/jobs/data/jobs/j2/pack/images/a-1.png', "
                "'image/png', 'urn:c2pa:x', '00', 'a', 1, '{}', 1, NULL, :now)"
            ),
            {"now": now},
        )
    upgraded = engine_for(f"sqlite:///{tmp_path / 'old.db'}")  # migrated on first use
    with upgraded.connect() as connection:
        assert connection.execute(sa.text("SELECT storage_key FROM photos")).scalar() == "subjects/s1/photos/abc.jpg"
        assert connection.execute(sa.text("SELECT storage_key FROM headshots")).scalar() == (
            "jobs/j2/pack/images/a-1.png"
        )
        loras = dict(connection.execute(sa.text("SELECT id, lora_key FROM jobs")).all())
        assert loras == {"j1": "jobs/j1/lora/", "j2": None}  # a prefix, as new LoRA keys are
        stages = connection.execute(sa.text("SELECT DISTINCT stage, attempt FROM jobs")).all()
        assert stages == [("train", 0)]
