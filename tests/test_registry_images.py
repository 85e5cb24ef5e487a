"""Images in a registry (SPACEPORT_REGISTRY): the build worker pushes each built image to a
real registry (Debian's docker-registry, tests/local_registry.py) with its credentials, the
Space records it by digest, and the Docker backend runs exactly that digest, pulling it when
the Engine lacks it. The password is never shown; wrong credentials or an unreachable
registry fail the build saying what to fix."""

from __future__ import annotations

import contextlib
import io
import shutil
import tarfile
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import docker.errors
import httpx
import pytest

from builder.docker_build import BuildFailed
from builder.registry_push import RegistryTarget, push_image
from tests import services, stacks
from tests.local_registry import LocalRegistry
from tests.platform import Platform, commit_change, push, sample_checkout

pytestmark = pytest.mark.docker

SAMPLE = "static_site"  # the cheapest build that runs a server


@contextlib.contextmanager
def _platform(registry: str, username: str, password: str) -> Iterator[Platform]:
    home = Path(tempfile.mkdtemp(prefix="spaceport-registry-"))
    port = services.free_port()
    env = stacks.platform_env(
        home,
        port,
        SPACEPORT_IMAGE_PREFIX="spaceport-test-registry",
        SPACEPORT_INSTANCE=f"spaceport-test-registry-{uuid.uuid4().hex[:6]}",
        SPACEPORT_REGISTRY=registry,
        SPACEPORT_REGISTRY_USERNAME=username,
        SPACEPORT_REGISTRY_PASSWORD=password,
        **stacks.SMALL_SIZES,
    )
    platform = Platform(home=home, env=env, port=port)
    try:
        platform.start()
        yield platform
    finally:
        platform.stop()
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="module")
def pushing(docker_engine: None, local_registry: LocalRegistry) -> Iterator[Platform]:
    """A platform whose builds go to the local registry, with the right credentials."""
    with _platform(local_registry.address, local_registry.username, local_registry.password) as p:
        yield p


def _space(platform: Platform, owner: str, name: str, token: str) -> dict:
    response = platform.api(f"/api/spaces/{owner}/{name}", token)
    response.raise_for_status()
    return response.json()


def _containers(platform: Platform, client: docker.DockerClient, uid: str) -> list:
    """The Space's own containers (not the installation's build proxy)."""
    labels = [f"org.spaceport.instance={platform.instance}", f"org.spaceport.space-id={uid}"]
    return client.containers.list(ignore_removed=True, all=True, filters={"label": labels})


