"""The audit log as a hash chain: every event carries the hash of the one before it, so an edited, deleted or
reordered row breaks the chain where it happened (`headshot audit verify`).

The format (fixed: changing it would break every chain already written):

- An event's canonical form is the JSON object of its columns except `id` and `hash` (so `seq` and
  `prev_hash` are in it), with NULL columns left out (a column added later, NULL in older rows, leaves their
  hashes valid), datetimes as ISO 8601 in UTC with microseconds (`2026-12-01T12:00:00.000000+00:00`),
  serialised with sorted keys, no whitespace and every non-ASCII character escaped as `\\uXXXX`: in Python,
  `json.dumps(fields, sort_keys=True, separators=(",", ":"))`, whose output is ASCII.
- `hash` is the lower-case hex SHA-256 of those bytes; `prev_hash` of the first event (`seq` 1) is 64 zeros.

One chain per installation, written by every API replica and worker. Writers never fork it: an event is
appended when its transaction commits (with the change it records, or not at all), and appending starts
with `UPDATE audit_chain_head SET seq = seq + 1 ... RETURNING seq, hash`. On PostgreSQL that UPDATE locks
the head row until the transaction ends, so concurrent writers queue on it and each one reads the head its
predecessor committed; on SQLite the UPDATE takes the database's write lock, with the same effect. `seq`
is also unique, so two events in one place could not both commit even if a writer bypassed the head. The
lock is held only from the append to the commit (a few milliseconds), not for the whole request.
"""

import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from sqlalchemy import bindparam, event, insert, select, update
from sqlalchemy.orm import Session

from service.tables import AuditAnchor, AuditChainHead, AuditEvent

GENESIS = "0" * 64
NOT_HASHED = ("id", "hash")
_PENDING = "headshot.audit_pending"


class AuditChainError(RuntimeError):
    """The chain cannot be appended to; the message says why."""


def canonical(fields: Mapping) -> bytes:
    """The canonical serialisation (see the module's docstring) of a JSON-compatible mapping."""
    return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode("ascii")


