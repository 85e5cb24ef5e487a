"""Volumes and buckets through the API in process (orchestrator/api/volumes.py,
orchestrator/volumes/): the wire shapes huggingface_hub sends and reads, the mount rules,
who may mount what, and the mounts the controller hands the backend. The real client and
real containers: tests/test_volumes.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlmodel import Session, select

from orchestrator.controller.environment import revision_of
from orchestrator.core import auth, db
from orchestrator.core.models import Event, Space
from orchestrator.core.settings import get_settings
from orchestrator.repos import commit as repo_commit
from orchestrator.repos import store as repos
from orchestrator.spaces import registry as spaces
from orchestrator.volumes.mounts import MountError
from tests.unit.in_process_api import Api


def _commit_file(space: Space, path: str, content: bytes, tmp: Path) -> str:
    source = tmp / "content"
    source.write_bytes(content)
    return repo_commit.create_commit(
        repos.repo_path(space.owner, space.name),
        "refs/heads/main",
        None,
        [repo_commit.AddFile(path=path, source=source)],
        "add",
        ("alice", "alice@x"),
    )


@pytest.fixture
def api_settings() -> dict[str, str]:
    return {"SPACEPORT_MAX_VOLUMES_PER_SPACE": "2"}


def _space(name: str = "demo") -> Space:
    with Session(db.get_engine()) as session:
        found = spaces.get_space(session, "alice", name)
        assert found is not None
        session.expunge(found)
        return found


def test_buckets_create_read_list_delete(api: Api) -> None:
    client, alice, bob = api
    made = client.post("/api/buckets/me/data", json={"visibility": "private"}, headers=alice)
    assert made.status_code == 200, made.text
    assert made.json()["url"].endswith("/buckets/alice/data")
    again = client.post("/api/buckets/alice/data", json={}, headers=alice)
    assert again.status_code == 409  # what create_bucket(exist_ok=True) reads
    info = client.get("/api/buckets/alice/data", headers=alice).json()
    assert info["id"] == "alice/data" and info["private"] is True
    assert {"createdAt", "size", "totalFiles"} <= set(info)
    # A private bucket is the same 404 as a missing one to anyone else.
    hidden = client.get("/api/buckets/alice/data", headers=bob)
    assert hidden.status_code == 404 and hidden.headers["x-error-code"] == "RepoNotFound"
    assert client.get("/api/buckets/alice", headers=bob).json() == []
    assert [b["id"] for b in client.get("/api/buckets/alice", headers=alice).json()] == [
        "alice/data"
    ]
    assert client.post("/api/buckets/alice/x", json={}, headers=bob).status_code == 403
    assert client.post("/api/buckets/me/-bad", json={}, headers=alice).status_code == 400
    assert client.delete("/api/buckets/alice/data", headers=alice).status_code == 200
    assert client.get("/api/buckets/alice/data", headers=alice).status_code == 404


def test_set_and_delete_volumes_show_in_the_runtime_with_an_event(api: Api) -> None:
    client, alice, _ = api
    client.post("/api/buckets/me/data", json={}, headers=alice)
    body = {"volumes": [{"type": "bucket", "source": "alice/data", "mountPath": "/data"}]}
    put = client.put("/api/spaces/alice/demo/volumes", json=body, headers=alice)
    assert put.status_code == 200, put.text
    shown = client.get("/api/spaces/alice/demo/runtime", headers=alice).json()["volumes"]
    assert shown == [
        {"type": "bucket", "source": "alice/data", "mountPath": "/data", "readOnly": False}
    ]
    space = _space()
    with Session(db.get_engine()) as session:
        kinds = [e.kind for e in session.exec(select(Event).where(Event.space_id == space.id))]
    assert "volumes.changed" in kinds
    assert client.delete("/api/spaces/alice/demo/volumes", headers=alice).status_code == 200
    assert "volumes" not in client.get("/api/spaces/alice/demo/runtime", headers=alice).json()
    # Nothing left to remove: the Hub's BadRequest.
    assert client.delete("/api/spaces/alice/demo/volumes", headers=alice).status_code == 400


@pytest.mark.parametrize(
    ("volume", "status", "words"),
    [
        ({"type": "model", "source": "alice/m", "mountPath": "/m"}, 400, "no models"),
        ({"type": "dataset", "source": "alice/d", "mountPath": "/d"}, 400, "datasets"),
        ({"type": "bucket", "source": "alice/data", "mountPath": "data"}, 400, "absolute"),
        ({"type": "bucket", "source": "alice/data", "mountPath": "/"}, 400, "whole"),
        ({"type": "bucket", "source": "alice/data", "mountPath": "/a/../b"}, 400, ".."),
        ({"type": "bucket", "source": "alice/data", "mountPath": "/home/user/app"}, 400, "app"),
        ({"type": "bucket", "source": "alice/data", "mountPath": "/home"}, 400, "app"),
        ({"type": "bucket", "source": "alice/nope", "mountPath": "/d"}, 404, "not found"),
        ({"type": "space", "source": "alice/nope", "mountPath": "/d"}, 404, "not found"),
        (
            {"type": "space", "source": "alice/demo", "mountPath": "/d", "readOnly": False},
            400,
            "read-only",
        ),
        ({"type": "ftp", "source": "alice/data", "mountPath": "/d"}, 400, "not one of"),
    ],
)
def test_what_cannot_be_mounted_is_refused_clearly(
    api: Api, volume: dict[str, object], status: int, words: str
) -> None:
    client, alice, _ = api
    client.post("/api/buckets/me/data", json={}, headers=alice)
    answer = client.put("/api/spaces/alice/demo/volumes", json={"volumes": [volume]}, headers=alice)
    assert answer.status_code == status, answer.text
    assert words in answer.json()["error"]
    assert _space().volumes is None  # nothing written


def test_limits_and_overlaps(api: Api) -> None:
    client, alice, _ = api
    client.post("/api/buckets/me/data", json={}, headers=alice)
    one = {"type": "bucket", "source": "alice/data"}
    three = [{**one, "mountPath": f"/d{i}"} for i in range(3)]
    too_many = client.put("/api/spaces/alice/demo/volumes", json={"volumes": three}, headers=alice)
    assert too_many.status_code == 400 and "SPACEPORT_MAX_VOLUMES_PER_SPACE" in too_many.text
    nested = [{**one, "mountPath": "/d"}, {**one, "mountPath": "/d/e"}]
    answer = client.put("/api/spaces/alice/demo/volumes", json={"volumes": nested}, headers=alice)
    assert answer.status_code == 400 and "overlaps" in answer.text


def test_someone_elses_private_bucket_is_not_mountable(api: Api) -> None:
    client, alice, bob = api
    client.post("/api/buckets/me/secret", json={"visibility": "private"}, headers=bob)
    client.post("/api/buckets/me/open", json={}, headers=bob)
    body = {"volumes": [{"type": "bucket", "source": "bob/secret", "mountPath": "/d"}]}
    assert client.put("/api/spaces/alice/demo/volumes", json=body, headers=alice).status_code == 404
    # A public bucket of someone else: readable, so read-only only.
    body = {"volumes": [{"type": "bucket", "source": "bob/open", "mountPath": "/d"}]}
    assert client.put("/api/spaces/alice/demo/volumes", json=body, headers=alice).status_code == 403
    body["volumes"][0]["readOnly"] = True  # type: ignore[index]
    assert client.put("/api/spaces/alice/demo/volumes", json=body, headers=alice).status_code == 200
    # Bob can't change alice's Space's volumes.
    assert client.delete("/api/spaces/alice/demo/volumes", headers=bob).status_code in (403, 404)


def test_a_mounted_bucket_is_not_deleted(api: Api) -> None:
    client, alice, _ = api
    client.post("/api/buckets/me/data", json={}, headers=alice)
    body = {"volumes": [{"type": "bucket", "source": "alice/data", "mountPath": "/data"}]}
    client.put("/api/spaces/alice/demo/volumes", json=body, headers=alice)
    refused = client.delete("/api/buckets/alice/data", headers=alice)
    assert refused.status_code == 409 and "alice/demo" in refused.text


def test_the_revision_carries_the_mounts(api: Api, tmp_path: Path) -> None:
    """A bucket by its uid (so a rename keeps its data), another Space's files as an
    export of the commit its revision names, bound read-only."""
    client, alice, _ = api
    client.post("/api/buckets/me/data", json={}, headers=alice)
    with Session(db.get_engine()) as session:
        owner = auth.get_or_create_user(session, "alice")
        other = spaces.create_space(session, owner, "weights", sdk="gradio")
        session.commit()
        session.refresh(other)
        session.expunge(other)
    sha = _commit_file(other, "w/model.txt", b"weights v1\n", tmp_path)
    body = {
        "volumes": [
            {"type": "bucket", "source": "alice/data", "mountPath": "/data"},
            {"type": "space", "source": "alice/weights", "mountPath": "/w", "path": "w"},
        ]
    }
    put = client.put("/api/spaces/alice/demo/volumes", json=body, headers=alice)
    assert put.status_code == 200, put.text
    with Session(db.get_engine()) as session:
        space = spaces.get_space(session, "alice", "demo")
        assert space is not None
        space.built_sha, space.built_image = "a" * 40, "img:1"
        revision = revision_of(session, space)
        assert revision is not None
        bucket, files = revision.mounts
        assert bucket.name.startswith("bucket-") and not bucket.read_only
        assert bucket.mount_path == "/data" and bucket.source_dir is None
        assert files.read_only and files.mount_path == "/w"
        assert files.source_dir is not None and sha in files.source_dir
        assert Path(files.source_dir, "model.txt").read_text() == "weights v1\n"
        without = revision_of(session, space)
        assert without is not None and without.key == revision.key  # stable
        # The source gone: a MountError the reconciler shows as the runtime error.
        gone = spaces.get_space(session, "alice", "weights")
        assert gone is not None
        session.delete(gone)
        session.flush()
        with pytest.raises(MountError, match="alice/weights"):
            revision_of(session, space)
        session.rollback()


def test_a_source_its_owner_can_no_longer_read_is_not_mounted(api: Api) -> None:
    """Checked again at each start: bob's public Space, mounted by alice, made private."""
    client, alice, bob = api
    with Session(db.get_engine()) as session:
        owner = auth.get_or_create_user(session, "bob")
        spaces.create_space(session, owner, "open", sdk="gradio")
        session.commit()
    body = {"volumes": [{"type": "space", "source": "bob/open", "mountPath": "/o"}]}
    assert client.put("/api/spaces/alice/demo/volumes", json=body, headers=alice).status_code == 200
    made_private = client.put("/api/spaces/bob/open/settings", json={"private": True}, headers=bob)
    assert made_private.status_code == 200, made_private.text
    with Session(db.get_engine()) as session:
        space = spaces.get_space(session, "alice", "demo")
        assert space is not None
        space.built_sha, space.built_image = "a" * 40, "img:1"
        with pytest.raises(MountError, match="bob/open"):
            revision_of(session, space)
        session.rollback()
    # And it can't be mounted again.
    assert client.put("/api/spaces/alice/demo/volumes", json=body, headers=alice).status_code == 404


