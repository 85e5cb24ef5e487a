"""stable ids, stored host labels, build heartbeats

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 22:00:00

- space.uid: the Hub-style 24-hex id, the key of container labels and run logs;
- space.host: the stored, unique DNS label a Space is served under, and
  spacehostalias: old labels that redirect after a rename;
- AUTOINCREMENT on space and build in SQLite, so a deleted row's id is never handed out
  again (PostgreSQL sequences never reuse one);
- user names unique regardless of case;
- build.worker and build.heartbeat_at, to fail a build whose worker died.
"""

import secrets
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

from orchestrator.core.hostnames import choose_label

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("space", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("uid", sqlmodel.sql.sqltypes.AutoString(length=24), nullable=True)
        )
        batch_op.add_column(
            sa.Column("host", sqlmodel.sql.sqltypes.AutoString(length=63), nullable=True)
        )

    connection = op.get_bind()
    # SQLite needs the tables rebuilt (for AUTOINCREMENT); PostgreSQL alters them in place
    # and refuses to drop a primary key other tables' foreign keys depend on.
    recreate = "always" if connection.dialect.name == "sqlite" else "auto"
    taken: set[str] = set()
    rows = connection.execute(sa.text("SELECT id, owner, name FROM space ORDER BY id")).all()
    for space_id, owner, name in rows:
        label = choose_label(owner, name, taken.__contains__)
        taken.add(label)
        connection.execute(
            sa.text("UPDATE space SET uid = :uid, host = :host WHERE id = :id"),
            {"uid": secrets.token_hex(12), "host": label, "id": space_id},
        )

    with op.batch_alter_table(
        "space", recreate=recreate, table_kwargs={"sqlite_autoincrement": True}
    ) as batch_op:
        batch_op.alter_column(
            "uid", existing_type=sqlmodel.sql.sqltypes.AutoString(length=24), nullable=False
        )
        batch_op.alter_column(
            "host", existing_type=sqlmodel.sql.sqltypes.AutoString(length=63), nullable=False
        )
        batch_op.create_index(batch_op.f("ix_space_uid"), ["uid"], unique=True)
        batch_op.create_index(batch_op.f("ix_space_host"), ["host"], unique=True)

    with op.batch_alter_table(
        "build", recreate=recreate, table_kwargs={"sqlite_autoincrement": True}
    ) as batch_op:
        batch_op.add_column(
            sa.Column("worker", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True)
        )
        batch_op.add_column(
            sa.Column("heartbeat_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True)
        )

    op.create_table(
        "spacehostalias",
        sa.Column("host", sqlmodel.sql.sqltypes.AutoString(length=63), nullable=False),
        sa.Column("space_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["space_id"], ["space.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("host"),
    )
    with op.batch_alter_table("spacehostalias", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_spacehostalias_space_id"), ["space_id"], unique=False)

    op.create_index("ix_user_name_lower", "user", [sa.text("lower(name)")], unique=True)


def downgrade() -> None:
    op.drop_index("ix_user_name_lower", table_name="user")
    op.drop_table("spacehostalias")
    with op.batch_alter_table("build", schema=None) as batch_op:
        batch_op.drop_column("heartbeat_at")
        batch_op.drop_column("worker")
    with op.batch_alter_table("space", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_space_host"))
        batch_op.drop_index(batch_op.f("ix_space_uid"))
        batch_op.drop_column("host")
        batch_op.drop_column("uid")
