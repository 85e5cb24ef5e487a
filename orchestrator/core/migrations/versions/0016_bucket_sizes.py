"""bucket sizes and quotas (the controller's volume sweep)

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-03 14:30:00

What each bucket's files take on the backend and when the controller last measured it
(`bucket.size_bytes`, `bucket.size_measured_at`; NULL until measured), and a Space's
`volume_notice` (status): why a bucket it mounts is read-only from its next start.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None
Moment = sqlmodel.sql.sqltypes.UTCDateTime


def upgrade() -> None:
    with op.batch_alter_table("bucket", schema=None) as batch_op:
        batch_op.add_column(sa.Column("size_bytes", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("size_measured_at", Moment(), nullable=True))
    with op.batch_alter_table("space", schema=None) as batch_op:
        batch_op.add_column(sa.Column("volume_notice", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("space", schema=None) as batch_op:
        batch_op.drop_column("volume_notice")
    with op.batch_alter_table("bucket", schema=None) as batch_op:
        batch_op.drop_column("size_measured_at")
        batch_op.drop_column("size_bytes")
