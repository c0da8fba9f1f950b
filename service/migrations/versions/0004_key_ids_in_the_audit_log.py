"""key ids in the audit log; one active key per name and tenant; 64-bit headshot seeds

Revision ID: 0004
Revises: 0002

Audit events record the id of the key that acted (events written before this revision have none). Active
keys that shared a name within a tenant keep working, but all but the oldest get their prefix appended to
their name, so that names tell active keys apart from now on. Seeds of headshots become 64-bit integers
(job seeds range over 0..2^63-1).
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0004"
down_revision = "0002"
branch_labels = None
depends_on = None

ACTIVE = sa.text("revoked_at IS NULL")


def upgrade() -> None:
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("key_id", sqlmodel.sql.sqltypes.AutoString(), nullable=True))
        batch_op.create_index(batch_op.f("ix_audit_events_key_id"), ["key_id"], unique=False)
    _rename_active_namesakes()
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.create_index(
            "uq_api_keys_active_name",
            ["tenant", "name"],
            unique=True,
            sqlite_where=ACTIVE,
            postgresql_where=ACTIVE,
        )
    with op.batch_alter_table("headshots", schema=None) as batch_op:
        batch_op.alter_column("seed", existing_type=sa.Integer(), type_=sa.BigInteger(), existing_nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("headshots", schema=None) as batch_op:
        batch_op.alter_column("seed", existing_type=sa.BigInteger(), type_=sa.Integer(), existing_nullable=False)
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_index("uq_api_keys_active_name", sqlite_where=ACTIVE, postgresql_where=ACTIVE)
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_events_key_id"))
        batch_op.drop_column("key_id")


def _rename_active_namesakes() -> None:
    keys = sa.table(
        "api_keys",
        *(sa.column(name) for name in ("id", "name", "tenant", "prefix", "created_at", "revoked_at")),
    )
    bind = op.get_bind()
    seen: set[tuple[str, str]] = set()
    active = bind.execute(
        sa.select(keys.c.id, keys.c.name, keys.c.tenant, keys.c.prefix)
        .where(keys.c.revoked_at.is_(None))
        .order_by(keys.c.created_at, keys.c.id)
    ).all()
    for key_id, name, tenant, prefix in active:
        if (tenant, name) in seen:
            bind.execute(keys.update().where(keys.c.id == key_id).values(name=f"{name} ({prefix})"))
        seen.add((tenant, name))
