"""volumes (issue 12)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 19:45:00

A Space's volumes (spec: a JSON list in the Hub's wire shape, orchestrator/volumes/spec.py)
and the buckets a `bucket` volume mounts, one row per bucket, owned by a user or an
organisation; `uid` names its data on the backend.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None
Moment = sqlmodel.sql.sqltypes.UTCDateTime


def upgrade() -> None:
    with op.batch_alter_table("space", schema=None) as batch_op:
        batch_op.add_column(sa.Column("volumes", sa.Text(), nullable=True))
    op.create_table(
        "bucket",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("uid", sa.String(length=24), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=96), nullable=False),
        sa.Column("private", sa.Boolean(), nullable=False),
        sa.Column("created_at", Moment(), nullable=False),
        sa.ForeignKeyConstraint(["owner_id"], ["user.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("owner_id", "name"),
        sa.UniqueConstraint("uid"),
    )
    op.create_index("ix_bucket_owner_id", "bucket", ["owner_id"])


def downgrade() -> None:
    op.drop_index("ix_bucket_owner_id", table_name="bucket")
    op.drop_table("bucket")
    with op.batch_alter_table("space", schema=None) as batch_op:
        batch_op.drop_column("volumes")
