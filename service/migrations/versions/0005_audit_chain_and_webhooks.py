"""a hash-chained audit log with its anchors; webhooks and their deliveries; when a job's LoRA was trained

Revision ID: 0005
Revises: 0002

The audit events already written are chained in the order they were written (by time, then id) with the
function the service appends with (service/audit_chain.py), so an upgraded log verifies
(`headshot audit verify`) and goes on from its last event. What they recorded before this revision was
not protected: the chain vouches for them from now on, as they are at the upgrade.
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

from service.audit_chain import GENESIS, event_hash

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_STRING = sqlmodel.sql.sqltypes.AutoString
_TIME = sqlmodel.sql.sqltypes.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "audit_chain_head",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("hash", _STRING(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("seq", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("prev_hash", _STRING(), nullable=True))
        batch_op.add_column(sa.Column("hash", _STRING(), nullable=True))
    _chain_existing_events()
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        for name in ("seq", "prev_hash", "hash"):
            batch_op.alter_column(name, nullable=False)
        batch_op.create_index(batch_op.f("ix_audit_events_seq"), ["seq"], unique=True)

    op.create_table(
        "audit_anchors",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("hash", _STRING(), nullable=False),
        sa.Column("tsa_url", _STRING(), nullable=False),
        sa.Column("token", sa.Text(), nullable=False),
        sa.Column("time_stamped_at", _TIME(), nullable=False),
        sa.Column("created_at", _TIME(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("audit_anchors", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_anchors_seq"), ["seq"], unique=False)

    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("trained_at", _TIME(), nullable=True))

    op.create_table(
        "webhooks",
        sa.Column("id", _STRING(), nullable=False),
        sa.Column("tenant", _STRING(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("events", sa.Text(), nullable=False),
        sa.Column("secret", _STRING(), nullable=False),
        sa.Column("created_by", _STRING(), nullable=False),
        sa.Column("created_at", _TIME(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("webhooks", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_webhooks_tenant"), ["tenant"], unique=False)
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", _STRING(), nullable=False),
        sa.Column("webhook_id", _STRING(), nullable=False),
        sa.Column("tenant", _STRING(), nullable=False),
        sa.Column("event_type", _STRING(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("status", _STRING(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", _TIME(), nullable=False),
        sa.Column("claimed_until", _TIME(), nullable=True),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", _STRING(), nullable=True),
        sa.Column("attempt_log", sa.Text(), nullable=False),
        sa.Column("created_at", _TIME(), nullable=False),
        sa.Column("finished_at", _TIME(), nullable=True),
        sa.ForeignKeyConstraint(["webhook_id"], ["webhooks.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        for column in ("webhook_id", "tenant", "status", "next_attempt_at"):
            batch_op.create_index(batch_op.f(f"ix_webhook_deliveries_{column}"), [column], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        for column in ("next_attempt_at", "status", "tenant", "webhook_id"):
            batch_op.drop_index(batch_op.f(f"ix_webhook_deliveries_{column}"))
    op.drop_table("webhook_deliveries")
    with op.batch_alter_table("webhooks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_webhooks_tenant"))
    op.drop_table("webhooks")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("trained_at")
    with op.batch_alter_table("audit_anchors", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_anchors_seq"))
    op.drop_table("audit_anchors")
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_events_seq"))
        for name in ("hash", "prev_hash", "seq"):
            batch_op.drop_column(name)
    op.drop_table("audit_chain_head")


def _chain_existing_events() -> None:
    """Chain the events in the order they were written, and record the head."""
    bind = op.get_bind()
    events = sa.Table("audit_events", sa.MetaData(), autoload_with=bind)
    rows = bind.execute(sa.select(events).order_by(events.c.at, events.c.id)).mappings().all()
    previous = GENESIS
    for seq, row in enumerate(rows, start=1):
        columns = {**row, "seq": seq, "prev_hash": previous}
        columns["hash"] = event_hash(columns)
        bind.execute(
            events.update().where(events.c.id == row["id"]).values(seq=seq, prev_hash=previous, hash=columns["hash"])
        )
        previous = columns["hash"]
    head = sa.table("audit_chain_head", sa.column("id"), sa.column("seq"), sa.column("hash"))
    bind.execute(head.insert().values(id=1, seq=len(rows), hash=previous))
