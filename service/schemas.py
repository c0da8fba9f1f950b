"""The bodies the API answers with: one model per shape, so /openapi.json documents every response.

Each model is exact (`extra="forbid"`): a route that returns a field its model does not declare fails at once
in the tests, instead of the field being dropped silently. Times are the ISO 8601 strings the service has
always sent (`datetime.isoformat()`), not re-formatted by pydantic. Signed records (service/signed_records.py)
are their document's model plus `jws`, the signature over every other field.
"""

import datetime as dt
import json
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field

from provenance.verify import CredentialsState, Label
from service.tables import Headshot, Job, Subject, Tombstone, Webhook, WebhookDelivery

Timestamp = str  # datetime.isoformat(): with its offset when the database keeps one (PostgreSQL), without on SQLite
JWS = Field(description="The record's signature: a compact JWS over every other field (headshot audit verify-export).")


def _json_value(value):
    """A column's value as the API sends it: a time as its ISO 8601 string, anything else unchanged."""
    return value.isoformat() if isinstance(value, dt.datetime) else value


class Body(BaseModel):
    """A response body: exactly the fields declared, in this order."""

    model_config = ConfigDict(extra="forbid")

    @classmethod
    def from_row(cls, row, **computed) -> Self:
        """The body of a table row: each declared field not in `computed` is the row's column of that name."""
        values = {name: getattr(row, name) for name in cls.model_fields if name not in computed} | computed
        return cls(**{name: _json_value(value) for name, value in values.items()})


class Health(Body):
    status: Literal["ok"]
    version: str


# Subjects


class ConsentOut(Body):
    given_by: str
    scope: list[str]
    text_version: str
    given_at: Timestamp
    withdrawn_at: Timestamp | None


class SubjectOut(Body):
    id: str
    tenant: str
    display_name: str
    consent: ConsentOut
    created_at: Timestamp

    @classmethod
    def from_row(cls, subject: Subject) -> Self:
        consent = ConsentOut(
            given_by=subject.consent_given_by,
            scope=json.loads(subject.consent_scope),
            text_version=subject.consent_text_version,
            given_at=subject.consent_given_at.isoformat(),
            withdrawn_at=_json_value(subject.consent_withdrawn_at),
        )
        return super().from_row(subject, consent=consent)


class PhotoCredentials(Body):
    state: CredentialsState = Field(description="What the photo's own Content Credentials said.")
    training_mining: dict | None = Field(description="Their training-and-mining assertion, if any.")


class PhotoUploaded(Body):
    id: str
    sha256: str
    accepted: bool = Field(description="Whether the photo may be used for training.")
    reason: str
    credentials: PhotoCredentials


class TombstoneOut(Body):
    """What remains of an erased subject: hashes only."""

    subject_id: str
    erased: Literal[True]
    erased_by: str
    erased_at: Timestamp
    photo_hashes: list[str]
    delivered_headshots_still_recognised: list[str] = Field(
        description="Manifest labels of delivered headshots that still verify as ai_soft_binding."
    )

    @classmethod
    def from_row(cls, tombstone: Tombstone) -> Self:
        return super().from_row(
            tombstone,
            erased=True,
            photo_hashes=json.loads(tombstone.photo_hashes),
            delivered_headshots_still_recognised=json.loads(tombstone.kept_manifests),
        )


# Jobs and headshots


class JobOut(Body):
    id: str
    subject_id: str
    kind: str
    status: str
    stage: str
    attempt: int
    worker: str | None
    progress: float
    step: int
    total_steps: int
    loss: float | None
    eta_seconds: float | None
    error: str | None
    parameters: dict
    lora_sha256: str | None
    model_sha256: str | None
    created_at: Timestamp
    started_at: Timestamp | None
    finished_at: Timestamp | None

    @classmethod
    def from_row(cls, job: Job) -> Self:
        return super().from_row(
            job,
            # of the current stage: 2 once a worker running it was lost; an interrupted stage ran lease_losses times
            attempt=job.lease_losses + (0 if job.status == "interrupted" else 1),
            progress=round(job.progress, 4),
            parameters=json.loads(job.parameters),
        )


class LikenessOut(Body):
    """scoring.likeness.LikenessScore."""

    distance: float
    confidence: float
    band: str
    near_copy_of: str | None


class CheckOut(Body):
    """scoring.checks.CheckResult."""

    name: str
    value: int | float | None  # as scoring wrote it: a count stays an int in the JSON
    threshold: str
    passed: bool
    explanation: str


class HeadshotCredentials(Body):
    manifest_label: str
    ai_generated: Literal[True]
    watermark_payload: str


class HeadshotOut(Body):
    id: str
    job_id: str
    style: str
    seed: int
    score: float
    rank: int
    kept: bool
    passed: bool
    likeness: LikenessOut | None
    checks: list[CheckOut]
    label: Label
    method: str = Field(description="The identity method that made it: lora, faceid or hybrid.")
    credentials: HeadshotCredentials
    delivered_at: Timestamp | None
    file: str = Field(description="Where to download the disclosed file.")

    @classmethod
    def from_row(cls, headshot: Headshot) -> Self:
        report = json.loads(headshot.report)
        return super().from_row(
            headshot,
            **{name: report[name] for name in ("score", "rank", "passed", "likeness", "checks", "label")},
            method=report.get("method", "lora"),
            credentials=HeadshotCredentials.from_row(headshot, ai_generated=True),
            file=f"/v1/headshots/{headshot.id}/file",
        )


class HeadshotList(Body):
    subject_id: str
    headshots: list[HeadshotOut]
    top_k: list[str] = Field(description="The ids of the kept headshots, best first.")


