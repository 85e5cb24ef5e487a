"""Crash recovery, on both stacks: killing the controller, the worker, the API or the whole
of `spaceport up` in the middle of a build or of a start, then letting `up` restart the
process (or starting `up` again), loses no Space and leaves no duplicate container, build
or event. What a restarted process relies on: the controller adopts the containers it
finds by label (orchestrator/controller/), a build's state moves only forward and is
claimed once (orchestrator/builds/state.py), `up` fails builds whose worker died
(orchestrator/processes/up.py), and each event is written in the transaction of its change
(orchestrator/core/events.py).

The Space is a Dockerfile whose build takes a few seconds and whose app answers a few
seconds after its container starts, so that "mid-build" and "mid-start" are moments the
test can see and act in: it waits for the build log's line, or for the container to exist
while the stage is still starting, then kills.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import httpx
import pytest
import sqlalchemy

from tests.platform import Platform, get_when_served, git
from tests.test_processes import alive, descendants
from tests.test_push_to_build import wait_for_log_line

README = "---\ntitle: Crash\nsdk: docker\napp_port: 7860\n---\n"
BUILD_LINE = "crash build starts"
# Builds in a few seconds (the base image is cached); answers ~8 s after it starts: a
# window to kill in that a loaded machine does not miss.
DOCKERFILE = f"""FROM python:3.11-slim
RUN echo "{BUILD_LINE} {{nonce}}" && sleep 4
CMD ["sh", "-c", "sleep 8 && exec python3 -m http.server 7860"]
"""
STARTING = {"APP_STARTING", "RUNNING_APP_STARTING"}
UNFINISHED = {"queued", "running"}


def crash_space(workdir: Path) -> tuple[Path, str]:
    """A fresh repository (a new RUN line each time, so the layer cache never skips the
    build) and its commit."""
    repo = workdir / f"crash-{time.monotonic_ns()}"
    repo.mkdir()
    (repo / "README.md").write_text(README)
    (repo / "Dockerfile").write_text(DOCKERFILE.replace("{nonce}", str(time.time_ns())))
    git(repo, "init", "-q", "--initial-branch=main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "crash sample")
    return repo, git(repo, "rev-parse", "HEAD").stdout.strip()


@pytest.fixture
def pushes() -> Iterator[list[subprocess.Popen[bytes]]]:
    """The test's background pushes, ended when it ends."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for pusher in started:
        pusher.kill()
        pusher.wait()


def start_push(
    pushes: list[subprocess.Popen[bytes]],
    platform: Platform,
    repo: Path,
    owner: str,
    name: str,
    token: str,
) -> None:
    """Push in the background: the hook follows the build through the API, which some
    cases kill, so the push's own outcome is not what is tested."""
    pusher = subprocess.Popen(
        ["git", "push", "--force", platform.git_url(owner, name, token), "main"],
        cwd=repo,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={"GIT_TERMINAL_PROMPT": "0", "PATH": "/usr/bin:/bin", "HOME": str(repo)},
        start_new_session=True,
    )
    pushes.append(pusher)


def role_pid(platform: Platform, role: str) -> int:
    """The pid of `spaceport <role>` under the running `up`."""
    up = platform.processes[-1]
    for pid in descendants(up.pid):
        with contextlib.suppress(OSError):
            args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if b"orchestrator.cli" in args and role.encode() in args:
                return pid
    raise AssertionError(f"no {role} process under spaceport up:\n{platform.log_tail()}")


def kill_roles(platform: Platform, *roles: str) -> None:
    """kill -9 some of up's children at once, and wait until up has started each again
    (and the API answers: a new one listens a moment after its process starts)."""
    pids = {role: role_pid(platform, role) for role in roles}
    for pid in pids.values():
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with contextlib.suppress(AssertionError, httpx.HTTPError):
            if (
                all(role_pid(platform, role) != pid for role, pid in pids.items())
                and not any(alive(pid) for pid in pids.values())
                and platform.api("/api/health").status_code == 200
            ):
                return
        time.sleep(0.2)
    raise AssertionError(f"up did not start {roles} again:\n{platform.log_tail()}")


