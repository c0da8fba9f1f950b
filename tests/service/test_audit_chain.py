"""The hash-chained audit log (service/audit_chain.py) and its anchors, through `headshot audit verify` and
`headshot audit anchor`, on SQLite and PostgreSQL, with concurrent writer processes and a local RFC 3161 TSA."""

import base64
import itertools
import json
import subprocess
import sys
import time

import pytest
import sqlalchemy as sa
from sqlmodel import Session, select
from typer.testing import CliRunner

from service.audit_chain import GENESIS, event_hash, verify_chain
from service.background import PeriodicWork
from service.cli import app
from service.database import _config, engine_for
from service.deps import Caller, audit
from service.services import Services
from service.settings import Settings
from service.tables import AuditAnchor, AuditChainHead, AuditEvent
from tests.conftest import fresh_postgres_database
from tests.provenance.tsa_server import TimestampAuthority

CALLER = Caller("key-ops", "ops", "admin", "t")


@pytest.fixture
def run(tmp_path, monkeypatch, database_url):
    monkeypatch.setenv("HEADSHOT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("HEADSHOT_DATABASE_URL", database_url)
    runner = CliRunner()
    return lambda *args: runner.invoke(app, [str(arg) for arg in args])


def _write(engine, count: int, caller: Caller = CALLER) -> None:
    for index in range(count):
        with Session(engine) as session:
            audit(session, caller, "update", "thing", f"thing-{index}", f"détail {index}")
            session.commit()


def _verify(run) -> tuple[int, dict]:
    result = run("audit", "verify", "--json")
    return result.exit_code, json.loads(result.stdout)


def test_an_edited_deleted_or_reordered_event_is_named(run, database_url):
    engine = engine_for(database_url)
    _write(engine, 6)
    with Session(engine) as session:
        audit(session, CALLER, "never", "thing", "x")
        session.rollback()  # what rolls back leaves no event, and no hole
    code, report = _verify(run)
    assert code == 0 and report["intact"] and report["events"] == 6 and report["head"]["seq"] == 6
    with engine.connect() as connection:
        rows = connection.execute(sa.select(AuditEvent.__table__).order_by(AuditEvent.seq)).mappings().all()
    assert [row["seq"] for row in rows] == [1, 2, 3, 4, 5, 6] and rows[0]["prev_hash"] == GENESIS
    assert all(rows[i]["prev_hash"] == rows[i - 1]["hash"] for i in range(1, 6))

    def tamper(*statements):
        with engine.begin() as connection:
            for statement, values in statements:
                connection.execute(sa.text(statement), values)

    tamper(("UPDATE audit_events SET detail = 'nothing happened' WHERE seq = 3", {}))
    code, report = _verify(run)
    assert code == 1 and report["problem"]["seq"] == 3 and "edited" in report["problem"]["reason"]
    result = run("audit", "verify")
    assert result.exit_code == 1 and "event #3" in result.stdout and "edited" in result.stdout
    tamper(("UPDATE audit_events SET detail = :detail WHERE seq = 3", {"detail": rows[2]["detail"]}))
    assert _verify(run)[0] == 0

    tamper(("DELETE FROM audit_events WHERE seq = 4", {}))
    code, report = _verify(run)
    assert code == 1 and report["problem"]["seq"] == 4 and "#4 is missing (deleted)" in report["problem"]["reason"]
    columns = {name: value for name, value in rows[3].items()}
    with engine.begin() as connection:
        connection.execute(sa.insert(AuditEvent.__table__).values(**columns))
    assert _verify(run)[0] == 0

    # reordered: events 2 and 5 swap places
    tamper(
        ("UPDATE audit_events SET seq = -2 WHERE seq = 2", {}),
        ("UPDATE audit_events SET seq = 2 WHERE seq = 5", {}),
        ("UPDATE audit_events SET seq = 5 WHERE seq = -2", {}),
    )
    code, report = _verify(run)
    assert code == 1 and report["problem"]["seq"] == 2 and "does not follow event #1" in report["problem"]["reason"]
    tamper(
        ("UPDATE audit_events SET seq = -2 WHERE seq = 5", {}),
        ("UPDATE audit_events SET seq = 5 WHERE seq = 2", {}),
        ("UPDATE audit_events SET seq = 2 WHERE seq = -2", {}),
    )
    assert _verify(run)[0] == 0

    tamper(("DELETE FROM audit_events WHERE seq = 6", {}))  # the last one: only the head row remembers it
    code, report = _verify(run)
    assert code == 1 and "#6 to #6 were deleted from the end" in report["problem"]["reason"]


WRITER = """
import sys
from sqlmodel import Session
from service.database import engine_for
from service.deps import Caller, audit

url, name, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
engine = engine_for(url)
caller = Caller(f"key-{name}", name, "studio", name)
engine.connect().close()
print("ready", flush=True)
sys.stdin.readline()  # the go: every writer has imported everything and connected by then
for index in range(count):
    with Session(engine) as session:
        audit(session, caller, "write", "thing", f"{name}-{index}")
        session.commit()
"""


def test_concurrent_writer_processes_leave_one_chain(database_url):
    """Four processes (replicas, workers) append at once; the chain stays one line, every event in it."""
    engine = engine_for(database_url)
    processes, per_process = 4, 40
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, database_url, f"writer-{n}", str(per_process)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for n in range(processes)
    ]
    for writer in writers:  # a barrier: they really write at once, however long the imports took
        assert writer.stdout.readline() == b"ready\n", writer.stderr.read().decode()[-2000:]
    for writer in writers:
        writer.stdin.write(b"go\n")
        writer.stdin.flush()
    for writer in writers:
        _, stderr = writer.communicate(timeout=300)
        assert writer.returncode == 0, stderr.decode()[-2000:]
    with Session(engine) as session:
        report = verify_chain(session)
        rows = session.exec(select(AuditEvent.key_name, AuditEvent.seq).order_by(AuditEvent.seq)).all()
    assert report.intact and report.events == processes * per_process, report.as_dict()
    assert [seq for _, seq in rows] == list(range(1, processes * per_process + 1))
    names = [name for name, _ in rows]
    assert sorted(set(names)) == [f"writer-{n}" for n in range(processes)]
    assert all(names.count(name) == per_process for name in set(names))
    switches = sum(1 for a, b in itertools.pairwise(names) if a != b)
    assert switches > processes  # interleaved, not one process after the other


