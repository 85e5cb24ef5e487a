"""What a test platform is started with: its environment and, on the second stack, its own
PostgreSQL and Redis. Shared by tests/conftest.py's `platform` and by the tests that need a
platform of their own (different settings, or one they may kill)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from sandbox.hardware import SMALL_HOST_CPU_ALLOCATION_RATIO, SMALL_HOST_OVERRIDES
from tests import services
from tests.platform import Platform

STACKS = ["sqlite-embedded", "postgres-redis"]
# Small tiers, so the suite's Spaces all fit on a small host (admission), and test runs
# sharing one Engine do not wait for each other's Spaces.
SMALL_SIZES = {
    "SPACEPORT_HARDWARE_OVERRIDES": json.dumps(SMALL_HOST_OVERRIDES),
    "SPACEPORT_CPU_ALLOCATION_RATIO": str(4 * SMALL_HOST_CPU_ALLOCATION_RATIO),
    "SPACEPORT_ADMISSION_COUNTS_OTHER_INSTALLATIONS": "false",
    # The session platform holds every module's Spaces (40-odd of 0.5 GiB by the last
    # module): a test control plane needs less than the 2 GiB a real one keeps back.
    "SPACEPORT_PLATFORM_RESERVE_MEMORY_GIB": "1",
}


def platform_env(home: Path, port: int, **settings: str) -> dict[str, str]:
    """This process's environment without any SPACEPORT_ setting of its own, plus the home,
    the URLs of `port` and ``settings`` (SPACEPORT_... names)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPACEPORT_")}
    env.update(
        SPACEPORT_HOME=str(home),
        SPACEPORT_PUBLIC_URL=f"http://127.0.0.1:{port}",
        SPACEPORT_SPACES_DOMAIN=f"localhost:{port}",
    )
    env.update(settings)
    return env


def start_stack(stack: str, workdir: Path) -> tuple[dict[str, str], list[Callable[[], None]]]:
    """The settings of ``stack`` and what stops its servers (none on the embedded stack).
    Under CI=true a missing PostgreSQL or Redis fails the test (services.require)."""
    if stack != "postgres-redis":
        return {}, []
    services.require_postgres()
    services.require_redis()
    database_url, stop_pg = services.start_postgres(workdir / "pg")
    try:
        broker_url, stop_redis = services.start_redis(workdir / "redis")
    except BaseException:
        stop_pg()
        raise
    return (
        {"SPACEPORT_DATABASE_URL": database_url, "SPACEPORT_BROKER_URL": broker_url},
        [stop_pg, stop_redis],
    )


@contextlib.contextmanager
def own_platform(
    prefix: str, stack: str = "sqlite-embedded", **settings: str
) -> Iterator[Platform]:
    """A started Spaceport of a test's own on ``stack`` (its own PostgreSQL and Redis on the
    second), in a fresh home named from ``prefix``, on a free port, with ``settings``; stopped
    afterwards, with its containers, servers and home."""
    home = Path(tempfile.mkdtemp(prefix=prefix))
    port = services.free_port()
    stops: list[Callable[[], None]] = []
    try:
        servers, stops = start_stack(stack, home)
        platform = Platform(
            home=home, env=platform_env(home, port, **settings, **servers), port=port
        )
        try:
            platform.start()
            yield platform
        finally:
            platform.stop()
    finally:
        for stop in reversed(stops):
            stop()
        shutil.rmtree(home, ignore_errors=True)
