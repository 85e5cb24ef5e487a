"""Space names as on the Hub: compared regardless of case, old names kept after a move

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 07:15:00

- ix_space_owner_name_lower: one Space per owner/name whatever the case. Two Spaces that
  already differ only in case (possible before this revision) stop the upgrade with a
  message naming them: which one keeps the name is the admin's decision, not the
  migration's (rename one with move_repo on the previous version, then upgrade again).
- spacenamealias: the ids a Space had before move_repo, which redirect to its current one.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


class SpaceNamesDifferOnlyInCase(RuntimeError):
    pass


def _same_but_case() -> list[str]:
    rows = op.get_bind().execute(
        sa.text(
            "SELECT owner, name FROM space WHERE (lower(owner), lower(name)) IN "
            "(SELECT lower(owner), lower(name) FROM space "
            "GROUP BY lower(owner), lower(name) HAVING count(*) > 1) ORDER BY lower(name), name"
        )
    )
    return [f"{owner}/{name}" for owner, name in rows]


def upgrade() -> None:
    if clashes := _same_but_case():
        raise SpaceNamesDifferOnlyInCase(
            "Space ids are compared regardless of case from this version on, as on the Hub, "
            f"but these Spaces differ only in case: {', '.join(clashes)}. Rename all but one "
            "of each (huggingface_hub's move_repo, with the previous version of Spaceport), "
            "then start this version again."
        )
    op.create_index(
        "ix_space_owner_name_lower",
        "space",
        [sa.text("lower(owner)"), sa.text("lower(name)")],
        unique=True,
    )
    op.create_table(
        "spacenamealias",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("owner", sqlmodel.sql.sqltypes.AutoString(length=96), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=96), nullable=False),
        sa.Column("space_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["space_id"], ["space.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_spacenamealias_space_id", "spacenamealias", ["space_id"], unique=False)
    op.create_index(
        "ix_spacenamealias_lower",
        "spacenamealias",
        [sa.text("lower(owner)"), sa.text("lower(name)")],
        unique=True,
    )


def downgrade() -> None:
    op.drop_index("ix_spacenamealias_lower", table_name="spacenamealias")
    op.drop_index("ix_spacenamealias_space_id", table_name="spacenamealias")
    op.drop_table("spacenamealias")
    # IF EXISTS: on SQLite a later revision's downgrade that rebuilds `space` (batch mode)
    # loses expression indexes, this one included.
    op.execute("DROP INDEX IF EXISTS ix_space_owner_name_lower")
