"""Volumes on the Docker backend with real containers (sandbox/docker_backend.py): a
bucket is a named volume the Space's user (uid 1000) writes, kept across a restart and a
rebuild (a new image); another Space's files are a read-only bind. The API side:
tests/unit/test_volumes_api.py."""

from __future__ import annotations

import io
import tarfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import docker
import pytest

from sandbox.backend import Revision, VolumeMount
from sandbox.docker_backend import DockerBackend
from sandbox.hardware import sized_tier

BASE = "python:3.11-slim"  # what the platform's own base images start from
# Appends a line per start to the bucket, then serves; an image only, no RUN step, so it
# builds offline in a moment.
APP = (
    "import os, http.server\n"
    "with open('/data/boots', 'a') as f: f.write(os.environ['GEN'] + '\\n')\n"
    "http.server.ThreadingHTTPServer(('', 7860), http.server.SimpleHTTPRequestHandler)"
    ".serve_forever()\n"
)


def _image(client: docker.DockerClient, tag: str, marker: str) -> str:
    dockerfile = (
        f"FROM {BASE}\nCOPY app.py /app.py\nLABEL marker={marker}\n"
        'USER 1000\nCMD ["python", "/app.py"]\n'
    ).encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in (("Dockerfile", dockerfile), ("app.py", APP.encode())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    client.images.build(fileobj=buf, custom_context=True, tag=tag, rm=True, pull=False)
    return tag


@pytest.fixture
def backend(docker_engine: None) -> Iterator[DockerBackend]:
    client = docker.from_env()
    try:
        client.images.get(BASE)
    except docker.errors.ImageNotFound:
        client.images.pull(BASE)
    instance = f"spaceport-test-vol-{uuid.uuid4().hex[:8]}"
    made = DockerBackend(instance, client=client)
    yield made
    for container in client.containers.list(
        ignore_removed=True, all=True, filters={"label": f"org.spaceport.instance={instance}"}
    ):
        container.remove(force=True)
    for volume in client.volumes.list(filters={"label": f"org.spaceport.instance={instance}"}):
        volume.remove(force=True)
    made.close()


def _revision(image: str, generation: int, mounts: tuple[VolumeMount, ...]) -> Revision:
    return Revision(
        space_id=uuid.uuid4().hex[:24],
        space="alice/volumes",
        sha=f"{generation:040d}",
        image=image,
        port=7860,
        hardware=sized_tier("cpu-basic", {"cpu-basic": {"cpu": 0.5, "memory_gib": 0.5}}),
        env={"GEN": str(generation)},
        generation=generation,
        mounts=mounts,
    )


def _exec(backend: DockerBackend, instance_id: str, *command: str) -> tuple[int, str]:
    container = backend.client.containers.get(instance_id)
    result = container.exec_run(list(command))
    return result.exit_code, result.output.decode()


def _boots(backend: DockerBackend, instance_id: str, lines: int) -> str:
    deadline = time.monotonic() + 60
    out = ""
    while time.monotonic() < deadline:
        code, out = _exec(backend, instance_id, "cat", "/data/boots")
        if code == 0 and len(out.splitlines()) >= lines:
            return out
        time.sleep(0.3)
    raise AssertionError(f"/data/boots never had {lines} lines: {out!r}")


def test_a_bucket_keeps_its_files_across_a_restart_and_a_rebuild(
    backend: DockerBackend, tmp_path: Path
) -> None:
    client = backend.client
    tag = f"spaceport-test-vol:{uuid.uuid4().hex[:8]}"
    first_image = _image(client, tag + "a", "first")
    bucket = VolumeMount(f"bucket-{uuid.uuid4().hex[:24]}", "/data")
    first = _revision(first_image, 0, (bucket,))
    instance = backend.start(first)
    assert _boots(backend, instance.id, 1) == "0\n"
    # Written by the Space's own user, uid 1000: the new volume was handed to it.
    assert _exec(backend, instance.id, "stat", "-c", "%u", "/data") == (0, "1000\n")
    backend.stop(instance.id)

    restarted = backend.start(replace(first, generation=1, env={"GEN": "1"}))
    assert _boots(backend, restarted.id, 2) == "0\n1\n"
    backend.stop(restarted.id)

    rebuilt_image = _image(client, tag + "b", "second")  # a new push: a new image
    rebuilt = backend.start(replace(first, image=rebuilt_image, generation=2, env={"GEN": "2"}))
    assert _boots(backend, rebuilt.id, 3) == "0\n1\n2\n"
    backend.stop(rebuilt.id)
    assert client.volumes.get(backend.volume_name(bucket.name))  # still there, stopped
    backend.remove_volume(bucket.name)
    with pytest.raises(docker.errors.NotFound):
        client.volumes.get(backend.volume_name(bucket.name))


def test_another_spaces_files_are_mounted_read_only(backend: DockerBackend, tmp_path: Path) -> None:
    exported = tmp_path / "export"
    exported.mkdir()
    (exported / "weights.txt").write_text("v1\n")
    exported.chmod(0o755)
    tmp_path.chmod(0o755)
    image = _image(backend.client, f"spaceport-test-vol:{uuid.uuid4().hex[:8]}", "ro")
    mounts = (
        VolumeMount(f"bucket-{uuid.uuid4().hex[:24]}", "/data"),
        VolumeMount("space-files", "/files", read_only=True, source_dir=str(exported)),
    )
    instance = backend.start(_revision(image, 0, mounts))
    _boots(backend, instance.id, 1)
    assert _exec(backend, instance.id, "cat", "/files/weights.txt") == (0, "v1\n")
    code, out = _exec(backend, instance.id, "touch", "/files/new")
    assert code != 0 and "Read-only file system" in out
    backend.stop(instance.id)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A migrated SQLite home of its own: the sweep reads buckets and writes events."""
    import os

    from orchestrator.core import changes, db
    from orchestrator.core.settings import get_settings

    for key in list(os.environ):
        if key.startswith("SPACEPORT_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("SPACEPORT_HOME", str(tmp_path / "home"))
    get_settings.cache_clear()
    db.get_engine.cache_clear()
    changes.reset_feed()
    db.migrate()
    yield tmp_path / "home"
    db.get_engine().dispose()
    get_settings.cache_clear()
    db.get_engine.cache_clear()
    changes.reset_feed()


def test_the_sweep_removes_a_deleted_buckets_volume_once_unmounted_and_measures_the_rest(
    backend: DockerBackend, home: Path
) -> None:
    from sqlmodel import Session, select

    from orchestrator.controller import volume_sweep
    from orchestrator.core import auth, db
    from orchestrator.core.models import Bucket, Event
    from orchestrator.volumes import buckets

    with Session(db.get_engine()) as session:
        owner = auth.get_or_create_user(session, "alice")
        gone, kept = (
            Bucket(owner_id=owner.id or 0, name="gone"),
            Bucket(owner_id=owner.id or 0, name="kept"),
        )
        session.add_all([gone, kept])
        session.commit()
        gone_uid, kept_uid = gone.uid, kept.uid
    image = _image(backend.client, f"spaceport-test-vol:{uuid.uuid4().hex[:8]}", "sweep")
    mounts = (
        VolumeMount(f"bucket-{gone_uid}", "/data"),
        VolumeMount(f"bucket-{kept_uid}", "/keep"),
    )
    instance = backend.start(_revision(image, 0, mounts))
    _boots(backend, instance.id, 1)
    code, out = _exec(backend, instance.id, "sh", "-c", "head -c 1048576 /dev/zero > /keep/blob")
    assert code == 0, out
    listed = {v.name: v for v in backend.volumes()}
    assert set(listed) == {m.name for m in mounts}
    assert all(v.in_use for v in listed.values())
    assert (listed[f"bucket-{kept_uid}"].size_bytes or 0) >= 2**20

    with Session(db.get_engine()) as session:
        row = session.exec(select(Bucket).where(Bucket.uid == gone_uid)).one()
        buckets.delete(session, "alice", auth.get_or_create_user(session, "alice"), row)
    docker_name = backend.volume_name(f"bucket-{gone_uid}")
    assert volume_sweep.sweep(backend).in_use == [f"bucket-{gone_uid}"]  # its container runs
    assert backend.client.volumes.get(docker_name)
    backend.stop(instance.id)  # the container is removed: nothing mounts it now

    swept = volume_sweep.sweep(backend)
    assert swept.removed == [f"bucket-{gone_uid}"]
    with pytest.raises(docker.errors.NotFound):
        backend.client.volumes.get(docker_name)
    assert backend.client.volumes.get(backend.volume_name(f"bucket-{kept_uid}"))
    assert swept.measured[kept_uid] >= 2**20
    with Session(db.get_engine()) as session:
        measured = session.exec(select(Bucket).where(Bucket.uid == kept_uid)).one()
        assert (measured.size_bytes or 0) >= 2**20 and measured.size_measured_at is not None
        kinds = session.exec(select(Event.kind).where(Event.kind.startswith("bucket."))).all()  # type: ignore[attr-defined]
        assert sorted(kinds) == ["bucket.deleted", "bucket.removed"]


def test_a_bucket_over_its_quota_is_mounted_read_only(backend: DockerBackend) -> None:
    image = _image(backend.client, f"spaceport-test-vol:{uuid.uuid4().hex[:8]}", "quota")
    name = f"bucket-{uuid.uuid4().hex[:24]}"
    first = _revision(image, 0, (VolumeMount(name, "/data"),))
    instance = backend.start(first)
    _boots(backend, instance.id, 1)
    backend.stop(instance.id)
    # The controller measured it over SPACEPORT_BUCKET_SIZE_GIB: the next start reads only,
    # so the app's append at its start fails.
    over = replace(first, generation=1, mounts=(VolumeMount(name, "/data", over_quota=True),))
    again = backend.start(over)
    container = backend.client.containers.get(again.id)
    assert container.wait(timeout=60)["StatusCode"] != 0
    assert "Read-only file system: '/data/boots'" in container.logs().decode()
    mounted = {m["Destination"]: m for m in container.attrs["Mounts"]}
    assert mounted["/data"]["RW"] is False
    assert mounted["/data"]["Name"] == backend.volume_name(name)  # the same data, kept
    backend.stop(again.id)
