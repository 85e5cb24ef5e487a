"""The refs routes (orchestrator/api/refs.py) in process, where a setting is cheap to
change: the per-Space limit on branches and tags (SPACEPORT_MAX_REFS_PER_SPACE), and
strict bodies. The client-driven behaviour is in tests/test_hub_refs.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from orchestrator.app import create_api
from orchestrator.core import auth, db
from orchestrator.core.settings import get_settings
from orchestrator.repos import store as repos
from orchestrator.spaces import registry as spaces


@pytest.fixture
def client(
    migrated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[TestClient, dict[str, str]]]:
    monkeypatch.setenv("SPACEPORT_MAX_REFS_PER_SPACE", "2")
    get_settings.cache_clear()
    with Session(db.get_engine()) as session:
        alice = auth.get_or_create_user(session, "alice")
        token = auth.create_token(session, alice)
        space = spaces.create_space(session, alice, "demo")
        repo = repos.repo_path(space.owner, space.name)
        empty_tree = repos.git(repo, "hash-object", "-t", "tree", "-w", "--stdin", input_bytes=b"")
        commit = repos.git(
            repo,
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@x",
            "commit-tree",
            empty_tree.decode().strip(),
            "-m",
            "first",
        )
        repos.git(repo, "update-ref", "refs/heads/main", commit.decode().strip())
        session.commit()
    with TestClient(create_api(migrate=False), raise_server_exceptions=False) as test_client:
        yield test_client, {"authorization": f"Bearer {token}"}
    get_settings.cache_clear()


def test_branches_and_tags_stop_at_the_limit(client: tuple[TestClient, dict[str, str]]) -> None:
    api, headers = client
    base = "/api/spaces/alice/demo"
    assert api.post(f"{base}/branch/a", json={}, headers=headers).status_code == 200
    full = api.post(f"{base}/branch/b", json={}, headers=headers)
    assert full.status_code == 429, full.text
    assert "SPACEPORT_MAX_REFS_PER_SPACE" in full.json()["error"]
    assert full.headers["x-error-code"] == "TooManyRequests"
    assert api.post(f"{base}/tag/main", json={"tag": "v1"}, headers=headers).status_code == 429
    assert api.delete(f"{base}/branch/a", headers=headers).status_code == 200
    made = api.post(f"{base}/tag/main", json={"tag": "v1"}, headers=headers)
    assert made.status_code == 200
    assert made.json() == {
        "name": "v1",
        "ref": "refs/tags/v1",
        "targetCommit": made.json()["targetCommit"],
    }
    refs = api.get(f"{base}/refs", headers=headers).json()
    assert [r["name"] for r in refs["branches"]] == ["main"]
    assert [r["name"] for r in refs["tags"]] == ["v1"]
    assert "pullRequests" not in refs
    assert api.get(f"{base}/refs?include_prs=1").json()["pullRequests"] == []


def test_bodies_are_strict(client: tuple[TestClient, dict[str, str]]) -> None:
    api, headers = client
    base = "/api/spaces/alice/demo"
    wrong = api.post(f"{base}/branch/a", json={"startingPoint": 5}, headers=headers)
    assert wrong.status_code == 422 and "startingPoint" in wrong.json()["error"]
    assert api.post(f"{base}/tag/main", json={}, headers=headers).status_code == 422
    long = api.post(
        f"{base}/super-squash/main", json={"message": "x" * (70 << 10)}, headers=headers
    )
    assert long.status_code == 422 and "message" in long.json()["error"]
    assert api.get(f"{base}/commits/main?p=-1").status_code == 422
