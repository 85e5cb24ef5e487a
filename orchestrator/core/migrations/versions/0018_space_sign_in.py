"""signing in to a Space with Spaceport (hf_oauth): authorization codes, expiring tokens

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-05 14:00:00

`oauthcode`: the codes of the OpenID Connect flow a Space with `hf_oauth: true` runs
(orchestrator/oauth/), kept as SHA-256 and traded once. `apitoken.expires_at`: the access
tokens that flow hands a Space expire (`hf_oauth_expiration_minutes`); tokens made by people
keep NULL, which never expires.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None
Moment = sqlmodel.sql.sqltypes.UTCDateTime


def upgrade() -> None:
    with op.batch_alter_table("apitoken") as table:
        table.add_column(sa.Column("expires_at", Moment(), nullable=True))
    op.create_table(
        "oauthcode",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column(
            "space_id", sa.Integer(), sa.ForeignKey("space.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column(
            "user_id", sa.Integer(), sa.ForeignKey("user.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("redirect_uri", sa.String(length=2048), nullable=False),
        sa.Column("scope", sa.String(length=1024), nullable=False),
        sa.Column("nonce", sa.String(length=256), nullable=True),
        sa.Column("code_challenge", sa.String(length=128), nullable=True),
        sa.Column("created_at", Moment(), nullable=False),
        sa.Column("expires_at", Moment(), nullable=False),
        sa.Column("redeemed_at", Moment(), nullable=True),
    )
    op.create_index("ix_oauthcode_code_hash", "oauthcode", ["code_hash"], unique=True)
    op.create_index("ix_oauthcode_space_id", "oauthcode", ["space_id"])


def downgrade() -> None:
    op.drop_index("ix_oauthcode_space_id", table_name="oauthcode")
    op.drop_index("ix_oauthcode_code_hash", table_name="oauthcode")
    op.drop_table("oauthcode")
    with op.batch_alter_table("apitoken") as table:
        table.drop_column("expires_at")
