"""credit and billing (issue 12)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 19:45:00

Reserved in the chain so the parts of issue 12 can each add their tables without racing for
a number; the part that owns it fills upgrade() and downgrade().
"""

from collections.abc import Sequence

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
