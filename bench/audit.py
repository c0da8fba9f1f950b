"""The cost of the hash-chained audit log: appending an event, and verifying the chain, on SQLite and PostgreSQL.

    .venv/bin/python bench/audit.py [--events 200] [--writers 4] [--verify 20000] [--json]

For each database (a SQLite file in a temporary folder, and a fresh PostgreSQL database on
HEADSHOT_BENCH_POSTGRES, default postgresql://postgres@127.0.0.1:5432/postgres, when it answers):

- one writer: the median of `--events` transactions that each record one audit event and commit, chained
  (`service.deps.audit`: UPDATE of the head row ... RETURNING, SHA-256 of the canonical event, INSERT,
  UPDATE of the head), next to the reference: the same event INSERTed and committed with its chain fields
  already filled in, which is what recording an event cost before the chain;
- `--writers` processes at once, each committing `--events` events: events/s, chained and reference (the
  chain's head row is where concurrent writers queue);
- `verify_chain` from the first event, once the chain has `--verify` events (added in bulk): events/s.
"""

import argparse
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

POSTGRES_ADMIN_URL = os.environ.get("HEADSHOT_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")


def _caller(name: str):
    from service.deps import Caller

    return Caller(f"key-{name}", name, "studio", "bench")


def chained(url: str, name: str, count: int) -> list[float]:
    """Seconds per transaction: `audit` + commit."""
    from sqlmodel import Session

    from service.database import engine_for
    from service.deps import audit

    engine, caller, times = engine_for(url), _caller(name), []
    for index in range(count):
        start = time.perf_counter()
        with Session(engine) as session:
            audit(session, caller, "verify", "upload", uuid.uuid4().hex, f"event {index}")
            session.commit()
        times.append(time.perf_counter() - start)
    return times


def unchained(url: str, name: str, count: int, first_seq: int) -> list[float]:
    """Seconds per transaction: the same event INSERTed as it was before the chain (seq made unique here)."""
    from sqlmodel import Session

    from service.database import engine_for
    from service.tables import AuditEvent

    engine, caller, times = engine_for(url), _caller(name), []
    for index in range(count):
        start = time.perf_counter()
        with Session(engine) as session:
            session.add(
                AuditEvent(
                    key_name=caller.key_name,
                    role=caller.role,
                    tenant=caller.tenant,
                    action="verify",
                    object_type="upload",
                    object_id=uuid.uuid4().hex,
                    detail=f"event {index}",
                    seq=first_seq + index,
                    prev_hash="0" * 64,
                    hash="0" * 64,
                )
            )
            session.commit()
        times.append(time.perf_counter() - start)
    return times


def _in_process(job: tuple) -> float:
    kind, url, name, count, first_seq, start_at = job
    if kind == "chained":  # one event first: imports, the engine, its pool
        chained(url, f"{name}-warm-up", 1)
    else:
        unchained(url, f"{name}-warm-up", 1, first_seq + count)
    time.sleep(max(0.0, start_at - time.time()))
    begun = time.perf_counter()
    if kind == "chained":
        chained(url, name, count)
    else:
        unchained(url, name, count, first_seq)
    return time.perf_counter() - begun


def concurrent(kind: str, url: str, writers: int, count: int, first_seq: int) -> float:
    """Events per second with `writers` processes committing `count` events each, all at once."""
    start_at = time.time() + 8  # after every process has imported the service and written one event
    jobs = [(kind, url, f"w{n}", count, first_seq + n * (count + 1), start_at) for n in range(writers)]
    with multiprocessing.get_context("spawn").Pool(writers) as pool:
        walls = pool.map(_in_process, jobs)
    return writers * count / max(walls)


def grow_chain(url: str, length: int) -> None:
    """Append chained events in bulk (one transaction) until the chain holds `length` events."""
    import datetime as dt

    from sqlalchemy import insert
    from sqlmodel import Session

    from service.audit_chain import event_hash
    from service.database import engine_for
    from service.tables import AuditChainHead, AuditEvent

    with Session(engine_for(url)) as session:
        head = session.get(AuditChainHead, 1)
        rows, previous = [], head.hash
        for seq in range(head.seq + 1, length + 1):
            row = {
                "at": dt.datetime.now(dt.UTC),
                "key_name": "bulk",
                "role": "studio",
                "tenant": "bench",
                "action": "verify",
                "object_type": "upload",
                "object_id": uuid.uuid4().hex,
                "detail": "",
                "seq": seq,
                "prev_hash": previous,
            }
            row["hash"] = previous = event_hash(row)
            rows.append(row)
        if rows:
            session.execute(insert(AuditEvent), rows)
            head.seq, head.hash = length, previous
            session.add(head)
            session.commit()