def _json_value(value):
    if isinstance(value, dt.datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
        return aware.astimezone(dt.UTC).isoformat(timespec="microseconds")
    if isinstance(value, str | int | float | bool):
        return value
    return str(value)


def hashed_fields(columns: Mapping) -> dict:
    """What an event's hash covers, from its column values (a row mapping or `event_columns(event)`)."""
    return {name: _json_value(value) for name, value in columns.items() if name not in NOT_HASHED and value is not None}


def event_hash(columns: Mapping) -> str:
    return hashlib.sha256(canonical(hashed_fields(columns))).hexdigest()


def event_columns(audit_event: AuditEvent) -> dict:
    return {column.name: getattr(audit_event, column.name) for column in AuditEvent.__table__.columns}


# -- writing ---------------------------------------------------------------------------------------------


def record(session: Session, audit_event: AuditEvent) -> None:
    """Append `audit_event` to the chain when `session` commits, in the same transaction as the caller's
    change; a rollback drops it with the change."""
    if session.get_transaction() is None:
        session.begin()  # as session.add() would: so that a rollback, even of nothing else, drops the event
    session.info.setdefault(_PENDING, []).append(audit_event)


_HEAD = AuditChainHead.__table__
_ADVANCE = update(_HEAD).where(_HEAD.c.id == 1).values(seq=_HEAD.c.seq + 1).returning(_HEAD.c.seq, _HEAD.c.hash)
_SET_HEAD_HASH = update(_HEAD).where(_HEAD.c.id == 1).values(hash=bindparam("head_hash"))
_INSERT = insert(AuditEvent.__table__)


@event.listens_for(Session, "before_commit")
def _append_pending(session: Session) -> None:
    pending = session.info.pop(_PENDING, [])
    if not pending:
        return
    session.flush()  # the caller's own changes first: the head stays locked only for the append and the commit
    connection = session.connection()
    for audit_event in pending:
        head = connection.execute(_ADVANCE).one_or_none()
        if head is None:
            raise AuditChainError(
                "the audit chain has no head row: the database predates migration 0005 (run `headshot db "
                "upgrade`) or the row was deleted (`headshot audit verify` says what else changed)"
            )
        audit_event.seq, audit_event.prev_hash = head.seq, head.hash
        audit_event.at = dt.datetime.now(dt.UTC)  # the time it joined the log: in chain order
        audit_event.hash = event_hash(event_columns(audit_event))
        connection.execute(_INSERT, [{k: v for k, v in event_columns(audit_event).items() if k != "id"}])
        connection.execute(_SET_HEAD_HASH, {"head_hash": audit_event.hash})


@event.listens_for(Session, "after_soft_rollback")
def _drop_pending(session: Session, previous_transaction) -> None:
    if not previous_transaction.nested:  # a savepoint rolled back leaves the outer transaction's events
        session.info.pop(_PENDING, None)


# -- verifying -------------------------------------------------------------------------------------------


@dataclass
class ChainProblem:
    seq: int | None
    event_id: int | None
    reason: str


@dataclass
class AnchorCheck:
    seq: int
    hash: str
    source: str  # "database" or the file it came from
    tsa_url: str | None
    time_stamped_at: str | None
    tsa: str | None  # the authority's certificate subject
    tsa_trusted: bool
    problem: str | None = None


@dataclass
class ChainReport:
    events: int
    head_seq: int
    head_hash: str
    problem: ChainProblem | None
    anchors: list[AnchorCheck] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        return self.problem is None and all(anchor.problem is None for anchor in self.anchors)

    def as_dict(self) -> dict:
        return {
            "intact": self.intact,
            "events": self.events,
            "head": {"seq": self.head_seq, "hash": self.head_hash},
            "problem": vars(self.problem) if self.problem else None,
            "anchors": [vars(anchor) for anchor in self.anchors],
        }


@dataclass(frozen=True)
class AnchorRecord:
    """An anchor as stored, or as `headshot audit anchor --out` wrote it for someone to keep."""

    seq: int
    hash: str
    token: str  # base64 DER TimeStampToken
    tsa_url: str | None
    source: str = "database"

    def as_dict(self) -> dict:
        return {"seq": self.seq, "hash": self.hash, "token": self.token, "tsa_url": self.tsa_url}


def verify_chain(
    session: Session, trust_pem: str = "", extra_anchors: Iterable[AnchorRecord] = (), batch: int = 2000
) -> ChainReport:
    """Recompute the chain from event 1 and check the head row and every anchor; the report names the first
    event that does not match (the chain is read in batches, not all at once)."""
    from service.audit_anchor import check_anchor

    anchors = [
        AnchorRecord(row.seq, row.hash, row.token, row.tsa_url)
        for row in session.execute(select(AuditAnchor).order_by(AuditAnchor.seq)).scalars()
    ] + list(extra_anchors)
    wanted = {anchor.seq for anchor in anchors}
    hashes_at: dict[int, str] = {}
    columns = AuditEvent.__table__.columns
    expected_seq, previous, count, problem = 1, GENESIS, 0, None
    last_seq = 0
    while problem is None:
        rows = session.execute(
            select(*columns).where(AuditEvent.seq >= expected_seq).order_by(AuditEvent.seq).limit(batch)
        ).all()
        if not rows:
            break
        for row in rows:
            values = row._mapping
            problem = _problem(values, expected_seq, previous)
            if problem is not None:
                break
            if values["seq"] in wanted:
                hashes_at[values["seq"]] = values["hash"]
            previous, last_seq, expected_seq = values["hash"], values["seq"], values["seq"] + 1
            count += 1
    head = session.get(AuditChainHead, 1)
    if problem is None:
        if head is None:
            problem = ChainProblem(None, None, "the chain's head row is missing (deleted)")
        elif (head.seq, head.hash) != (last_seq, previous):
            problem = ChainProblem(
                last_seq + 1 if head.seq > last_seq else head.seq,
                None,
                f"the chain ends at event #{last_seq}, but its head row says #{head.seq} ({head.hash[:16]}...): "
                + (
                    f"events #{last_seq + 1} to #{head.seq} were deleted from the end"
                    if head.seq > last_seq
                    else "the head row was changed"
                ),
            )
    report = ChainReport(count, head.seq if head else last_seq, head.hash if head else previous, problem)
    for anchor in anchors:
        report.anchors.append(check_anchor(anchor, hashes_at.get(anchor.seq), problem, trust_pem))
    return report


def _problem(values: Mapping, expected_seq: int, previous: str) -> ChainProblem | None:
    seq, event_id = values["seq"], values["id"]
    if seq != expected_seq:
        missing = f"#{expected_seq}" if seq == expected_seq + 1 else f"#{expected_seq} to #{seq - 1}"
        return ChainProblem(
            expected_seq, None, f"event {missing} is missing (deleted): the chain goes on at #{seq} (id {event_id})"
        )
    if values["prev_hash"] != previous:
        return ChainProblem(
            seq,
            event_id,
            f"event #{seq} (id {event_id}) does not follow event #{seq - 1}: it names {values['prev_hash'][:16]}... "
            f"as the previous hash, but #{seq - 1} hashes to {previous[:16]}... (rows reordered, or an earlier "
            "event replaced)",
        )
    if event_hash(values) != values["hash"]:
        return ChainProblem(seq, event_id, f"event #{seq} (id {event_id}) does not match its hash: it was edited")
    return None
