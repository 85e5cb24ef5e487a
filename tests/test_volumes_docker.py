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
        all=True, filters={"label": f"org.spaceport.instance={instance}"}
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