def restart_up(platform: Platform) -> None:
    """kill -9 of the whole platform, then `spaceport up` again on the same home."""
    platform.kill()
    platform.start()


def containers(platform: Platform, owner: str, name: str) -> list:
    client = docker.from_env()
    labels = [f"org.spaceport.instance={platform.instance}", f"org.spaceport.space={owner}/{name}"]
    return client.containers.list(ignore_removed=True, all=True, filters={"label": labels})


def wait_mid_start(platform: Platform, owner: str, name: str, token: str) -> None:
    """Until the Space's container exists and the Space is still starting."""
    deadline = time.monotonic() + 300
    stage = None
    while time.monotonic() < deadline:
        stage = platform.runtime(owner, name, token)["stage"]
        if stage in STARTING and containers(platform, owner, name):
            return
        assert stage not in {"RUNNING", "BUILD_ERROR", "RUNTIME_ERROR"}, (
            f"{owner}/{name} reached {stage} before it could be caught starting:\n"
            f"{platform.log_tail()}"
        )
        time.sleep(0.2)
    raise AssertionError(f"{owner}/{name} never started (last {stage}):\n{platform.log_tail()}")


def wait_builds_settled(platform: Platform, owner: str, name: str, token: str) -> list[dict]:
    """The Space's builds once none is queued or running (a build whose worker died fails,
    by the heartbeat or when `up` starts again)."""
    deadline = time.monotonic() + 120
    builds: list[dict] = []
    while time.monotonic() < deadline:
        builds = platform.builds(owner, name, token)
        if builds and not any(b["status"] in UNFINISHED for b in builds):
            return builds
        time.sleep(0.5)
    raise AssertionError(f"builds left unfinished: {builds}\n{platform.log_tail()}")


def events(platform: Platform, owner: str, name: str) -> list[tuple[str, dict]]:
    """The Space's events (kind, data), oldest first, read from the database itself."""
    url = platform.env.get("SPACEPORT_DATABASE_URL") or f"sqlite:///{platform.home}/spaceport.db"
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                sqlalchemy.text("SELECT kind, data FROM event WHERE space_name = :n ORDER BY id"),
                {"n": f"{owner}/{name}"},
            ).all()
    finally:
        engine.dispose()
    return [(kind, json.loads(data or "{}")) for kind, data in rows]


