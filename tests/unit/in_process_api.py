"""The API in process (FastAPI's TestClient) on a migrated SQLite home, with two users:
tests/unit/conftest.py offers its fixtures to every unit test module."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from orchestrator.app import create_api
from orchestrator.core import auth, db
from orchestrator.core.settings import get_settings
from orchestrator.spaces import registry as spaces

# The client, then alice's and bob's authorization headers.
Api = tuple[TestClient, dict[str, str], dict[str, str]]


@pytest.fixture
def api_settings() -> dict[str, str]:
    """The SPACEPORT_ settings `api` runs with: a module overrides this fixture for its own."""
    return {}


@pytest.fixture
def api(
    migrated_home: Path, monkeypatch: pytest.MonkeyPatch, api_settings: dict[str, str]
) -> Iterator[Api]:
    """alice, who owns the gradio Space alice/demo, and bob, each with a token."""
    for name, value in api_settings.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    with Session(db.get_engine()) as session:
        alice = auth.get_or_create_user(session, "alice")
        bob = auth.get_or_create_user(session, "bob")
        alice_token = auth.create_token(session, alice)
        bob_token = auth.create_token(session, bob)
        spaces.create_space(session, alice, "demo", sdk="gradio")
        session.commit()
    with TestClient(create_api(migrate=False), raise_server_exceptions=False) as client:
        yield (
            client,
            {"authorization": f"Bearer {alice_token}"},
            {"authorization": f"Bearer {bob_token}"},
        )
    get_settings.cache_clear()
