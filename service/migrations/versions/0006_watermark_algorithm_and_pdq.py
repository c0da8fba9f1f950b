"""the watermark algorithm of each registered image, and its PDQ fingerprint

Revision ID: 0006
Revises: 0005

Every image registered before this revision was marked with the first tile watermark, so existing rows
read `tile-v1`; they have no PDQ hash (it is only used to propose candidates, which their pHashes still do).
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("registered_images", schema=None) as batch_op:
        batch_op.add_column(sa.Column("algorithm", sqlmodel.sql.sqltypes.AutoString(), nullable=True))
        batch_op.add_column(sa.Column("pdq_hash", sa.LargeBinary(), nullable=True))
    op.execute("UPDATE registered_images SET algorithm = 'tile-v1'")
    with op.batch_alter_table("registered_images", schema=None) as batch_op:
        batch_op.alter_column("algorithm", existing_type=sqlmodel.sql.sqltypes.AutoString(), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("registered_images", schema=None) as batch_op:
        batch_op.drop_column("pdq_hash")
        batch_op.drop_column("algorithm")