def test_an_organisations_space_does_not_mount_a_members_private_bucket(api: Api) -> None:
    from orchestrator.core import organizations

    client, alice, _ = api
    client.post("/api/buckets/me/mine", json={"visibility": "private"}, headers=alice)
    with Session(db.get_engine()) as session:
        member = auth.get_or_create_user(session, "alice")
        lab = organizations.create_org(session, "lab", member, actor="alice")
        spaces.create_space(session, lab, "shared", sdk="gradio")
        session.commit()
    body = {"volumes": [{"type": "bucket", "source": "alice/mine", "mountPath": "/d"}]}
    refused = client.put("/api/spaces/lab/shared/volumes", json=body, headers=alice)
    assert refused.status_code == 403, refused.text
    assert "the Space's owner" in refused.json()["error"]


def test_a_moved_source_space_is_still_mounted(api: Api, tmp_path: Path) -> None:
    client, alice, _ = api
    with Session(db.get_engine()) as session:
        owner = auth.get_or_create_user(session, "alice")
        other = spaces.create_space(session, owner, "weights", sdk="gradio")
        session.commit()
        session.refresh(other)
        session.expunge(other)
    _commit_file(other, "model.txt", b"v1\n", tmp_path)
    body = {"volumes": [{"type": "space", "source": "alice/weights", "mountPath": "/w"}]}
    assert client.put("/api/spaces/alice/demo/volumes", json=body, headers=alice).status_code == 200
    moved = client.post(
        "/api/repos/move",
        json={"fromRepo": "alice/weights", "toRepo": "alice/weights2", "type": "space"},
        headers=alice,
    )
    assert moved.status_code == 200, moved.text
    with Session(db.get_engine()) as session:
        space = spaces.get_space(session, "alice", "demo")
        assert space is not None
        space.built_sha, space.built_image = "a" * 40, "img:1"
        revision = revision_of(session, space)
        assert revision is not None
        (files,) = revision.mounts
        assert files.source_dir is not None
        assert Path(files.source_dir, "model.txt").read_text() == "v1\n"
        session.rollback()


