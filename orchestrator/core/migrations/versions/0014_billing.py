"""credit and billing (issue 12, part 3)

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03 10:30:00

Each user's or organisation's credit (micro-USD, integers), its ledger (grants, charges,
fallbacks), the meter of each Space (how far it has been charged, and what it was doing
then), the charger's place in the event log, and `space.hardware_notice`: why the requested
hardware is cpu-basic when the owner asked for more (spec, written by billing's fallback).
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None
Moment = sqlmodel.sql.sqltypes.UTCDateTime


def upgrade() -> None:
    with op.batch_alter_table("space", schema=None) as batch_op:
        batch_op.add_column(sa.Column("hardware_notice", sa.Text(), nullable=True))
    op.create_table(
        "creditaccount",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("balance_micro_usd", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", Moment(), nullable=False),
        sa.ForeignKeyConstraint(["owner_id"], ["user.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("owner_id"),
    )
    op.create_table(
        "creditentry",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("amount_micro_usd", sa.BigInteger(), nullable=False),
        sa.Column("space_uid", sa.String(length=24), nullable=True),
        sa.Column("space_name", sa.String(length=200), nullable=True),
        sa.Column("hardware", sa.String(length=64), nullable=True),
        sa.Column("started_at", Moment(), nullable=True),
        sa.Column("ended_at", Moment(), nullable=True),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.Column("actor", sa.String(length=96), nullable=False),
        sa.Column("note", sa.String(length=500), nullable=True),
        sa.Column("created_at", Moment(), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["creditaccount.id"]),
        sa.PrimaryKeyConstraint("id"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_creditentry_account_id_id", "creditentry", ["account_id", "id"])
    op.create_table(
        "spacemeter",
        sa.Column("space_uid", sa.String(length=24), nullable=False),
        sa.Column("space_name", sa.String(length=200), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=True),
        sa.Column("metered_until", Moment(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("billable", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("space_uid"),
    )
    op.create_index("ix_spacemeter_billable", "spacemeter", ["billable"])
    op.create_table(
        "billingcursor",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("last_event_id", sa.BigInteger(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("charged_at", Moment(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("billingcursor")
    op.drop_index("ix_spacemeter_billable", table_name="spacemeter")
    op.drop_table("spacemeter")
    op.drop_index("ix_creditentry_account_id_id", table_name="creditentry")
    op.drop_table("creditentry")
    op.drop_table("creditaccount")
    with op.batch_alter_table("space", schema=None) as batch_op:
        batch_op.drop_column("hardware_notice")
