"""what a build substituted, said where people look

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 04:10:00

- build.notes: what the build differs in from the Hub (a base image that is Spaceport's
  equivalent, a python_version that became another one), as a JSON list of sentences
  (builder BuildOutput.notes);
- space.built_notes: the same for the built image the Space runs, so the runtime API shows
  it without reading builds.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None
AUTOINCREMENT = {"sqlite_autoincrement": True}


def upgrade() -> None:
    with op.batch_alter_table("build", table_kwargs=AUTOINCREMENT) as batch_op:
        batch_op.add_column(sa.Column("notes", sa.Text(), nullable=True))
    with op.batch_alter_table("space", table_kwargs=AUTOINCREMENT) as batch_op:
        batch_op.add_column(sa.Column("built_notes", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("space", table_kwargs=AUTOINCREMENT) as batch_op:
        batch_op.drop_column("built_notes")
    with op.batch_alter_table("build", table_kwargs=AUTOINCREMENT) as batch_op:
        batch_op.drop_column("notes")
