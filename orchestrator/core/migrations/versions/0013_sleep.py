"""sleep and wake (issue 12, part 5)

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03 10:15:00

A Space's sleep (status, written by the controller only): its depth (light: frozen; deep:
stopped) and since when. And `space_activity`, one row per Space with the last time a
gateway saw a visitor's traffic for it (an observation, kept apart from the Space row so
that the gateways' batched writes never touch its spec or status versions). No foreign key:
a gateway's batch may name a Space deleted a moment ago, and must not fail for it.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None
Moment = sqlmodel.sql.sqltypes.UTCDateTime


def upgrade() -> None:
    with op.batch_alter_table("space", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sleep_depth", sa.String(length=8), nullable=True))
        batch_op.add_column(sa.Column("sleep_since", Moment(), nullable=True))
    op.create_table(
        "space_activity",
        sa.Column("space_id", sa.Integer(), nullable=False),
        sa.Column("last_seen", Moment(), nullable=False),
        sa.PrimaryKeyConstraint("space_id"),
    )


def downgrade() -> None:
    op.drop_table("space_activity")
    with op.batch_alter_table("space", schema=None) as batch_op:
        batch_op.drop_column("sleep_since")
        batch_op.drop_column("sleep_depth")
