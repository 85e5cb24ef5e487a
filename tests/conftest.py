"""Fixtures for tests that run a real Spaceport.

`platform` runs twice: on SQLite with the embedded broker, and on PostgreSQL with Redis,
each server started by the fixture. Under CI=true a missing Docker Engine, PostgreSQL or
Redis fails the tests instead of skipping them (tests.services.require).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox.hardware import SMALL_HOST_CPU_ALLOCATION_RATIO, SMALL_HOST_OVERRIDES
from tests import services
from tests.platform import Platform

STACKS = ["sqlite-embedded", "postgres-redis"]


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
    stops = []
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPACEPORT_")}
    port = services.free_port()
    env.update(
        SPACEPORT_HOME=str(home),
        SPACEPORT_PUBLIC_URL=f"http://127.0.0.1:{port}",
        SPACEPORT_SPACES_DOMAIN=f"localhost:{port}",
        # Each stack builds its own images, so the second stack really builds too
        # (from the shared layer cache).
        SPACEPORT_IMAGE_PREFIX=f"spaceport-test-{stack}",
        # Unique per run: two test runs sharing one Docker Engine never touch each other.
        SPACEPORT_INSTANCE=f"spaceport-test-{stack}-{uuid.uuid4().hex[:6]}",
        # Small tiers, so that the suite's Spaces all fit on a small host (admission); test
        # runs sharing one Engine do not wait for each other's Spaces.
        SPACEPORT_HARDWARE_OVERRIDES=json.dumps(SMALL_HOST_OVERRIDES),
        SPACEPORT_CPU_ALLOCATION_RATIO=str(4 * SMALL_HOST_CPU_ALLOCATION_RATIO),
        SPACEPORT_ADMISSION_COUNTS_OTHER_INSTALLATIONS="false",
    )
    if stack == "postgres-redis":
        services.require(
            "PostgreSQL",
            services.postgres_installed(),
            "apt-get install postgresql (scripts/bootstrap.sh --test)",
        )
        services.require(
            "Redis",
            services.redis_installed(),
            "apt-get install redis-server (scripts/bootstrap.sh --test)",
        )
        database_url, stop_pg = services.start_postgres(home / "pg")
        stops.append(stop_pg)
        broker_url, stop_redis = services.start_redis(home / "redis")
        stops.append(stop_redis)
        env.update(SPACEPORT_DATABASE_URL=database_url, SPACEPORT_BROKER_URL=broker_url)
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
