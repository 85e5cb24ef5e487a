"""discussions, pull requests and likes (issue 10)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 07:15:00

- discussion: a Space's discussions and pull requests, numbered per Space from 1 (one
  sequence for both, as on the Hub); a pull request's commits are refs/pr/{num} in git;
- discussionevent: the timeline of each (comments with their edits, status and title
  changes, a pull request's commits);
- spacelike: who likes which Space, once each.

Rows go with their Space (ON DELETE CASCADE, and lifecycle.delete removes them itself, as
SQLite enforces foreign keys only when asked).
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None
AUTOINCREMENT = {"sqlite_autoincrement": True}
Name = sqlmodel.sql.sqltypes.AutoString
Moment = sqlmodel.sql.sqltypes.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "discussion",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("space_id", sa.Integer(), nullable=False),
        sa.Column("num", sa.Integer(), nullable=False),
        sa.Column("title", Name(length=500), nullable=False),
        sa.Column("author_id", sa.Integer(), nullable=True),
        sa.Column("is_pull_request", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("target_branch", Name(length=255), nullable=False),
        sa.Column("merge_commit", Name(length=40), nullable=True),
        sa.Column("pinned", sa.Boolean(), nullable=False),
        sa.Column("created_at", Moment(), nullable=False),
        sa.Column("updated_at", Moment(), nullable=False),
        sa.ForeignKeyConstraint(["space_id"], ["space.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["author_id"], ["user.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("space_id", "num"),
        **AUTOINCREMENT,
    )
    op.create_index("ix_discussion_space_id", "discussion", ["space_id"])
    op.create_table(
        "discussionevent",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("uid", Name(length=24), nullable=False),
        sa.Column("discussion_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("author_id", sa.Integer(), nullable=True),
        sa.Column("content", sa.Text(), nullable=True),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("edited", sa.Boolean(), nullable=False),
        sa.Column("hidden", sa.Boolean(), nullable=False),
        sa.Column("created_at", Moment(), nullable=False),
        sa.Column("updated_at", Moment(), nullable=False),
        sa.ForeignKeyConstraint(["discussion_id"], ["discussion.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["author_id"], ["user.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        **AUTOINCREMENT,
    )
    op.create_index("ix_discussionevent_uid", "discussionevent", ["uid"], unique=True)
    op.create_index("ix_discussionevent_discussion_id", "discussionevent", ["discussion_id"])
    op.create_table(
        "spacelike",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("space_id", sa.Integer(), nullable=False),
        sa.Column("created_at", Moment(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["user.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["space_id"], ["space.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("user_id", "space_id"),
    )
    op.create_index("ix_spacelike_user_id", "spacelike", ["user_id"])
    op.create_index("ix_spacelike_space_id", "spacelike", ["space_id"])
    op.create_index("ix_spacelike_created_at", "spacelike", ["created_at"])


def downgrade() -> None:
    op.drop_table("spacelike")
    op.drop_table("discussionevent")
    op.drop_table("discussion")
