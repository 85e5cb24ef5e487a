"""Processes that behave: `spaceport up`'s children die with it, even on kill -9; a second
`up` on the same home or port refuses at once; a build whose worker is killed fails within
a minute and its Space leaves BUILDING; a Space that was starting when `up` was killed runs
in one container once `up` is back, on both stacks (orchestrator/processes/up.py and
lifeline.py, orchestrator/core/home.py, orchestrator/builds/, orchestrator/controller/).
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

import docker
import pytest

from sandbox.backend import LABEL_INSTANCE, LABEL_SPACE
from tests import services, stacks
from tests.platform import Platform, push
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


def child_pid(platform: Platform, command: str) -> int:
    """The pid of `spaceport <command>` (worker, controller, ...) under `up`."""
    (up,) = platform.processes
    for pid in descendants(up.pid):
        with contextlib.suppress(OSError):
            args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if b"orchestrator.cli" in args and command.encode() in args:
                return pid
    raise AssertionError(f"no {command} process under spaceport up")


def worker_pid(platform: Platform) -> int:
    return child_pid(platform, "worker")


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
        runtime = platform.runtime("wendy", "orphan", token)
        assert runtime["stage"] == "BUILD_ERROR"
        assert "worker running this build stopped" in runtime["errorMessage"]
    finally:
        pusher.kill()
        pusher.wait()


def test_a_build_left_running_by_a_killed_up_fails_when_up_starts_again(
    killable: Platform, workdir: Path
) -> None:
    token = killable.token("rita")
    repo = docker_space(workdir, SLOW_DOCKERFILE)
    pusher = start_push(repo, killable.git_url("rita", "restart", token))
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            response = killable.api("/api/spaces/rita/restart/builds", token)
            builds = response.json() if response.status_code == 200 else []
            log = ""
            if builds:
                log = killable.build_log("rita", "restart", builds[0]["id"], token)
            if "slow step starts" in log:
                break
            time.sleep(0.3)
        assert "slow step starts" in log, killable.log_tail()
        (up,) = killable.processes
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
    killable.processes.clear()
    started = time.monotonic()
    killable.start()
    # `up` fails it before it says "up": nobody has to wait for the heartbeat timeout.
    (build,) = killable.builds("rita", "restart", token)
    assert build["status"] == "failed", build
    assert "worker running this build stopped" in build["errorMessage"]
    assert killable.runtime("rita", "restart", token)["stage"] == "BUILD_ERROR"
    assert time.monotonic() - started < 60


# Built at once (no RUN line), then a start window long enough to kill `up` in.
SLOW_START_DOCKERFILE = """FROM python:3.11-slim
CMD ["sh", "-c", "sleep 12 && exec python3 -m http.server 7860"]
"""


@pytest.fixture(scope="module", params=stacks.STACKS)
def killable(request: pytest.FixtureRequest, docker_engine: None) -> Iterator[Platform]:
    """A platform of these tests' own on each stack, which they kill and start again (each
    leaves it running); its database servers outlive `up`."""
    home = Path(tempfile.mkdtemp(prefix=f"spaceport-kill-{request.param}-"))
    port = services.free_port()
    servers, stops = stacks.start_stack(request.param, home)
    env = stacks.platform_env(
        home,
        port,
        SPACEPORT_INSTANCE=f"spaceport-test-kill-{uuid.uuid4().hex[:6]}",
        **stacks.SMALL_SIZES,
        **servers,
    )
    platform = Platform(home=home, env=env, port=port)
    try:
        platform.start()
        yield platform
    finally:
        platform.stop()
        for stop in reversed(stops):
            stop()
        shutil.rmtree(home, ignore_errors=True)


def space_containers(platform: Platform, space: str) -> list:
    client = docker.from_env()
    labels = [f"{LABEL_INSTANCE}={platform.instance}", f"{LABEL_SPACE}={space}"]
    try:
        return client.containers.list(all=True, filters={"label": labels})
    finally:
        client.close()


@pytest.mark.parametrize("killed", ["up", "controller"])
def test_a_space_starting_when_killed_runs_once_when_back(
    killable: Platform, workdir: Path, killed: str
) -> None:
    """Every process at once (then `up` again), or the controller alone (which `up` starts
    again): the instance that was starting is the one that serves, or its only successor."""
    token = killable.token("sam")
    name = f"slow-{killed}"
    full = f"sam/{name}"
    push(docker_space(workdir, SLOW_START_DOCKERFILE), killable.git_url("sam", name, token))
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if killable.runtime("sam", name, token)["stage"] == "APP_STARTING" and (
            space_containers(killable, full)
        ):
            break
        time.sleep(0.3)
    else:
        raise AssertionError(f"never started:\n{killable.log_tail()}")
    if killed == "up":
        killable.kill()  # every process of the platform at once, mid-start
        killable.start()
    else:
        os.kill(child_pid(killable, "controller"), signal.SIGKILL)

    runtime = killable.wait_for_stage("sam", name, token, timeout=300)
    assert runtime["stage"] == "RUNNING", f"{runtime}\n{killable.log_tail()}"
    running = [c for c in space_containers(killable, full) if c.status == "running"]
    assert len(running) == 1, [c.name for c in running]
    assert len(space_containers(killable, full)) == 1, "a stale container was left"
    assert len(killable.builds("sam", name, token)) == 1, "built again after the restart"
