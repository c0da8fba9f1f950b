"""The service's tables (SQLModel): keys, audit log (hash-chained, with its anchors), subjects with consent,
photos, jobs, headshots, tombstones, webhooks and their deliveries.

Every tenant-owned row carries `tenant`; the API filters on it (admin keys see all tenants).
"""

import datetime as dt
import uuid

from sqlalchemy import BigInteger, Column, Index, Text, text
from sqlmodel import Field, SQLModel


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _id() -> str:
    return uuid.uuid4().hex


class ApiKey(SQLModel, table=True):
    __tablename__ = "api_keys"
    __table_args__ = (  # a name tells one active key of a tenant from its others (`headshot keys revoke NAME`)
        Index(
            "uq_api_keys_active_name",
            "tenant",
            "name",
            unique=True,
            sqlite_where=text("revoked_at IS NULL"),
            postgresql_where=text("revoked_at IS NULL"),
        ),
    )

    id: str = Field(default_factory=_id, primary_key=True)
    name: str = Field(index=True)
    role: str  # admin | studio | verifier | auditor
    tenant: str = Field(default="default", index=True)
    key_hash: str = Field(unique=True, index=True)  # SHA-256 of the key: keys are 256-bit random, never stored
    prefix: str  # the first characters, to tell keys apart in listings
    created_at: dt.datetime = Field(default_factory=_now)
    expires_at: dt.datetime | None = None
    revoked_at: dt.datetime | None = None


class AuditEvent(SQLModel, table=True):
    """One event of the audit log; `seq`, `prev_hash` and `hash` chain it to the one before
    (service/audit_chain.py). New columns must be nullable: a NULL is left out of the hash, so the hashes
    of the rows written before the column existed stay valid."""

    __tablename__ = "audit_events"

    id: int | None = Field(default=None, primary_key=True)
    at: dt.datetime = Field(default_factory=_now, index=True)
    key_id: str | None = Field(default=None, index=True)  # the API key's id (names can be reused once revoked)
    key_name: str
    role: str
    tenant: str = Field(index=True)
    action: str
    object_type: str
    object_id: str = Field(index=True)
    detail: str = ""
    seq: int = Field(unique=True, index=True)  # the event's place in the chain: 1, 2, 3...
    prev_hash: str  # the hash of event seq - 1 (64 zeros for the first)
    hash: str  # SHA-256 of the canonical event, prev_hash included


class AuditChainHead(SQLModel, table=True):
    """The chain's last event, in one row that every writer locks (UPDATE) to append."""

    __tablename__ = "audit_chain_head"

    id: int = Field(default=1, primary_key=True)
    seq: int
    hash: str


class AuditAnchor(SQLModel, table=True):
    """An RFC 3161 time-stamp token over the chain's head at one moment (`headshot audit anchor`)."""

    __tablename__ = "audit_anchors"

    id: int | None = Field(default=None, primary_key=True)
    seq: int = Field(index=True)
    hash: str
    tsa_url: str
    token: str = Field(sa_column=Column(Text, nullable=False))  # base64 of the DER TimeStampToken
    time_stamped_at: dt.datetime  # the authority's genTime
    created_at: dt.datetime = Field(default_factory=_now)


class Subject(SQLModel, table=True):
    __tablename__ = "subjects"

    id: str = Field(default_factory=_id, primary_key=True)
    tenant: str = Field(index=True)
    display_name: str
    consent_given_by: str
    consent_scope: str
    consent_text_version: str
    consent_given_at: dt.datetime
    consent_withdrawn_at: dt.datetime | None = None
    created_at: dt.datetime = Field(default_factory=_now)


class Photo(SQLModel, table=True):
    __tablename__ = "photos"

    id: str = Field(default_factory=_id, primary_key=True)
    subject_id: str = Field(index=True, foreign_key="subjects.id")
    tenant: str = Field(index=True)
    sha256: str = Field(index=True)  # of the original bytes: the photo's identity
    frame_hash: str | None = None  # 64-bit perceptual hash in hex, for near-duplicate training lookups
    storage_key: str  # the stored copy (service/storage.py)
    mime_type: str
    accepted: bool
    reason: str
    credentials_state: str  # what the photo's own Content Credentials said
    training_mining: str | None = Field(default=None, sa_column=Column(Text))
    created_at: dt.datetime = Field(default_factory=_now)


