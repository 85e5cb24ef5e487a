"""lfs objects

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "lfsobject",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("space_id", sa.Integer(), nullable=False),
        sa.Column("oid", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        # LFS objects can be far beyond 2 GiB.
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["space_id"], ["space.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("space_id", "oid"),
    )
    with op.batch_alter_table("lfsobject", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_lfsobject_space_id"), ["space_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("lfsobject", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_lfsobject_space_id"))
    op.drop_table("lfsobject")
