"""Emptying a test database that outlives one test (the run's one PostgreSQL server)."""

from __future__ import annotations

from sqlmodel import SQLModel

from orchestrator.core import db, models


def empty_every_table() -> None:
    """TRUNCATE every table of the models (SQLModel's metadata), identities restarted: each
    test on the shared server starts empty. Listing tables by hand missed one with no key
    to `space` (CASCADE did not reach it), and an earlier test's rows leaked into the next."""
    assert models.Space.__table__ in SQLModel.metadata.sorted_tables  # the models are read
    names = [t.name for t in SQLModel.metadata.sorted_tables if t.name != "alembic_version"]
    tables = ", ".join(f'"{name}"' for name in names)
    with db.get_engine().begin() as connection:
        connection.exec_driver_sql(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")