class Job(SQLModel, table=True):
    __tablename__ = "jobs"

    id: str = Field(default_factory=_id, primary_key=True)
    tenant: str = Field(index=True)
    subject_id: str = Field(index=True, foreign_key="subjects.id")
    kind: str  # train | generate | pack | preview
    parameters: str = Field(sa_column=Column(Text, nullable=False))  # JSON
    status: str = Field(default="queued", index=True)  # queued running succeeded failed cancelled interrupted
    stage: str = "train"  # what runs next or now: train | render | score (service/jobs.py)
    attempt: int = 0  # how many times a worker has claimed it; fences writes of a worker that lost its lease
    worker: str | None = None  # the lease holder
    lease_expires_at: dt.datetime | None = None
    lease_losses: int = 0  # workers that went silent while running its current stage (0 at each new stage)
    dispatched_at: dt.datetime | None = None  # when its current stage was handed to the queue
    lora_key: str | None = None  # storage prefix of the LoRA it trained
    render_key: str | None = None  # storage prefix of the disclosed images it rendered
    step: int = 0
    total_steps: int = 0
    progress: float = 0.0
    loss: float | None = None
    eta_seconds: float | None = None
    error: str | None = None
    cancel_requested: bool = False
    lora_sha256: str | None = None
    model_sha256: str | None = None
    trained_at: dt.datetime | None = None  # when its train stage recorded the LoRA
    created_by: str
    created_at: dt.datetime = Field(default_factory=_now)
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None


class Headshot(SQLModel, table=True):
    __tablename__ = "headshots"

    id: str = Field(default_factory=_id, primary_key=True)
    tenant: str = Field(index=True)
    subject_id: str = Field(index=True, foreign_key="subjects.id")
    job_id: str = Field(index=True)
    storage_key: str
    mime_type: str = "image/png"
    manifest_label: str = Field(index=True)
    watermark_payload: str
    style: str
    seed: int = Field(sa_column=Column(BigInteger, nullable=False))  # job seeds reach 2^63 - 1
    report: str = Field(sa_column=Column(Text, nullable=False))  # JSON: parameters, scores, checks, label
    kept: bool
    delivered_at: dt.datetime | None = None
    created_at: dt.datetime = Field(default_factory=_now)


class Tombstone(SQLModel, table=True):
    __tablename__ = "tombstones"

    id: int | None = Field(default=None, primary_key=True)
    subject_id: str = Field(index=True)
    tenant: str = Field(index=True)
    erased_by: str
    erased_at: dt.datetime = Field(default_factory=_now)
    photo_hashes: str = Field(sa_column=Column(Text, nullable=False))  # JSON list of SHA-256
    kept_manifests: str = Field(sa_column=Column(Text, nullable=False))  # JSON: delivered headshots still recognised


class Webhook(SQLModel, table=True):
    """A tenant's endpoint for events (Standard Webhooks); the secret signs each delivery, so it is kept."""

    __tablename__ = "webhooks"

    id: str = Field(default_factory=_id, primary_key=True)
    tenant: str = Field(index=True)
    url: str = Field(sa_column=Column(Text, nullable=False))
    events: str = Field(sa_column=Column(Text, nullable=False))  # JSON list of event types
    secret: str  # whsec_<base64>
    created_by: str
    created_at: dt.datetime = Field(default_factory=_now)


class WebhookDelivery(SQLModel, table=True):
    """One event for one webhook, written in the transaction of the change it announces (an outbox)."""

    __tablename__ = "webhook_deliveries"

    id: str = Field(primary_key=True)  # msg_<hex>: the webhook-id header, the same on every retry
    webhook_id: str = Field(index=True, foreign_key="webhooks.id")
    tenant: str = Field(index=True)
    event_type: str
    payload: str = Field(sa_column=Column(Text, nullable=False))  # the exact JSON body sent
    status: str = Field(default="pending", index=True)  # pending | succeeded | failed
    attempts: int = 0
    next_attempt_at: dt.datetime = Field(default_factory=_now, index=True)
    claimed_until: dt.datetime | None = None  # a dispatcher or sender holds it until then
    last_status_code: int | None = None
    last_error: str | None = None
    attempt_log: str = Field(default="[]", sa_column=Column(Text, nullable=False))  # JSON: one entry per attempt
    created_at: dt.datetime = Field(default_factory=_now)
    finished_at: dt.datetime | None = None
