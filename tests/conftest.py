"""Fixtures for tests that run a real Spaceport.

`platform` runs twice: on SQLite with the embedded broker, and on PostgreSQL with Redis,
each server started by the fixture. Under CI=true a missing Docker Engine, PostgreSQL or
Redis fails the tests instead of skipping them (tests.services.require).
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import services, stacks
from tests.kube.fixtures import kube_cluster, kube_namespace  # noqa: F401 - fixtures
from tests.local_registry import local_registry  # noqa: F401 - a fixture
from tests.platform import Platform
from tests.stacks import STACKS


@pytest.fixture(scope="session")
def docker_engine() -> None:
    services.require(
        "Docker Engine",
        services.docker_available(),
        "run scripts/bootstrap.sh (installs docker.io and starts dockerd)",
    )


@pytest.fixture(scope="session", params=STACKS)
def platform(request: pytest.FixtureRequest, docker_engine: None) -> Iterator[Platform]:
    stack = request.param
    home = Path(tempfile.mkdtemp(prefix=f"spaceport-{stack}-"))
    port = services.free_port()
    servers, stops = stacks.start_stack(stack, home)
    env = stacks.platform_env(
        home,
        port,
        # Each stack builds its own images, so the second stack really builds too
        # (from the shared layer cache).
        SPACEPORT_IMAGE_PREFIX=f"spaceport-test-{stack}",
        # Unique per run: two test runs sharing one Docker Engine never touch each other.
        SPACEPORT_INSTANCE=f"spaceport-test-{stack}-{uuid.uuid4().hex[:6]}",
        **stacks.SMALL_SIZES,
        **servers,
        # A visitor's slot frees after seconds, not a minute: tests/test_visitor_queue.py.
        SPACEPORT_VISITOR_IDLE_SECONDS="8",
        # Deleted buckets' data goes, and sizes are measured, within seconds: test_volumes.py.
        SPACEPORT_BUCKET_SWEEP_SECONDS="2",
    )
    platform = Platform(home=home, env=env, port=port)
    try:
        platform.start()
        yield platform
    finally:
        log = platform.log_tail(lines=2000)
        if "starting it again" in log:
            # Supervision hid a crash from the tests; keep its story in the CI output.
            crash = log[max(0, log.index("starting it again") - 6000) :][:8000]
            warnings.warn(f"a Spaceport process crashed on {stack}:\n{crash}", stacklevel=1)
        platform.stop()
        for stop in reversed(stops):
            stop()
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path
