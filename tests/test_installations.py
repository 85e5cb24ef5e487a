"""Two installations on one Docker Engine, both with default settings (no SPACEPORT_INSTANCE):
each labels its containers with its own installation id and never touches the other's.
Before, both used the label 'spaceport' and each stopped the other's Spaces as orphans."""

from __future__ import annotations

import re
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import docker
import httpx
import pytest

from tests import services, stacks
from tests.platform import Platform
from tests.test_identity import deploy_marker, info


def default_platform(home: Path) -> Platform:
    """A platform as a user starts one: only its home and port are its own."""
    port = services.free_port()
    env = stacks.platform_env(
        home,
        port,
        # Shared with the suite's SQLite stack: the marker image is built once.
        SPACEPORT_IMAGE_PREFIX="spaceport-test-sqlite-embedded",
        # Sizes only (as conftest.py), so both fit a small host beside other test runs.
        **stacks.SMALL_SIZES,
    )
    return Platform(home=home, env=env, port=port)


@pytest.fixture
def two(docker_engine: None) -> Iterator[tuple[Platform, Platform]]:
    homes = [Path(tempfile.mkdtemp(prefix=f"spaceport-install-{n}-")) for n in "ab"]
    platforms = [default_platform(home) for home in homes]
    try:
        yield platforms[0], platforms[1]
    finally:
        for platform in platforms:
            if (platform.home / "installation-id").exists():
                platform.stop()
            else:
                platform.stop(remove_containers=False)
        for home in homes:
            shutil.rmtree(home, ignore_errors=True)


def containers(platform: Platform) -> list:
    """The installation's Space containers (it also runs helpers, such as the build proxy)."""
    labels = [f"org.spaceport.instance={platform.instance}", "org.spaceport.space"]
    return docker.from_env().containers.list(
        ignore_removed=True, all=True, filters={"label": labels}
    )


def test_two_default_installations_keep_to_their_own(
    two: tuple[Platform, Platform], workdir: Path
) -> None:
    first, second = two
    first.start()
    # The same owner/name on both: on the old code the same labels, too.
    deploy_marker(first, "alice", "shared", workdir, "first-install")
    (before,) = containers(first)

    second.start()
    # Its whole build and start: many passes of both controllers.
    deploy_marker(second, "alice", "shared", workdir, "second-install")

    (after,) = containers(first)
    assert after.id == before.id and after.status == "running"
    assert first.runtime("alice", "shared")["stage"] == "RUNNING"
    (theirs,) = containers(second)
    assert theirs.id != before.id
    assert theirs.labels["org.spaceport.space-id"] == info(second, "alice", "shared")["_id"]
    for platform, marker in ((first, "first-install"), (second, "second-install")):
        page = httpx.get(info(platform, "alice", "shared")["host"] + "/", timeout=30)
        assert marker in page.text
    assert first.instance != second.instance
    for platform in two:
        assert re.fullmatch(r"spaceport-[0-9a-f]{12}", platform.instance)
        mode = stat.S_IMODE((platform.home / "installation-id").stat().st_mode)
        assert mode == 0o600