def test_migration_0012_adds_buckets_and_volumes_and_goes_back(database: str) -> None:
    from alembic import command
    from sqlalchemy import inspect

    def present() -> tuple[bool, bool]:
        inspector = inspect(db.get_engine())
        columns = {c["name"] for c in inspector.get_columns("space")}
        return "bucket" in inspector.get_table_names(), "volumes" in columns

    assert present() == (True, True)
    config = db.alembic_config(get_settings().sqlalchemy_url)
    command.downgrade(config, "0011")
    assert present() == (False, False)
    command.upgrade(config, "head")
    assert present() == (True, True)


def test_a_static_space_refuses_volumes_but_not_an_empty_list(api: Api) -> None:
    # Duplicating a static Space passes its (empty) volumes on: that must not be refused.
    from orchestrator.volumes import spec as volume_spec

    client, alice, _ = api
    client.post("/api/buckets/me/data", json={}, headers=alice)
    with Session(db.get_engine()) as session:
        owner = auth.get_or_create_user(session, "alice")
        site = spaces.create_space(session, owner, "site", sdk="static")
        session.commit()
        assert volume_spec.parse(session, None, site, []) == []
    body = {"volumes": [{"type": "bucket", "source": "alice/data", "mountPath": "/d"}]}
    answer = client.put("/api/spaces/alice/site/volumes", json=body, headers=alice)
    assert answer.status_code == 400 and "static" in answer.json()["error"]