def _old_database_with_events(url: str) -> None:
    """A database at revision 0002 (before the chain) holding three audit events."""
    from alembic import command

    engine = sa.create_engine(url)
    with engine.begin() as connection:
        config = _config()
        config.attributes["connection"] = connection
        command.upgrade(config, "0002")
        for index, moment in enumerate(("2026-11-30 12:00:02", "2026-11-30 12:00:01", "2026-11-30 12:00:03")):
            connection.execute(
                sa.text(
                    "INSERT INTO audit_events (at, key_name, role, tenant, action, object_type, object_id, detail) "
                    "VALUES (:at, 'ops', 'admin', 't', 'create', 'subject', :object, 'é')"
                ),
                {"at": moment + "+00:00" if url.startswith("postgresql") else moment, "object": f"s{index}"},
            )
    engine.dispose()


@pytest.mark.parametrize("engine_kind", ["sqlite", "postgresql"])
def test_migration_chains_the_events_already_written(tmp_path, engine_kind):
    from service.database import upgrade

    def check(url: str) -> None:
        _old_database_with_events(url)
        upgrade(sa.create_engine(url))
        engine = engine_for(url)
        with Session(engine) as session:
            report = verify_chain(session)
            objects = session.exec(select(AuditEvent.object_id).order_by(AuditEvent.seq)).all()
        assert report.intact and report.events == 3, report.as_dict()
        assert objects == ["s1", "s0", "s2"]  # in the order they were written
        _write(engine, 1)  # and it goes on from there
        with Session(engine) as session:
            report = verify_chain(session)
            assert report.intact and report.events == 4 and session.get(AuditChainHead, 1).seq == 4
        engine.dispose()

    if engine_kind == "sqlite":
        check(f"sqlite:///{tmp_path / 'old.db'}")
    else:
        with fresh_postgres_database() as url:
            check(url)


