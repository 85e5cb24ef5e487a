"""the visitor queue (issue 12, part 6)

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03 10:30:00

A Space's owner-set visitor concurrency (spec: how many visitors are let in at once before
the rest wait in the gateway's visitor queue); NULL means the tier's own.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("space", schema=None) as batch_op:
        batch_op.add_column(sa.Column("visitor_concurrency", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("space", schema=None) as batch_op:
        batch_op.drop_column("visitor_concurrency")
