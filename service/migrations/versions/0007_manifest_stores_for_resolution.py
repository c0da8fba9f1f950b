"""registered images keep their signed C2PA manifest store, served by the soft-binding resolution API

Revision ID: 0007
Revises: 0006 (temporarily 0005, see down_revision)

`GET /manifests/{manifestId}` answers with the manifest store a disclosure was signed with
(`application/c2pa`). Images registered before this revision have none (NULL): they are still found by
their watermark and fingerprints, but their manifest store cannot be served.
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("registered_images", schema=None) as batch_op:
        batch_op.add_column(sa.Column("manifest_store", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("registered_images", schema=None) as batch_op:
        batch_op.drop_column("manifest_store")
