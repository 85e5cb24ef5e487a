"""signing in to the pages through an external OpenID Connect provider

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-05 14:20:00

`externalidentity`: a user's (issuer, subject) at the provider set by SPACEPORT_OIDC_ISSUER,
linked at their first sign-in there (core/external_sign_in.py).
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None
Moment = sqlmodel.sql.sqltypes.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "externalidentity",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("issuer", sa.String(length=2048), nullable=False),
        sa.Column("subject", sa.String(length=255), nullable=False),
        sa.Column(
            "user_id", sa.Integer(), sa.ForeignKey("user.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("created_at", Moment(), nullable=False),
        sa.UniqueConstraint("issuer", "subject"),
    )
    op.create_index("ix_externalidentity_user_id", "externalidentity", ["user_id"])


def downgrade() -> None:
    op.drop_index("ix_externalidentity_user_id", table_name="externalidentity")
    op.drop_table("externalidentity")
