"""organisations and their members' roles (issue 10)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 07:15:00

- user.kind: "user" or "org": organisations share the users' namespace (and its
  case-insensitive unique index), so Space.owner_id points at an org like at a user;
- user.fullname: an organisation's display name;
- orgmember: one role (read, contributor, write, admin) per organisation and user;
- space.creator_id: who created a Space (a contributor writes to the org Spaces they
  created); existing Spaces were created by their owner.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ADD COLUMNs: no table rebuild on SQLite (space keeps its AUTOINCREMENT).
    op.add_column(
        "user",
        sa.Column(
            "kind",
            sqlmodel.sql.sqltypes.AutoString(length=8),
            nullable=False,
            server_default="user",
        ),
    )
    op.add_column(
        "user", sa.Column("fullname", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True)
    )
    op.add_column("space", sa.Column("creator_id", sa.Integer(), nullable=True))
    op.execute("UPDATE space SET creator_id = owner_id")
    op.create_table(
        "orgmember",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["org_id"], ["user.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["user.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("org_id", "user_id"),
    )
    op.create_index("ix_orgmember_user_id", "orgmember", ["user_id"])


CASE_INSENSITIVE_INDEXES = (
    ("ix_user_name_lower", "user", "lower(name)"),  # 0005
    ("ix_space_owner_name_lower", "space", "lower(owner), lower(name)"),  # 0008
)


def downgrade() -> None:
    op.drop_index("ix_orgmember_user_id", table_name="orgmember")
    op.drop_table("orgmember")
    with op.batch_alter_table("space", table_kwargs={"sqlite_autoincrement": True}) as batch_op:
        batch_op.drop_column("creator_id")
    with op.batch_alter_table("user") as batch_op:
        batch_op.drop_column("fullname")
        batch_op.drop_column("kind")
    if op.get_bind().dialect.name == "sqlite":
        # Batch mode rebuilt both tables, and SQLAlchemy can't reflect expression indexes,
        # so the rebuilt ones lack the two that keep names unique regardless of case.
        for index, table, expressions in CASE_INSENSITIVE_INDEXES:
            op.execute(f'CREATE UNIQUE INDEX IF NOT EXISTS {index} ON "{table}" ({expressions})')
