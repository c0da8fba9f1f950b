"""The soft-binding registry in the database, with an in-memory fingerprint index kept current from it."""

import datetime as dt
import json
import threading
import time
from collections.abc import Iterable

import numpy as np
from sqlalchemy import BigInteger, Column, Integer, LargeBinary, Text, cast, func
from sqlmodel import Field, Session, SQLModel, select

from provenance.fingerprint import FRAME_VARIANTS, Fingerprints
from provenance.registry import Candidate, FingerprintIndex, RegistryEntry

_VARIANTS = len(FRAME_VARIANTS)


class RegisteredImage(SQLModel, table=True):
    __tablename__ = "registered_images"

    id: int | None = Field(default=None, primary_key=True)
    payload: int = Field(sa_column=Column(BigInteger, unique=True, index=True, nullable=False))
    manifest_label: str = Field(index=True)
    frame_hashes: bytes = Field(sa_column=Column(LargeBinary, nullable=False))  # 7 x 8 bytes, big-endian
    face_hash: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    signed_sha256: str = Field(index=True)
    mime_type: str
    watermarked: bool
    manifest_json: str = Field(sa_column=Column(Text, nullable=False))
    created_at: dt.datetime
    job_id: str | None = Field(default=None, index=True)  # the job that disclosed it, if a service job did


class DatabaseRegistry:
    """SoftBindingRegistry over the `registered_images` table.

    The index holds every image's fingerprints in memory. Watermark payloads are always looked up in the
    table itself; for fingerprint queries the index reads the rows other processes added at most
    `max_staleness` seconds ago (a row this process adds is indexed at once), so every process answers
    the same within that bound.
    """

    def __init__(self, engine, max_staleness: float = 1.0):
        self.engine = engine
        self.max_staleness = max_staleness
        self._index = FingerprintIndex()
        self._last_id = 0
        self._refreshed_at = float("-inf")
        self._lock = threading.Lock()
        self._refresh()

    def add(self, entry: RegistryEntry, job_id: str | None = None, fence=None) -> None:
        """Register an image; `fence(session)`, if given, runs first in the same transaction and may raise
        to refuse it (a job's lease: service/jobs.py)."""
        row = RegisteredImage(
            payload=_signed(entry.payload),
            manifest_label=entry.manifest_label,
            frame_hashes=b"".join(value.to_bytes(8, "big") for value in entry.fingerprints.frame),
            face_hash=None if entry.fingerprints.face is None else _signed(entry.fingerprints.face),
            signed_sha256=entry.signed_sha256,
            mime_type=entry.mime_type,
            watermarked=entry.watermarked,
            manifest_json=json.dumps(entry.manifest),
            created_at=entry.created_at,
            job_id=job_id,
        )
        with Session(self.engine) as session:
            if fence is not None:
                fence(session)
            session.add(row)
            session.commit()
        self._refresh()

    def find_payload(self, payload: int) -> RegistryEntry | None:
        with Session(self.engine) as session:
            row = session.exec(select(RegisteredImage).where(RegisteredImage.payload == _signed(payload))).first()
        return _entry(row) if row else None

    def candidates(self, query: Fingerprints, frame_threshold: int, face_threshold: int) -> list[Candidate]:
        if time.monotonic() - self._refreshed_at >= self.max_staleness:
            self._refresh()
        hits = self._index.search(query, frame_threshold, face_threshold)
        if not hits:
            return []
        with Session(self.engine) as session:
            keys = [_signed(payload) for payload, _, _ in hits]
            rows = session.exec(select(RegisteredImage).where(RegisteredImage.payload.in_(keys))).all()
        entries = {_unsigned(row.payload): _entry(row) for row in rows}
        return [Candidate(entries[payload], frame, face) for payload, frame, face in hits if payload in entries]

    def forget_job(self, job_id: str, keep: Iterable[str] = ()) -> None:
        """Remove what a job registered, except the manifests in `keep` (delivered headshots). Their
        fingerprints stay in each process's index until restart, but nothing matches them any more:
        candidates are read back from the table."""
        keep = set(keep)
        with Session(self.engine) as session:
            for row in session.exec(select(RegisteredImage).where(RegisteredImage.job_id == job_id)):
                if row.manifest_label not in keep:
                    session.delete(row)
            session.commit()

    def strip_personal_data(self, manifest_label: str) -> None:
        """Keep a delivered image recognisable, without its ingredients (the reference photos' hashes)."""
        with Session(self.engine) as session:
            for row in session.exec(select(RegisteredImage).where(RegisteredImage.manifest_label == manifest_label)):
                manifest = json.loads(row.manifest_json)
                manifest.pop("ingredients", None)
                manifest["headshot_erasure"] = "ingredients removed when the subject was erased"
                row.manifest_json = json.dumps(manifest)
                session.add(row)
            session.commit()

    def count(self) -> int:
        with Session(self.engine) as session:
            return session.exec(select(func.count()).select_from(RegisteredImage)).one()

    def stats(self) -> dict:
        self._refresh()
        with Session(self.engine) as session:
            total, watermarked, first, last = session.exec(
                select(
                    func.count(),
                    func.sum(cast(RegisteredImage.watermarked, Integer)),
                    func.min(RegisteredImage.created_at),
                    func.max(RegisteredImage.created_at),
                )
            ).one()
            formats = dict(
                session.exec(select(RegisteredImage.mime_type, func.count()).group_by(RegisteredImage.mime_type)).all()
            )
        return {
            "images": total,
            "watermarked": int(watermarked or 0),
            "with_face_hash": self._index.faces_count(),
            "formats": formats,
            "first_registered": first.isoformat() if first else None,
            "last_registered": last.isoformat() if last else None,
            "index_bytes": self._index.nbytes(),
        }

    def _refresh(self, batch: int = 100_000) -> None:
        """Append rows that other processes (or this one) added since the last refresh, in batches."""
        columns = (RegisteredImage.id, RegisteredImage.payload, RegisteredImage.frame_hashes, RegisteredImage.face_hash)
        with self._lock, Session(self.engine) as session:
            self._refreshed_at = time.monotonic()
            while rows := session.exec(
                select(*columns).where(RegisteredImage.id > self._last_id).order_by(RegisteredImage.id).limit(batch)
            ).all():
                ids, payloads, frames, faces = zip(*rows, strict=True)
                self._index.extend_arrays(
                    np.array([_unsigned(payload) for payload in payloads], dtype=np.uint64),
                    np.frombuffer(b"".join(frames), dtype=">u8").reshape(len(rows), _VARIANTS).T,
                    np.array([_unsigned(face) if face is not None else 0 for face in faces], dtype=np.uint64),
                    np.array([face is not None for face in faces]),
                )
                self._last_id = ids[-1]


def _entry(row: RegisteredImage) -> RegistryEntry:
    frame = tuple(int.from_bytes(row.frame_hashes[i : i + 8], "big") for i in range(0, 8 * _VARIANTS, 8))
    return RegistryEntry(
        payload=_unsigned(row.payload),
        manifest_label=row.manifest_label,
        fingerprints=Fingerprints(frame=frame, face=None if row.face_hash is None else _unsigned(row.face_hash)),
        signed_sha256=row.signed_sha256,
        mime_type=row.mime_type,
        manifest=json.loads(row.manifest_json),
        watermarked=row.watermarked,
        created_at=row.created_at,
    )


def _signed(value: int) -> int:
    """64-bit unsigned values are stored in signed BIGINT columns."""
    return value - (1 << 64) if value >= 1 << 63 else value


def _unsigned(value: int) -> int:
    return value + (1 << 64) if value < 0 else value