@pytest.fixture
def tsa():
    with TimestampAuthority().serve() as authority:
        yield authority


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_anchors_reveal_a_chain_rewritten_after_them(run, database_url, tsa, tmp_path, monkeypatch):
    engine = engine_for(database_url)
    result = run("audit", "anchor")
    assert result.exit_code == 1 and "HEADSHOT_TIMESTAMP_URL" in result.output
    monkeypatch.setenv("HEADSHOT_TIMESTAMP_URL", tsa.url)
    assert "nothing to anchor yet" in run("audit", "anchor").output
    _write(engine, 4)
    result = run("audit", "anchor", "--out", tmp_path / "anchor.json")
    assert result.exit_code == 0, result.output
    assert "anchored event #4" in result.output and len(tsa.requests) == 1
    kept = json.loads((tmp_path / "anchor.json").read_text())
    assert kept["seq"] == 4 and kept["tsa_url"] == tsa.url
    _write(engine, 2)

    code, report = _verify(run)
    [anchor] = report["anchors"]
    assert code == 0 and anchor["problem"] is None and anchor["seq"] == 4
    assert anchor["tsa"] == "CN=headshot test TSA" and not anchor["tsa_trusted"]  # its root is no anchor here
    (tmp_path / "tsa-root.pem").write_bytes(tsa.root_pem)
    monkeypatch.setenv("HEADSHOT_TRUST_ANCHORS", str(tmp_path / "tsa-root.pem"))
    assert _verify(run)[1]["anchors"][0]["tsa_trusted"]

    # whoever runs the database rewrites event 2 and recomputes every hash after it, and the head
    with engine.begin() as connection:
        rows = connection.execute(sa.select(AuditEvent.__table__).order_by(AuditEvent.seq)).mappings().all()
        previous = rows[0]["hash"]
        for row in rows[1:]:
            columns = {**row, "prev_hash": previous}
            if row["seq"] == 2:
                columns["detail"] = "a different story"
            columns["hash"] = event_hash(columns)
            connection.execute(
                sa.update(AuditEvent.__table__)
                .where(AuditEvent.id == row["id"])
                .values(detail=columns["detail"], prev_hash=previous, hash=columns["hash"])
            )
            previous = columns["hash"]
        connection.execute(sa.update(AuditChainHead.__table__).values(hash=previous))
    code, report = _verify(run)
    assert code == 1 and report["problem"] is None  # the chain alone is consistent again...
    assert "rewritten after that time" in report["anchors"][0]["problem"]  # ...but not with its anchor

    with engine.begin() as connection:  # and if they delete the anchors too, the one kept elsewhere still tells
        connection.execute(sa.delete(AuditAnchor.__table__))
    assert _verify(run)[0] == 0
    result = run("audit", "verify", "--json", "--anchor", tmp_path / "anchor.json")
    assert result.exit_code == 1
    assert "rewritten after that time" in json.loads(result.stdout)["anchors"][0]["problem"]

    forged = {**kept, "hash": previous, "seq": 6}  # an old token passed off for the new head
    (tmp_path / "forged.json").write_text(json.dumps(forged))
    result = run("audit", "verify", "--json", "--anchor", tmp_path / "forged.json")
    assert result.exit_code == 1 and "time-stamps other data" in json.loads(result.stdout)["anchors"][0]["problem"]
    token = bytearray(base64.b64decode(kept["token"]))
    token[-10] ^= 0xFF  # the signature's last bytes
    (tmp_path / "altered.json").write_text(json.dumps({**kept, "token": base64.b64encode(bytes(token)).decode()}))
    result = run("audit", "verify", "--json", "--anchor", tmp_path / "altered.json")
    problem = json.loads(result.stdout)["anchors"][0]["problem"]
    assert result.exit_code == 1 and "is not valid" in problem


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_workers_anchor_the_chain_periodically(tmp_path, database_url, tsa):
    settings = Settings(
        data_dir=tmp_path / "data", database_url=database_url, timestamp_url=tsa.url, audit_anchor_seconds=0.5
    )
    engine = engine_for(database_url)
    periodic = PeriodicWork(Services(settings))
    periodic.run_once()
    assert tsa.requests == []  # nothing written yet, nothing to anchor
    _write(engine, 2)
    for _ in range(3):  # a period apart: the first anchors; the others find the head where it was
        time.sleep(0.6)
        periodic.run_once()
    _write(engine, 1)
    periodic.run_once()  # within the period: not yet
    time.sleep(0.6)
    periodic.run_once()
    with Session(engine) as session:
        anchors = session.exec(select(AuditAnchor.seq).order_by(AuditAnchor.id)).all()
        assert verify_chain(session).intact
    assert anchors == [2, 3] and len(tsa.requests) == 2

    settings.timestamp_url = "http://127.0.0.1:9/tsa"  # the authority is away: logged, nothing breaks
    time.sleep(0.6)
    _write(engine, 1)
    PeriodicWork(Services(settings)).run_once()
    periodic.stop()