# Audit


class ChainHeadshot(Body):
    id: str
    manifest_label: str
    style: str
    seed: int
    delivered_at: Timestamp | None


class ReferencePhoto(Body):
    sha256: str
    uploaded_at: Timestamp
    credentials_state: CredentialsState


class ChainJob(Body):
    id: str
    kind: str
    created_by: str
    parameters: dict


class HeadshotChain(Body):
    """Which photos, under which consent, trained the model that made a headshot."""

    headshot: ChainHeadshot
    subject: SubjectOut | None = Field(description="null once the subject is erased.")
    reference_photos: list[ReferencePhoto]
    base_model_sha256: str | None
    lora_sha256: str | None
    job: ChainJob | None
    generation_parameters: dict | None


class SignedHeadshotChain(HeadshotChain):
    jws: str = JWS


class LookupFoundHead(Body):
    found: Literal[True]
    verdict_label: Label


class LookupFound(SignedHeadshotChain, LookupFoundHead):
    """The uploaded image is a headshot of this installation: its chain, signed (`found` first)."""


class LookupNotFound(Body):
    found: Literal[False]
    verdict_label: Label
    manifest_label: str | None
    erased_subjects: list[TombstoneOut] = Field(description="Erased subjects whose delivered headshot this was.")
    why_not_found: str = Field(description="Why no headshot chain was found beside this verdict.")


class TrainedModel(Body):
    job_id: str
    status: str
    lora_sha256: str | None
    base_model_sha256: str | None


class TrainingMatch(Body):
    match: str = Field(description='"exact", or "near-duplicate (pHash distance N)".')
    photo_sha256: str
    accepted_for_training: bool
    subject: SubjectOut | None
    models: list[TrainedModel]


class TrainingLookup(Body):
    sha256: str
    used_for_training: bool
    used_by_erased_subject: bool = Field(description="The photo belonged to a subject since erased.")
    summary: str = Field(description="The answer in one sentence.")
    matches: list[TrainingMatch]
    erased_subjects: list[TombstoneOut]


class ExportPhoto(Body):
    id: str
    sha256: str
    accepted: bool
    reason: str
    credentials_state: CredentialsState
    training_mining: dict | None
    uploaded_at: Timestamp


class ExportJob(Body):
    id: str
    kind: str
    status: str
    lora_sha256: str | None
    base_model_sha256: str | None
    parameters: dict
    created_by: str


class ExportHeadshot(Body):
    id: str
    manifest_label: str
    kept: bool
    delivered_at: Timestamp | None


class ExportAuditEvent(Body):
    at: Timestamp
    key: str
    key_id: str | None
    action: str
    object: str
    seq: int
    hash: str = Field(description="The event's hash in the audit chain.")


class SubjectExport(Body):
    subject: SubjectOut
    photos: list[ExportPhoto]
    jobs: list[ExportJob]
    headshots: list[ExportHeadshot]
    audit_log: list[ExportAuditEvent]


class SignedSubjectExport(SubjectExport):
    jws: str = JWS


class SignedErasedSubjectExport(Body):
    """The export of an erased subject: its tombstone."""

    subject: None
    tombstone: TombstoneOut
    jws: str = JWS


# Signed records


class Jwks(Body):
    keys: list[dict] = Field(description="Public JWKs (Ed25519), the current key first, then retired ones.")


class TrainingConsent(Body):
    id: str = Field(description="The subject's id.")
    given_by: str
    scope: list[str]
    text_version: str
    given_at: Timestamp
    withdrawn_at: Timestamp | None


class TrainingReference(Body):
    sha256: str
    photo_id: str | None
    used_for_training: bool
    reason: str | None
    training_permission: str | None
    licence_note: str | None
    credentials_training_mining: dict | None
    consent_id: str
    consent_scope: list[str]
    consent_text_version: str


class TrainingRecord(Body):
    job_id: str
    kind: str
    tenant: str
    subject_id: str
    base_model_sha256: str | None
    lora_sha256: str | None
    training: dict | None = Field(description="The training configuration.")
    training_started_at: Timestamp | None
    trained_at: Timestamp | None
    consent: TrainingConsent
    reference_photos: list[TrainingReference]
    licence_notes: list[str]
    created_by: str


class SignedTrainingRecord(TrainingRecord):
    jws: str = JWS


# Webhooks


class WebhookOut(Body):
    id: str
    tenant: str
    url: str
    events: list[str]
    created_by: str
    created_at: Timestamp

    @classmethod
    def from_row(cls, webhook: Webhook) -> Self:
        return super().from_row(webhook, events=json.loads(webhook.events))


class WebhookCreated(WebhookOut):
    secret: str = Field(description="The signing secret (Standard Webhooks), shown only in this answer.")


class WebhookList(Body):
    webhooks: list[WebhookOut]


class DeliveryOut(Body):
    id: str
    event_type: str
    status: str
    attempts: int
    next_attempt_at: Timestamp | None = Field(description="When the next attempt is due; null unless pending.")
    last_status_code: int | None
    last_error: str | None
    attempt_log: list[dict]
    payload: dict
    created_at: Timestamp
    finished_at: Timestamp | None

    @classmethod
    def from_row(cls, delivery: WebhookDelivery) -> Self:
        return super().from_row(
            delivery,
            next_attempt_at=delivery.next_attempt_at if delivery.status == "pending" else None,
            attempt_log=json.loads(delivery.attempt_log),
            payload=json.loads(delivery.payload),
        )


class DeliveryList(Body):
    webhook_id: str
    deliveries: list[DeliveryOut]
