"""storage keys instead of paths; job stages and leases; the job behind each registered image

Revision ID: 0002
Revises: 0001

Files were named by absolute paths under the data directory (`<data>/subjects/...`, `<data>/jobs/...`); they
are now storage keys relative to HEADSHOT_STORAGE_DIR, which defaults to that same data directory, so the
existing files stay where they are. A LoRA trained before this revision stays in `jobs/<id>/lora/` (train
jobs) or `jobs/<id>/pack/lora/` (packs).
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_JOB_COLUMNS = [
    sa.Column("stage", sqlmodel.sql.sqltypes.AutoString(), nullable=False, server_default="train"),
    sa.Column("attempt", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("worker", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column("lease_expires_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column("lease_losses", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("dispatched_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column("lora_key", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column("render_key", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
]


def upgrade() -> None:
    for table in ("photos", "headshots"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column("stored_path", new_column_name="storage_key")
        _paths_to_keys(table)
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        for column in _JOB_COLUMNS:
            batch_op.add_column(column)
    for column in _JOB_COLUMNS:
        if column.server_default is not None:
            with op.batch_alter_table("jobs", schema=None) as batch_op:
                batch_op.alter_column(column.name, server_default=None)
    jobs = sa.table("jobs", sa.column("id"), sa.column("kind"), sa.column("status"), sa.column("lora_key"))
    bind = op.get_bind()
    for job_id, kind in bind.execute(
        sa.select(jobs.c.id, jobs.c.kind).where(jobs.c.kind != "generate", jobs.c.status == "succeeded")
    ).all():
        folder = "lora" if kind == "train" else "pack/lora"
        bind.execute(jobs.update().where(jobs.c.id == job_id).values(lora_key=f"jobs/{job_id}/{folder}/"))
    with op.batch_alter_table("registered_images", schema=None) as batch_op:
        batch_op.add_column(sa.Column("job_id", sqlmodel.sql.sqltypes.AutoString(), nullable=True))
        batch_op.create_index(batch_op.f("ix_registered_images_job_id"), ["job_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("registered_images", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_registered_images_job_id"))
        batch_op.drop_column("job_id")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        for column in reversed(_JOB_COLUMNS):
            batch_op.drop_column(column.name)
    for table in ("photos", "headshots"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column("storage_key", new_column_name="stored_path")


def _paths_to_keys(table: str) -> None:
    """`/srv/data/subjects/<id>/photos/<file>` -> `subjects/<id>/photos/<file>`; for headshots,
    `/srv/data/jobs/<id>/pack/images/<file>` -> `jobs/<id>/pack/images/<file>`: the layout fixes the depth."""
    depth = {"photos": 4, "headshots": 5}[table]
    rows = sa.table(table, sa.column("id"), sa.column("storage_key"))
    bind = op.get_bind()
    for row_id, path in bind.execute(sa.select(rows.c.id, rows.c.storage_key)).all():
        key = "/".join(path.split("/")[-depth:])
        bind.execute(rows.update().where(rows.c.id == row_id).values(storage_key=key))