def test_a_built_image_runs_by_its_digest_in_the_registry(
    pushing: Platform, local_registry: LocalRegistry, workdir: Path
) -> None:
    client = docker.from_env()
    token = pushing.token("alice")
    # Content of its own, so the image id is this test's alone: ids are content addresses, and
    # another installation on this Engine may be running the same sample's image, which Docker
    # then refuses to remove (409) below.
    checkout = sample_checkout(SAMPLE, workdir)
    commit_change(checkout, "unique.txt", uuid.uuid4().hex, "content of this test's own")
    result = push(checkout, pushing.git_url("alice", "pushed", token))
    assert "remote: -----> Build succeeded" in result.stderr, result.stderr[-3000:]
    runtime = pushing.wait_for_stage("alice", "pushed", token)
    assert runtime["stage"] == "RUNNING", runtime
    sha = runtime["sha"]
    uid = _space(pushing, "alice", "pushed", token)["_id"]

    # The registry holds <uid>:<commit>, and the build's image is that digest.
    build = pushing.builds("alice", "pushed", token)[0]
    digest = local_registry.manifest_digest(uid, sha)
    assert digest is not None and digest.startswith("sha256:"), digest
    assert build["image"] == f"{local_registry.address}/{uid}@{digest}"
    log = pushing.build_log("alice", "pushed", build["id"], token)
    assert f"Pushing {local_registry.address}/{uid}:{sha}" in log
    assert f"pushed: {build['image']}" in log

    # The running container was started from that reference.
    (container,) = [c for c in _containers(pushing, client, uid) if c.status == "running"]
    assert container.attrs["Config"]["Image"] == build["image"]

    # Spaceport stops and its containers go (static Spaces can't be paused); then every local
    # name of the image goes too, so the controller started again can only run it by pulling
    # the digest from the registry, as on a host that never built it.
    pushing.stop()
    assert not _containers(pushing, client, uid)
    image_id = client.images.get(build["image"]).id
    client.images.remove(image_id, force=True)
    with pytest.raises(docker.errors.ImageNotFound):
        client.images.get(build["image"])
    pushing.start()
    deadline = time.monotonic() + 180
    while not [c for c in _containers(pushing, client, uid) if c.status == "running"]:
        assert time.monotonic() < deadline, f"not started again:\n{pushing.log_tail()}"
        time.sleep(0.5)
    runtime = pushing.wait_for_stage("alice", "pushed", token, timeout=180)
    assert runtime["stage"] == "RUNNING", runtime
    assert len(pushing.builds("alice", "pushed", token)) == 1  # pulled, not built again
    pulled = client.images.get(build["image"])
    assert f"{local_registry.address}/{uid}@{digest}" in pulled.attrs["RepoDigests"]
    assert pulled.id == image_id  # exactly the content that was built
    (container,) = [c for c in _containers(pushing, client, uid) if c.status == "running"]
    assert container.attrs["Config"]["Image"] == build["image"]
    assert container.image is not None and container.image.id == image_id
    assert httpx.get(pushing.app_url("alice", "pushed"), timeout=30).status_code == 200

    # The password is nowhere a user (or an operator reading the logs) could see it.
    seen = [
        log,
        pushing.api("/api/spaces/alice/pushed", token).text,
        pushing.api("/api/spaces/alice/pushed/runtime", token).text,
        pushing.api("/api/spaces/alice/pushed/builds", token).text,
        pushing.api("/api/spaces/alice/pushed/events", token).text,
        (pushing.home / "logs" / "up.log").read_text(errors="replace"),
    ]
    assert pushing.api("/api/spaces/alice/pushed/events", token).status_code == 200
    for text in seen:
        assert local_registry.password not in text


def test_wrong_credentials_fail_the_build_saying_what_to_fix(
    docker_engine: None, local_registry: LocalRegistry, workdir: Path
) -> None:
    wrong = "not-the-password-" + uuid.uuid4().hex
    with _platform(local_registry.address, local_registry.username, wrong) as platform:
        token = platform.token("alice")
        push(sample_checkout(SAMPLE, workdir), platform.git_url("alice", "refused", token))
        runtime = platform.wait_for_stage("alice", "refused", token)
        assert runtime["stage"] == "BUILD_ERROR", runtime
        message = runtime["errorMessage"]
        assert "refused the credentials" in message, message
        assert "SPACEPORT_REGISTRY_PASSWORD" in message, message
        assert local_registry.address in message
        build = platform.builds("alice", "refused", token)[0]
        assert build["status"] == "failed" and build["image"] is None
        log = platform.build_log("alice", "refused", build["id"], token)
        assert "refused the credentials" in log
        for text in (message, log, platform.api("/api/spaces/alice/refused/events", token).text):
            assert wrong not in text


def test_an_unreachable_registry_fails_saying_what_to_fix(docker_engine: None) -> None:
    """The builder's push alone, against a port nothing listens on."""
    client = docker.from_env()
    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w") as archive:
        member = tarfile.TarInfo("hello")
        member.size = 3
        archive.addfile(member, io.BytesIO(b"hi\n"))
    client.api.import_image_from_data(tar.getvalue(), repository="spaceport-test-tiny", tag="1")
    image = client.images.get("spaceport-test-tiny:1")
    target = RegistryTarget(f"127.0.0.1:{services.free_port()}", "someone", "pw-never-shown")
    lines: list[str] = []
    with pytest.raises(BuildFailed) as failed:
        push_image(client, image.id or "", target, "f" * 24, "a" * 40, lines.append)
    message = str(failed.value)
    assert "could not be reached" in message and "SPACEPORT_REGISTRY" in message, message
    assert "pw-never-shown" not in message + "\n".join(lines)
    # The tag made for the push is gone again.
    assert not client.images.list(name=f"{target.registry}/{'f' * 24}")
    client.images.remove("spaceport-test-tiny:1")
