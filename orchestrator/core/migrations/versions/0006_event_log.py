"""the event log, and a version on each Space for conditional writes

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 01:00:00

- event: every transition, appended (orchestrator/core/events.py);
- space.status_version: bumped by every write of what the controller observes, so a
  write made from a stale read matches no row instead of undoing a newer one;
- space.spec_version: bumped by every write of what the owner or the pipeline asks for,
  so the controller can tell that what it read is still what is wanted;
- space.observed_spec_version: the spec version the status was observed for;
- space.paused: the owner's pause, moved from the stage (status) to the spec;
- space.head_problem: why the head commit can't be built (CONFIG_ERROR / NO_APP_FILE and
  the message), written by the pipeline and turned into a stage by the controller;
- build.config: the typed README config of the build's commit, parsed once at deploy.
"""

import json
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None
AUTOINCREMENT = {"sqlite_autoincrement": True}


def upgrade() -> None:
    op.create_table(
        "event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=48), nullable=False),
        sa.Column("space_id", sa.Integer(), nullable=True),
        sa.Column("space_uid", sqlmodel.sql.sqltypes.AutoString(length=24), nullable=True),
        sa.Column("space_name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column("actor", sqlmodel.sql.sqltypes.AutoString(length=96), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_event_at", "event", ["at"])
    op.create_index("ix_event_kind", "event", ["kind"])
    op.create_index("ix_event_space_id_id", "event", ["space_id", "id"])
    # SQLite rebuilds the table for these columns: keep its AUTOINCREMENT (0005), or a
    # deleted Space's id (and with it its events) would go to the next Space.
    with op.batch_alter_table("space", table_kwargs=AUTOINCREMENT) as batch_op:
        batch_op.add_column(
            sa.Column("status_version", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(
            sa.Column("spec_version", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(
            sa.Column("observed_spec_version", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(
            sa.Column("paused", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(sa.Column("head_problem", sa.Text(), nullable=True))
    op.execute("UPDATE space SET paused = (stage = 'PAUSED')")
    # A Space's CONFIG_ERROR / NO_APP_FILE was its head commit's problem: keep it as one.
    connection = op.get_bind()
    rows = connection.execute(
        sa.text(
            "SELECT id, stage, error_message FROM space "
            "WHERE stage IN ('CONFIG_ERROR', 'NO_APP_FILE') AND head_sha IS NOT NULL"
        )
    ).all()
    for space_id, stage, message in rows:
        problem = json.dumps({"stage": stage, "message": message or ""})
        connection.execute(
            sa.text("UPDATE space SET head_problem = :p WHERE id = :id"),
            {"p": problem, "id": space_id},
        )
    with op.batch_alter_table("build", table_kwargs=AUTOINCREMENT) as batch_op:
        batch_op.add_column(sa.Column("config", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("build", table_kwargs=AUTOINCREMENT) as batch_op:
        batch_op.drop_column("config")
    with op.batch_alter_table("space", table_kwargs=AUTOINCREMENT) as batch_op:
        batch_op.drop_column("head_problem")
        batch_op.drop_column("paused")
        batch_op.drop_column("observed_spec_version")
        batch_op.drop_column("spec_version")
        batch_op.drop_column("status_version")
    op.drop_index("ix_event_space_id_id", table_name="event")
    op.drop_index("ix_event_kind", table_name="event")
    op.drop_index("ix_event_at", table_name="event")
    op.drop_table("event")