def assert_recovered(platform: Platform, owner: str, name: str, token: str, sha: str) -> None:
    """RUNNING on `sha` and answering; one container, for a while; exactly one build of the
    commit succeeded and none is left unfinished; no event written twice."""
    runtime = platform.wait_for_stage(owner, name, token, timeout=300)
    assert runtime["stage"] == "RUNNING", f"{runtime}\n{platform.log_tail()}"
    assert runtime["sha"] == sha
    answer = get_when_served(platform.app_url(owner, name))
    assert answer.status_code == 200, answer.text[:500]
    # A restarted controller that failed to adopt would start a second container soon
    # after it came back: watch the count for a while, not once.
    watched_until = time.monotonic() + 3
    while time.monotonic() < watched_until:
        running = containers(platform, owner, name)
        assert len(running) == 1, [(c.short_id, c.status, c.labels) for c in running]
        time.sleep(0.5)
    builds = [b for b in platform.builds(owner, name, token) if b["commit"] == sha]
    assert not [b for b in builds if b["status"] in UNFINISHED], builds
    assert [b["status"] for b in builds].count("succeeded") == 1, builds

    history = events(platform, owner, name)
    started = [data for kind, data in history if kind == "instance.started"]
    stopped = [data for kind, data in history if kind == "instance.stopped"]
    # Every container started is on record once, and all but the one running stopped.
    assert len(started) - len(stopped) == 1, json.dumps(history)
    ids = [data["instance"] for data in started]
    assert len(ids) == len(set(ids)), f"an instance.started written twice: {history}"
    for kind in ("build.queued", "build.started", "build.ended"):
        per_build = [data["build_id"] for k, data in history if k == kind]
        assert len(per_build) == len(set(per_build)), f"{kind} written twice: {history}"
    # And the succeeded build's story is on record: queued, started, ended.
    (done,) = [b for b in builds if b["status"] == "succeeded"]
    for kind in ("build.queued", "build.started", "build.ended"):
        assert [d for k, d in history if k == kind and d["build_id"] == done["id"]], history
    # Done: free its room. The session platform holds every module's Spaces, and the
    # last modules' Spaces must still fit in its memory (admission).
    gone = httpx.request(
        "DELETE",
        f"{platform.url}/api/repos/delete",
        json={"type": "space", "organization": owner, "name": name},
        headers={"authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert gone.status_code == 200, gone.text


def test_controller_and_api_killed_mid_build_and_mid_start(
    platform: Platform, workdir: Path, pushes: list[subprocess.Popen[bytes]]
) -> None:
    token = platform.token("crash-c")
    repo, sha = crash_space(workdir)
    start_push(pushes, platform, repo, "crash-c", "space", token)
    wait_for_log_line(platform, "crash-c", "space", BUILD_LINE)
    # Mid-build: the build runs in the worker, so neither matters to it; the push's hook,
    # which follows the build through the API, loses its stream.
    kill_roles(platform, "controller", "serve")
    wait_mid_start(platform, "crash-c", "space", token)
    # Mid-start: the container exists, not yet answering; the new controller must adopt
    # it (and record its start if the old one died before it could), never start another.
    kill_roles(platform, "controller", "serve")
    assert_recovered(platform, "crash-c", "space", token, sha)


def test_worker_killed_mid_build_then_rebuilt(
    platform: Platform, workdir: Path, pushes: list[subprocess.Popen[bytes]]
) -> None:
    token = platform.token("crash-w")
    repo, sha = crash_space(workdir)
    start_push(pushes, platform, repo, "crash-w", "space", token)
    wait_for_log_line(platform, "crash-w", "space", BUILD_LINE)
    kill_roles(platform, "worker")
    builds = wait_builds_settled(platform, "crash-w", "space", token)
    # Not lost: the build ended (failed, saying its worker stopped, or done over), and it
    # is the only build of its commit.
    assert len([b for b in builds if b["commit"] == sha]) == 1, builds
    if builds[0]["status"] != "succeeded":
        assert "worker" in (builds[0]["errorMessage"] or ""), builds[0]
        # The controller writes the stage just after the build's end (its own ring): wait
        # for it, then require exactly BUILD_ERROR.
        runtime = platform.wait_for_stage("crash-w", "space", token, timeout=60)
        assert runtime["stage"] == "BUILD_ERROR", runtime
        assert not containers(platform, "crash-w", "space")
        platform.cli("rebuild", "crash-w/space")
    assert_recovered(platform, "crash-w", "space", token, sha)


def test_up_killed_mid_build_and_mid_start_then_up_again(
    platform: Platform, workdir: Path, pushes: list[subprocess.Popen[bytes]]
) -> None:
    token = platform.token("crash-u")
    repo, sha = crash_space(workdir)
    try:
        start_push(pushes, platform, repo, "crash-u", "space", token)
        wait_for_log_line(platform, "crash-u", "space", BUILD_LINE)
        restart_up(platform)
        # The worker died with `up`: the new `up` ends its build before it says "up".
        builds = wait_builds_settled(platform, "crash-u", "space", token)
        assert len([b for b in builds if b["commit"] == sha]) == 1, builds
        if builds[0]["status"] != "succeeded":
            platform.cli("rebuild", "crash-u/space")
        wait_mid_start(platform, "crash-u", "space", token)
        restart_up(platform)
        assert_recovered(platform, "crash-u", "space", token, sha)
    finally:
        if not platform.processes:  # keep the shared platform up for the tests after this
            platform.start()
