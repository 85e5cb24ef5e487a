"""Shared fixtures of the unit tests: a clean SPACEPORT_HOME, a migrated database (SQLite, or
both SQLite and PostgreSQL), and a session on it. A test module may still define its own
fixture of the same name; that one wins for the module.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlmodel import Session

from orchestrator.core import changes, db, secret_store
from orchestrator.core.settings import get_settings
from tests import services
from tests.unit.databases import empty_every_table
from tests.unit.in_process_api import api, api_settings  # noqa: F401 - fixtures


def _reset_caches() -> None:
    get_settings.cache_clear()
    db.get_engine.cache_clear()
    secret_store._fernet.cache_clear()
    # The process's change feed listens to one home's database: a test's feed must not
    # outlive it (a feed of a stopped server retries each second and wakes its waiters).
    changes.reset_feed()


@pytest.fixture
def spaceport_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh SPACEPORT_HOME and no other SPACEPORT_ setting from the environment; nothing
    created in it yet. The engine is disposed afterwards."""
    for key in list(os.environ):
        if key.startswith("SPACEPORT_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("SPACEPORT_HOME", str(tmp_path))
    _reset_caches()
    yield tmp_path
    db.get_engine().dispose()
    _reset_caches()


@pytest.fixture
def migrated_home(spaceport_home: Path) -> Path:
    """spaceport_home with its SQLite database at the newest schema."""
    db.migrate()
    return spaceport_home


@pytest.fixture
def session(migrated_home: Path) -> Iterator[Session]:
    with Session(db.get_engine()) as session:
        yield session


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One throwaway PostgreSQL server for the whole run (tests.services.start_postgres)."""
    services.require_postgres()
    url, stop = services.start_postgres(tmp_path_factory.mktemp("pg"))
    yield url
    stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database(
    request: pytest.FixtureRequest, spaceport_home: Path, monkeypatch: pytest.MonkeyPatch
) -> str:
    """A migrated database on each stack, empty at the start of the test; its URL."""
    if request.param == "postgresql":
        monkeypatch.setenv("SPACEPORT_DATABASE_URL", request.getfixturevalue("postgres_url"))
        _reset_caches()
    db.migrate()
    if request.param == "postgresql":  # one server for the run: start each test empty
        empty_every_table()
    return get_settings().sqlalchemy_url
