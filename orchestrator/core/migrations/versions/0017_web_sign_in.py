"""signing in to the web pages: passwords and sessions

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-05 06:20:00

A user's password hash (argon2id, `userpassword`; a row only for users who set one, so the
user table, which API answers are made from, never holds it) and the web's sign-in
sessions (`websession`: the SHA-256 of the cookie's random value, as tokens are kept, and
the session's CSRF token for the pages' forms).
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None
Moment = sqlmodel.sql.sqltypes.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "userpassword",
        sa.Column(
            "user_id", sa.Integer(), sa.ForeignKey("user.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("password_hash", sa.String(length=256), nullable=False),
        sa.Column("changed_at", Moment(), nullable=False),
    )
    op.create_table(
        "websession",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "user_id", sa.Integer(), sa.ForeignKey("user.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("csrf_token", sa.String(length=64), nullable=False),
        sa.Column("created_at", Moment(), nullable=False),
        sa.Column("expires_at", Moment(), nullable=False),
    )
    op.create_index("ix_websession_token_hash", "websession", ["token_hash"], unique=True)
    op.create_index("ix_websession_user_id", "websession", ["user_id"])


def downgrade() -> None:
    op.drop_index("ix_websession_user_id", table_name="websession")
    op.drop_index("ix_websession_token_hash", table_name="websession")
    op.drop_table("websession")
    op.drop_table("userpassword")