def verify_rate(url: str) -> tuple[int, float, bool]:
    from sqlmodel import Session

    from service.audit_chain import verify_chain
    from service.database import engine_for

    with Session(engine_for(url)) as session:
        start = time.perf_counter()
        report = verify_chain(session)
        return report.events, report.events / (time.perf_counter() - start), report.intact


def measure(url: str, events: int, writers: int, verify_events: int) -> dict:
    from sqlalchemy import create_engine, delete

    from service.database import engine_for, upgrade
    from service.tables import AuditEvent

    if url.startswith("postgresql"):
        upgrade(create_engine(url))  # as `headshot db upgrade` does
    one_chained = chained(url, "single", events)
    one_reference = unchained(url, "single", events, 10_000_000)
    many_chained = concurrent("chained", url, writers, events, 0)
    many_reference = concurrent("unchained", url, writers, events, 20_000_000)
    # the reference rows are not part of the chain: remove them, then grow the chain to --verify events
    with engine_for(url).begin() as connection:
        connection.execute(delete(AuditEvent).where(AuditEvent.seq >= 10_000_000))
    grow_chain(url, verify_events)
    verified, rate, intact = verify_rate(url)
    return {
        "single_chained_ms": statistics.median(one_chained) * 1000,
        "single_reference_ms": statistics.median(one_reference) * 1000,
        "concurrent_chained_per_s": many_chained,
        "concurrent_reference_per_s": many_reference,
        "verified_events": verified,
        "verify_per_s": rate,
        "intact": intact,
    }


def postgres_database():
    import psycopg

    try:
        admin = psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError:
        return None, None
    name = f"headshot_bench_{uuid.uuid4().hex[:10]}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    return name, POSTGRES_ADMIN_URL.replace("postgresql://", "postgresql+psycopg://").rsplit("/", 1)[0] + f"/{name}"


def drop_postgres(name: str) -> None:
    import psycopg

    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200, help="events per writer")
    parser.add_argument("--writers", type=int, default=4, help="concurrent writer processes")
    parser.add_argument("--verify", type=int, default=20000, help="chain length to verify")
    parser.add_argument("--json", action="store_true", help="print the measurements as one JSON line")
    args = parser.parse_args()

    results = {}
    with tempfile.TemporaryDirectory() as directory:
        results["SQLite"] = measure(f"sqlite:///{directory}/bench.db", args.events, args.writers, args.verify)
    name, url = postgres_database()
    if url is not None:
        try:
            results["PostgreSQL"] = measure(url, args.events, args.writers, args.verify)
        finally:
            drop_postgres(name)
    if args.json:
        print(json.dumps(results))
        return

    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"audit events: one writer ({args.events} commits, median) and {args.writers} writer processes at once"
    )
    for column in ("database", "measure", "chained (ours)", "reference: plain INSERT", "ratio"):
        table.add_column(column, justify="right" if column in ("chained (ours)", "ratio") else "left")
    for database, result in results.items():
        table.add_row(
            database,
            "one event + commit",
            f"{result['single_chained_ms']:.2f} ms",
            f"{result['single_reference_ms']:.2f} ms",
            f"{result['single_chained_ms'] / result['single_reference_ms']:.2f}",
        )
        table.add_row(
            database,
            f"{args.writers} writers, events/s",
            f"{result['concurrent_chained_per_s']:.0f}",
            f"{result['concurrent_reference_per_s']:.0f}",
            f"{result['concurrent_chained_per_s'] / result['concurrent_reference_per_s']:.2f}",
        )
        table.add_row(
            database,
            f"audit verify, {result['verified_events']:,} events",
            f"{result['verify_per_s']:,.0f} events/s" + ("" if result["intact"] else " (NOT intact)"),
            "",
            "",
        )
    Console(width=120).print(table)


if __name__ == "__main__":
    main()
