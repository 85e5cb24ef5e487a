"""The controller's volume sweep (orchestrator/controller/volume_sweep.py) with the in-memory
backend, on both databases: a deleted bucket's data is removed once no instance mounts it,
with an event; a bucket that exists, or whose deletion is not recorded, keeps its data; a
new bucket of a deleted one's name is a new volume. And the size quota: the sweep records
each bucket's size, an over-quota bucket is an event for the Spaces mounting it, a notice in
their runtime, and read-only at their next start (not a restart of what runs).
Docker's volumes: tests/test_volumes_docker.py; Kubernetes' claims: tests/test_kube_volumes.py."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, col, select

from orchestrator.app import create_api
from orchestrator.controller import volume_sweep
from orchestrator.controller.loop import Controller
from orchestrator.core import auth, db
from orchestrator.core.models import Bucket, Event, Space
from orchestrator.core.settings import get_settings
from orchestrator.spaces import registry as spaces
from sandbox.backend import Revision, VolumeMount
from sandbox.hardware import get_tier
from sandbox.memory_backend import MemoryBackend

Api = tuple[TestClient, dict[str, str]]
QUOTA_BYTES = 4096


@pytest.fixture
def api(database: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Api]:
    monkeypatch.setenv("SPACEPORT_BUCKET_SIZE_GIB", str(QUOTA_BYTES / 2**30))
    monkeypatch.setenv("SPACEPORT_PLATFORM_RESERVE_CPUS", "0")
    monkeypatch.setenv("SPACEPORT_PLATFORM_RESERVE_MEMORY_GIB", "0")
    get_settings.cache_clear()
    with Session(db.get_engine()) as session:
        alice = auth.get_or_create_user(session, "alice")
        token = auth.create_token(session, alice)
        session.commit()
    with TestClient(create_api(migrate=False), raise_server_exceptions=False) as client:
        yield client, {"authorization": f"Bearer {token}"}
    get_settings.cache_clear()


@pytest.fixture
def backend() -> Iterator[MemoryBackend]:
    memory = MemoryBackend(ready_on_start=True)
    yield memory
    memory.close()


def _create(api: Api, name: str) -> str:
    client, alice = api
    made = client.post(f"/api/buckets/alice/{name}", json={}, headers=alice)
    assert made.status_code == 200, made.text
    with Session(db.get_engine()) as session:
        bucket = session.exec(select(Bucket).where(Bucket.name == name)).one()
        return bucket.uid


def _delete(api: Api, name: str) -> None:
    client, alice = api
    deleted = client.delete(f"/api/buckets/alice/{name}", headers=alice)
    assert deleted.status_code == 200, deleted.text


def _mounting(uid: str) -> Revision:
    """A revision of some Space that mounts the bucket (what the controller would start)."""
    return Revision(
        space_id="f" * 24,
        space="alice/other",
        sha="a" * 40,
        image="img:1",
        port=7860,
        hardware=get_tier("cpu-basic"),
        mounts=(VolumeMount(f"bucket-{uid}", "/data"),),
    )


def _events(kind: str) -> list[dict]:
    with Session(db.get_engine()) as session:
        rows = session.exec(select(Event).where(Event.kind == kind).order_by(col(Event.id))).all()
        return [{**json.loads(r.data), "space": r.space_name, "actor": r.actor} for r in rows]


def test_a_deleted_buckets_data_is_removed_and_an_existing_ones_kept(
    api: Api, backend: MemoryBackend
) -> None:
    gone, kept = _create(api, "gone"), _create(api, "kept")
    instance = backend.start(_mounting(gone))  # made by a start, as on Docker
    backend.stop(instance.id)
    backend.fill_volume(f"bucket-{kept}", 100)
    _delete(api, "gone")
    assert _events("bucket.deleted") == [
        {"bucket": "alice/gone", "uid": gone, "space": None, "actor": "alice"}
    ]
    assert backend.kept_volumes.keys() == {f"bucket-{gone}", f"bucket-{kept}"}  # not yet

    swept = volume_sweep.sweep(backend)
    assert swept.removed == [f"bucket-{gone}"]
    assert backend.removed_volumes == [f"bucket-{gone}"]
    assert backend.kept_volumes == {f"bucket-{kept}": 100}
    assert _events("bucket.removed") == [
        {
            "bucket": "alice/gone",
            "uid": gone,
            "volume": f"bucket-{gone}",
            "space": None,
            "actor": "spaceport:controller",
        }
    ]
    # Once: the next sweep finds nothing more to remove.
    assert volume_sweep.sweep(backend).removed == []
    assert len(_events("bucket.removed")) == 1


def test_a_deleted_buckets_data_stays_while_an_instance_mounts_it(
    api: Api, backend: MemoryBackend
) -> None:
    uid = _create(api, "busy")
    instance = backend.start(_mounting(uid))  # e.g. an old revision still draining
    _delete(api, "busy")  # no Space's volumes name it any more: the API deletes the row
    swept = volume_sweep.sweep(backend)
    assert swept.removed == [] and swept.in_use == [f"bucket-{uid}"]
    assert f"bucket-{uid}" in backend.kept_volumes
    backend.exit(instance.id)  # exited but not removed: its container still holds it
    assert volume_sweep.sweep(backend).in_use == [f"bucket-{uid}"]
    backend.stop(instance.id)
    assert volume_sweep.sweep(backend).removed == [f"bucket-{uid}"]
    assert f"bucket-{uid}" not in backend.kept_volumes


def test_a_new_bucket_of_the_same_name_is_new_data(api: Api, backend: MemoryBackend) -> None:
    old = _create(api, "data")
    backend.fill_volume(f"bucket-{old}", 1000)
    _delete(api, "data")
    new = _create(api, "data")
    assert new != old  # named by a new uid: never the old files
    backend.fill_volume(f"bucket-{new}", 10)
    assert volume_sweep.sweep(backend).removed == [f"bucket-{old}"]
    assert backend.kept_volumes == {f"bucket-{new}": 10}


def test_data_without_a_bucket_or_a_recorded_deletion_is_kept(
    api: Api, backend: MemoryBackend
) -> None:
    # No row and no bucket.deleted for it (a database restored from before it was made, a
    # bucket deleted before the sweep existed): nothing proves it is garbage.
    backend.fill_volume("bucket-0123456789abcdef01234567", 5)
    swept = volume_sweep.sweep(backend)
    assert swept.removed == [] and swept.unrecorded == ["bucket-0123456789abcdef01234567"]
    assert backend.removed_volumes == []
    # And a volume that is not a bucket's is none of the sweep's business.
    backend.fill_volume("space-files", 5)
    assert volume_sweep.sweep(backend).unrecorded == ["bucket-0123456789abcdef01234567"]


def test_the_sweep_records_sizes_and_the_bucket_info_shows_them(
    api: Api, backend: MemoryBackend
) -> None:
    client, alice = api
    uid = _create(api, "sized")
    before = client.get("/api/buckets/alice/sized", headers=alice).json()
    assert before["size"] == 0 and before["sizeMeasuredAt"] is None
    assert before["sizeQuota"] == QUOTA_BYTES and before["overQuota"] is False
    backend.fill_volume(f"bucket-{uid}", 1234)
    assert volume_sweep.sweep(backend).measured == {uid: 1234}
    info = client.get("/api/buckets/alice/sized", headers=alice).json()
    assert info["size"] == 1234 and info["sizeMeasuredAt"].endswith("Z")
    assert info["overQuota"] is False
    assert [b["size"] for b in client.get("/api/buckets/alice", headers=alice).json()] == [1234]
    assert _events("bucket.over_quota") == []


def _mounted_space(api: Api) -> tuple[int, str]:
    """alice/app, built, mounting alice/store at /data."""
    client, alice = api
    uid = _create(api, "store")
    with Session(db.get_engine()) as session:
        owner = auth.get_or_create_user(session, "alice")
        space = spaces.create_space(session, owner, "app", sdk="gradio")
        space.built_sha = space.head_sha = "a" * 40
        space.built_image = "img/app:1"
        session.add(space)
        session.commit()
        assert space.id is not None
        space_id = space.id
    body = {"volumes": [{"type": "bucket", "source": "alice/store", "mountPath": "/data"}]}
    assert client.put("/api/spaces/alice/app/volumes", json=body, headers=alice).status_code == 200
    return space_id, uid


def test_an_over_quota_bucket_is_read_only_from_the_next_start(
    api: Api, backend: MemoryBackend
) -> None:
    client, alice = api
    space_id, uid = _mounted_space(api)
    controller = Controller(backend)
    try:
        controller.settle()
        (first,) = backend.running.values()
        assert backend.started[-1][1].mounts == (VolumeMount(f"bucket-{uid}", "/data"),)
        runtime = client.get("/api/spaces/alice/app/runtime", headers=alice).json()
        assert runtime["stage"] == "RUNNING" and "volumeNotice" not in runtime

        backend.fill_volume(f"bucket-{uid}", QUOTA_BYTES + 1)
        volume_sweep.sweep(backend)
        assert _events("bucket.over_quota") == [
            {
                "bucket": "alice/store",
                "uid": uid,
                "size_bytes": QUOTA_BYTES + 1,
                "quota_bytes": QUOTA_BYTES,
                "space": "alice/app",
                "actor": "spaceport:controller",
            }
        ]
        controller.settle()
        runtime = client.get("/api/spaces/alice/app/runtime", headers=alice).json()
        notice = runtime["volumeNotice"]
        assert "alice/store at /data" in notice and "over its" in notice
        assert "read-only from the Space's next start" in notice
        assert "SPACEPORT_BUCKET_SIZE_GIB" in notice and "Delete files" in notice
        assert runtime["stage"] == "RUNNING"
        # What runs keeps its writable mount: the quota is not part of the revision.
        assert list(backend.running) == [first.id]
        info = client.get("/api/buckets/alice/store", headers=alice).json()
        assert info["overQuota"] is True and info["size"] == QUOTA_BYTES + 1

        assert client.post("/api/spaces/alice/app/restart", headers=alice).status_code == 200
        controller.settle()
        # A new instance (the old one drains, then stops).
        (second,) = [i for i in backend.running.values() if i.id != first.id]
        mount = backend.started[-1][1].mounts[0]
        assert mount.over_quota is True and mount.read_only is False  # the owner's is kept
        assert replace(mount, over_quota=False) == VolumeMount(f"bucket-{uid}", "/data")
        started = [e for e in _events("instance.started") if e["instance"] == second.id]
        assert started[0]["read_only_over_quota"] == ["/data"]

        backend.fill_volume(f"bucket-{uid}", 10)  # files deleted: back under
        volume_sweep.sweep(backend)
        assert [e["size_bytes"] for e in _events("bucket.within_quota")] == [10]
        controller.settle()
        runtime = client.get("/api/spaces/alice/app/runtime", headers=alice).json()
        assert "volumeNotice" not in runtime
        with Session(db.get_engine()) as session:
            space = session.get(Space, space_id)
            assert space is not None and space.volume_notice is None
    finally:
        controller.stop()
        controller.reconciler.close()


def test_an_over_quota_bucket_no_space_mounts_is_one_event(
    api: Api, backend: MemoryBackend
) -> None:
    uid = _create(api, "alone")
    backend.fill_volume(f"bucket-{uid}", QUOTA_BYTES * 2)
    volume_sweep.sweep(backend)
    volume_sweep.sweep(backend)  # still over: no second event
    assert [(e["bucket"], e["space"]) for e in _events("bucket.over_quota")] == [
        ("alice/alone", None)
    ]


def test_migration_0016_adds_the_sizes_and_the_notice_and_goes_back(database: str) -> None:
    from alembic import command
    from sqlalchemy import inspect

    def present() -> tuple[bool, bool]:
        inspector = inspect(db.get_engine())
        bucket = {c["name"] for c in inspector.get_columns("bucket")}
        space = {c["name"] for c in inspector.get_columns("space")}
        return {"size_bytes", "size_measured_at"} <= bucket, "volume_notice" in space

    assert present() == (True, True)
    config = db.alembic_config(get_settings().sqlalchemy_url)
    command.downgrade(config, "0015")
    db.get_engine().dispose()
    assert present() == (False, False)
    command.upgrade(config, "head")
    db.get_engine().dispose()
    assert present() == (True, True)
