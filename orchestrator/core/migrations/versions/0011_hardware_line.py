"""the waiting line for hardware (issue 11)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 13:45:00

Status columns of a Space waiting for room on its tier (orchestrator/controller/waiting_line.py),
written only by the controller: the tier it waits for, when it began waiting (the line's
order, so a restarted controller keeps it) and its place in that tier's line (what the
runtime shows). All null while it does not wait.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None
Moment = sqlmodel.sql.sqltypes.UTCDateTime


def upgrade() -> None:
    with op.batch_alter_table("space", schema=None) as batch_op:
        batch_op.add_column(sa.Column("waiting_hardware", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("waiting_since", Moment(), nullable=True))
        batch_op.add_column(sa.Column("waiting_position", sa.Integer(), nullable=True))
        # A starting controller reads the line: the few rows that wait, not every Space.
        batch_op.create_index("ix_space_waiting_since", ["waiting_since"])


def downgrade() -> None:
    with op.batch_alter_table("space", schema=None) as batch_op:
        batch_op.drop_index("ix_space_waiting_since")
        batch_op.drop_column("waiting_position")
        batch_op.drop_column("waiting_since")
        batch_op.drop_column("waiting_hardware")
