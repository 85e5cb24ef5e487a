"""Processes that behave: `spaceport up`'s children die with it, even on kill -9; a second
`up` on the same home or port refuses at once; a build whose worker is killed fails within
a minute and its Space leaves BUILDING (orchestrator/processes/up.py and lifeline.py,
orchestrator/core/home.py, orchestrator/builds/runner.py).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import services, stacks
from tests.platform import Platform
from tests.test_push_to_build import SLOW_DOCKERFILE, docker_space, start_push

EXIT_BUSY = 75


def descendants(pid: int) -> set[int]:
    """Every live process below `pid`, from /proc (children, grandchildren, ...)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = (entry / "stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            if fields[0] != "Z":
                parents[int(entry.name)] = int(fields[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return state[state.rindex(")") + 2] != "Z"


def platform_env(home: Path, port: int) -> dict[str, str]:
    return stacks.platform_env(
        home, port, SPACEPORT_INSTANCE=f"spaceport-test-procs-{uuid.uuid4().hex[:6]}"
    )


@pytest.fixture
def own_platform(docker_engine: None) -> Iterator[Platform]:
    """A platform of this test's own (SQLite), since these tests kill it."""
    home = Path(tempfile.mkdtemp(prefix="spaceport-procs-"))
    port = services.free_port()
    platform = Platform(home=home, env=platform_env(home, port), port=port)
    try:
        platform.start()
        yield platform
    finally:
        platform.stop()
        shutil.rmtree(home, ignore_errors=True)


def up_command(port: int) -> list[str]:
    return [sys.executable, "-m", "orchestrator.cli", "up", "--port", str(port)]


def test_kill_9_of_up_takes_every_child_with_it(own_platform: Platform) -> None:
    (up,) = own_platform.processes
    children = descendants(up.pid)
    assert len(children) >= 4, "api, worker, beat and controller"
    os.kill(up.pid, signal.SIGKILL)  # `up` alone, not its process group
    up.wait()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(alive(pid) for pid in children):
        time.sleep(0.2)
    left = [pid for pid in children if alive(pid)]
    assert not left, [Path(f"/proc/{pid}/cmdline").read_bytes() for pid in left]
    # Nothing holds the port or the home any more: the next `up` starts.
    own_platform.processes.clear()
    own_platform.start()


def test_a_second_up_refuses_clearly_at_once(own_platform: Platform) -> None:
    # The same home, another port: refused because of the home.
    other_port = services.free_port()
    env = dict(own_platform.env, SPACEPORT_PUBLIC_URL=f"http://127.0.0.1:{other_port}")
    started = time.monotonic()
    same_home = subprocess.run(
        up_command(other_port), env=env, capture_output=True, text=True, timeout=60
    )
    assert same_home.returncode == EXIT_BUSY, same_home.stdout + same_home.stderr
    assert "already running on" in same_home.stdout + same_home.stderr
    assert str(own_platform.processes[0].pid) in same_home.stdout + same_home.stderr
    # Another home, the same port: refused because of the port, before saying "up".
    with tempfile.TemporaryDirectory() as other_home:
        busy_port = subprocess.run(
            up_command(own_platform.port),
            env=platform_env(Path(other_home), own_platform.port),
            capture_output=True,
            text=True,
            timeout=60,
        )
    output = busy_port.stdout + busy_port.stderr
    assert busy_port.returncode == EXIT_BUSY, output
    assert f"port {own_platform.port}" in output and "already in use" in output
    assert "Spaceport is up" not in output
    assert time.monotonic() - started < 30  # at once, not after a crash loop
    # The first one never noticed.
    assert own_platform.api("/api/health").status_code == 200
    assert own_platform.processes[0].poll() is None


def worker_pid(platform: Platform) -> int:
    (up,) = platform.processes
    for pid in descendants(up.pid):
        with contextlib.suppress(OSError):
            args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if b"orchestrator.cli" in args and b"worker" in args:
                return pid
    raise AssertionError("no worker process under spaceport up")


def test_a_build_whose_worker_is_killed_fails_within_a_minute(
    platform: Platform, workdir: Path
) -> None:
    token = platform.token("wendy")
    repo = docker_space(workdir, SLOW_DOCKERFILE)
    pusher = start_push(repo, platform.git_url("wendy", "orphan", token))
    try:
        deadline = time.monotonic() + 300
        build: dict = {}
        while time.monotonic() < deadline:
            response = platform.api("/api/spaces/wendy/orphan/builds", token)
            builds = response.json() if response.status_code == 200 else []
            if builds and "slow step starts" in platform.build_log(
                "wendy", "orphan", builds[0]["id"], token
            ):
                build = builds[0]
                break
            time.sleep(0.3)
        assert build, f"the slow step never started:\n{platform.log_tail()}"
        assert platform.runtime("wendy", "orphan", token)["stage"] == "BUILDING"
        os.kill(worker_pid(platform), signal.SIGKILL)
        killed = time.monotonic()
        while time.monotonic() - killed < 60:
            builds = platform.builds("wendy", "orphan", token)
            if builds[0]["status"] != "running":
                break
            time.sleep(1)
        assert builds[0]["id"] == build["id"]
        assert builds[0]["status"] == "failed", f"still running:\n{platform.log_tail()}"
        assert "worker running this build stopped" in builds[0]["errorMessage"]
        # The stage is the controller's, written when it sees the build's end: on a loaded
        # machine that may come a moment after the build row changed.
        settled = time.monotonic() + 15
        runtime = platform.runtime("wendy", "orphan", token)
        while runtime["stage"] == "BUILDING" and time.monotonic() < settled:
            time.sleep(0.2)
            runtime = platform.runtime("wendy", "orphan", token)
        assert runtime["stage"] == "BUILD_ERROR"
        assert "worker running this build stopped" in runtime["errorMessage"]
    finally:
        pusher.kill()
        pusher.wait()


def test_a_build_left_running_by_a_killed_up_fails_when_up_starts_again(
    own_platform: Platform, workdir: Path
) -> None:
    token = own_platform.token("rita")
    repo = docker_space(workdir, SLOW_DOCKERFILE)
    pusher = start_push(repo, own_platform.git_url("rita", "restart", token))
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            response = own_platform.api("/api/spaces/rita/restart/builds", token)
            builds = response.json() if response.status_code == 200 else []
            log = ""
            if builds:
                log = own_platform.build_log("rita", "restart", builds[0]["id"], token)
            if "slow step starts" in log:
                break
            time.sleep(0.3)
        assert "slow step starts" in log, own_platform.log_tail()
        (up,) = own_platform.processes
        children = descendants(up.pid)
        os.kill(up.pid, signal.SIGKILL)
        up.wait()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(alive(pid) for pid in children):
            time.sleep(0.2)
        assert not any(alive(pid) for pid in children)
    finally:
        pusher.kill()
        pusher.wait()
    own_platform.processes.clear()
    started = time.monotonic()
    own_platform.start()
    # `up` fails it before it says "up": nobody has to wait for the heartbeat timeout.
    (build,) = own_platform.builds("rita", "restart", token)
    assert build["status"] == "failed", build
    assert "worker running this build stopped" in build["errorMessage"]
    assert own_platform.runtime("rita", "restart", token)["stage"] == "BUILD_ERROR"
    assert time.monotonic() - started < 60
