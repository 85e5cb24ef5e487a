"""Push to build, end to end: the real git client pushes sample Spaces to a real Spaceport,
which builds them with a real Docker Engine. Runs once per stack (see conftest.py)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import docker
import httpx
import pytest
import sqlalchemy

from tests.platform import Platform, commit_change, git, push, sample_checkout

GOOD_SAMPLES = ["hello", "streaming_chatbot", "image_filter", "docker_fastapi", "static_site"]


def space_name(sample: str) -> str:
    return sample.replace("_", "-")


def newest_build(platform: Platform, owner: str, name: str, token: str | None = None) -> dict:
    return platform.builds(owner, name, token)[0]


def assert_healthy(platform: Platform) -> None:
    assert httpx.get(f"{platform.url}/api/health", timeout=10).json() == {"status": "ok"}


@pytest.fixture(scope="module")
def alice(platform: Platform) -> str:
    return platform.token("alice")


def test_each_good_sample_gets_an_image(platform: Platform, alice: str, workdir: Path) -> None:
    client = docker.from_env()
    for sample in GOOD_SAMPLES:
        name = space_name(sample)
        result = push(sample_checkout(sample, workdir), platform.git_url("alice", name, alice))
        # The pusher sees the Space's URL and the build as remote: lines.
        assert f"remote: -----> Space alice/{name}: {platform.url}/spaces/alice/{name}" in (
            result.stderr
        )
        assert "remote: -----> Build succeeded" in result.stderr, result.stderr[-3000:]
        runtime = platform.wait_for_stage("alice", name)
        assert runtime["stage"] == "RUNNING", runtime
        build = newest_build(platform, "alice", name)
        assert build["status"] == "succeeded"
        assert build["commit"] == runtime["sha"]
        image = client.images.get(build["image"])
        port = "8080/tcp" if sample == "docker_fastapi" else "7860/tcp"
        assert port in image.attrs["Config"]["ExposedPorts"]
        if sample != "docker_fastapi":
            assert image.attrs["Config"]["User"] == "1000"
        info = platform.api(f"/api/spaces/alice/{name}").json()
        assert info["id"] == f"alice/{name}"
        assert info["sdk"] == (
            "docker"
            if sample == "docker_fastapi"
            else "static"
            if sample == "static_site"
            else "gradio"
        )
        assert info["cardData"]["sdk"] == info["sdk"]
    assert_healthy(platform)


@pytest.mark.parametrize(
    ("sample", "stage", "fragments"),
    [
        ("broken_readme", "CONFIG_ERROR", ["README.md line 4"]),
        ("missing_app_file", "NO_APP_FILE", ["app.py not found", "app_file"]),
        (
            "unresolvable_requirements",
            "BUILD_ERROR",
            ["this-package-does-not-exist-spaceport", "No matching distribution"],
        ),
    ],
)
def test_broken_samples_say_what_to_fix(
    platform: Platform, alice: str, workdir: Path, sample: str, stage: str, fragments: list[str]
) -> None:
    name = space_name(sample)
    result = push(sample_checkout(sample, workdir), platform.git_url("alice", name, alice))
    runtime = platform.wait_for_stage("alice", name)
    assert runtime["stage"] == stage, runtime
    for fragment in fragments:
        assert fragment in runtime["errorMessage"], runtime["errorMessage"]
        if stage != "BUILD_ERROR":
            assert fragment in result.stderr  # the pusher is told too
    assert_healthy(platform)


def test_a_crashing_app_still_builds(platform: Platform, alice: str, workdir: Path) -> None:
    # It only crashes when run: the build succeeds, the run fails (test_run_and_visit.py).
    push(sample_checkout("crash_at_start", workdir), platform.git_url("alice", "crash", alice))
    platform.wait_for_stage("alice", "crash")
    assert newest_build(platform, "alice", "crash")["status"] == "succeeded"


def steps_and_cache_hits(log: str) -> list[tuple[str, bool]]:
    """[(instruction, came from cache)] for each `Step i/n : INSTRUCTION` of a build log."""
    steps: list[tuple[str, bool]] = []
    for line in log.splitlines():
        line = line.strip()
        if match := re.match(r"Step \d+/\d+ : (.*)", line):
            steps.append((match.group(1), False))
        elif line == "---> Using cache" and steps:
            steps[-1] = (steps[-1][0], True)
    return steps


def test_code_only_push_rebuilds_only_the_last_layers(
    platform: Platform, alice: str, workdir: Path
) -> None:
    repo = sample_checkout("image_filter", workdir)
    url = platform.git_url("alice", "layers", alice)
    push(repo, url)
    assert platform.wait_for_stage("alice", "layers")["stage"] == "RUNNING"
    first = newest_build(platform, "alice", "layers")

    app = (repo / "app.py").read_text()
    # Unique per run: the same change pushed by an earlier run would reuse its image.
    commit_change(repo, "app.py", app + f"\n# a code-only change {time.time_ns()}\n")
    push(repo, url)
    assert platform.wait_for_stage("alice", "layers")["stage"] == "RUNNING"
    second = newest_build(platform, "alice", "layers")
    assert second["id"] != first["id"] and second["image"] != first["image"]

    steps = steps_and_cache_hits(platform.build_log("alice", "layers", second["id"]))
    copy_index = next(i for i, (step, _) in enumerate(steps) if step.startswith("COPY --chown"))
    assert all(cached for _, cached in steps[1:copy_index]), steps
    assert any("requirements.txt" in step for step, _ in steps[1:copy_index])
    assert not steps[copy_index][1], "the repo files' layer must be rebuilt"


def test_same_tree_in_another_space_builds_nothing(
    platform: Platform, alice: str, workdir: Path
) -> None:
    repo = sample_checkout("hello", workdir)
    push(repo, platform.git_url("alice", "original", alice))
    assert platform.wait_for_stage("alice", "original")["stage"] == "RUNNING"
    original = newest_build(platform, "alice", "original")

    bob = platform.token("bob")
    result = push(repo, platform.git_url("bob", "same-tree", bob))
    assert platform.wait_for_stage("bob", "same-tree")["stage"] == "RUNNING"
    copy = newest_build(platform, "bob", "same-tree")
    assert copy["reusedImage"] is True
    assert copy["image"] == original["image"]
    assert "Step 1/" not in platform.build_log("bob", "same-tree", copy["id"])
    assert "nothing to build" in result.stderr


SLOW_DOCKERFILE = """FROM python:3.11-slim
RUN echo "slow step starts" && sleep 300
CMD ["python3", "-m", "http.server", "7860"]
"""
FAST_DOCKERFILE = """FROM python:3.11-slim
RUN echo "fast step"
CMD ["python3", "-m", "http.server", "7860"]
"""
DOCKER_README = "---\ntitle: Slow\nsdk: docker\napp_port: 7860\n---\n"


def docker_space(workdir: Path, dockerfile: str) -> Path:
    repo = workdir / f"slow-{time.monotonic_ns()}"
    repo.mkdir()
    (repo / "README.md").write_text(DOCKER_README)
    # A fresh RUN line, or the layer cache of an earlier run would skip the slow step.
    (repo / "Dockerfile").write_text(
        dockerfile.replace("slow step starts", f"slow step starts {time.time_ns()}")
    )
    git(repo, "init", "-q", "--initial-branch=main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "slow build")
    return repo


def start_push(repo: Path, url: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["git", "push", "--force", url, "main"],
        cwd=repo,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={"GIT_TERMINAL_PROMPT": "0", "PATH": "/usr/bin:/bin", "HOME": str(repo)},
    )


def wait_for_log_line(platform: Platform, owner: str, name: str, text: str) -> dict:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        # The push runs in the background: until its first request the Space doesn't exist.
        response = platform.api(f"/api/spaces/{owner}/{name}/builds")
        builds = response.json() if response.status_code == 200 else []
        if builds and text in platform.build_log(owner, name, builds[0]["id"]):
            return builds[0]
        time.sleep(0.3)
    raise AssertionError(
        f"no {text!r} in {owner}/{name}'s build log:\n{platform.log_tail('worker')}"
    )


def test_push_during_a_running_build_cancels_it(
    platform: Platform, alice: str, workdir: Path
) -> None:
    repo = docker_space(workdir, SLOW_DOCKERFILE)
    slow_dockerfile = (repo / "Dockerfile").read_text()
    url = platform.git_url("alice", "superseded", alice)
    slow_push = start_push(repo, url)
    slow = wait_for_log_line(platform, "alice", "superseded", "slow step starts")
    assert slow["status"] == "running"

    started = time.monotonic()
    new_sha = commit_change(repo, "Dockerfile", FAST_DOCKERFILE, "fast build")
    push(repo, url)
    runtime = platform.wait_for_stage("alice", "superseded")
    assert time.monotonic() - started < 120, "the new build must not wait behind the old one"
    assert runtime["stage"] == "RUNNING" and runtime["sha"] == new_sha

    builds = {b["id"]: b for b in platform.builds("alice", "superseded")}
    assert builds[slow["id"]]["status"] == "cancelled"
    assert "superseded by commit" in builds[slow["id"]]["errorMessage"]
    assert max(builds.values(), key=lambda b: b["id"])["status"] == "succeeded"
    output, _ = slow_push.communicate(timeout=60)
    assert "superseded by a newer push" in output
    # The cancelled docker build left no step still sleeping (this run's RUN line carries a
    # unique marker, so other test runs on the Engine don't count): no Engine container (the
    # classic builder's steps) and no process anywhere on the host (BuildKit's steps run
    # under its daemon's runc, not as Engine containers).
    marker = slow_dockerfile.split("slow step starts ", 1)[1].split('"', 1)[0]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        leftovers = [
            c.name
            for c in docker.from_env().containers.list(ignore_removed=True)
            if marker in " ".join(c.attrs["Config"]["Cmd"] or [])
        ] + processes_with(marker)
        if not leftovers:
            break
        time.sleep(1)
    assert leftovers == []


def processes_with(text: str) -> list[str]:
    """Host processes whose command line holds `text`."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(f"pid {proc.name}: {cmdline[:120]}")
    return found


def test_build_goes_on_when_the_pusher_disconnects(
    platform: Platform, alice: str, workdir: Path
) -> None:
    repo = docker_space(workdir, SLOW_DOCKERFILE.replace("sleep 300", "sleep 8"))
    process = start_push(repo, platform.git_url("alice", "ctrl-c", alice))
    build = wait_for_log_line(platform, "alice", "ctrl-c", "slow step starts")
    process.send_signal(signal.SIGINT)  # what Ctrl-C does
    process.wait(timeout=30)
    runtime = platform.wait_for_stage("alice", "ctrl-c")
    assert runtime["stage"] == "RUNNING"
    assert newest_build(platform, "alice", "ctrl-c")["id"] == build["id"]
    assert newest_build(platform, "alice", "ctrl-c")["status"] == "succeeded"


def test_only_main_deploys(platform: Platform, alice: str, workdir: Path) -> None:
    repo = sample_checkout("static_site", workdir)
    url = platform.git_url("alice", "branches", alice)
    push(repo, url)
    platform.wait_for_stage("alice", "branches")
    builds_before = len(platform.builds("alice", "branches"))
    git(repo, "checkout", "-q", "-b", "dev")
    commit_change(repo, "index.html", "<h1>work in progress</h1>")
    result = push(repo, url, "dev")
    assert "only main is deployed" in result.stderr
    assert len(platform.builds("alice", "branches")) == builds_before
    refs = git(repo, "ls-remote", url).stdout
    assert "refs/heads/dev" in refs and "refs/heads/main" in refs


def test_build_log_can_be_followed_while_it_runs(
    platform: Platform, alice: str, workdir: Path
) -> None:
    repo = docker_space(workdir, SLOW_DOCKERFILE.replace("sleep 300", "sleep 6"))
    process = start_push(repo, platform.git_url("alice", "follow-me", alice))
    # Spaceport's own line, the same with BuildKit (docker Spaces) and the classic builder.
    wait_for_log_line(platform, "alice", "follow-me", "Building image")
    seen_running = False
    with httpx.stream(
        "GET", f"{platform.url}/api/spaces/alice/follow-me/logs/build", timeout=120
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = []
        for raw in response.iter_lines():
            if raw.startswith("data: {"):
                lines.append(json.loads(raw[6:])["data"])
                if "slow step starts" in lines[-1]:
                    seen_running = newest_build(platform, "alice", "follow-me")["status"] == (
                        "running"
                    )
    process.wait(timeout=120)
    assert seen_running, "the log line came only after the build"
    assert any("Build succeeded" in line for line in lines)  # followed to the end


def test_beat_reaps_a_build_whose_worker_died(
    platform: Platform, alice: str, workdir: Path
) -> None:
    # A build left `running` long past the timeout (its worker was killed) must not hold its
    # Space in BUILDING for ever: Celery beat's housekeeping task fails it.
    repo = sample_checkout("static_site", workdir)
    push(repo, platform.git_url("alice", "orphaned", alice))
    platform.wait_for_stage("alice", "orphaned")
    url = platform.env.get("SPACEPORT_DATABASE_URL") or f"sqlite:///{platform.home}/spaceport.db"
    engine = sqlalchemy.create_engine(url)
    with engine.begin() as connection:
        space_id = connection.execute(
            sqlalchemy.text("SELECT id FROM space WHERE name = 'orphaned'")
        ).scalar_one()
        sha = connection.execute(
            sqlalchemy.text("SELECT head_sha FROM space WHERE id = :id"), {"id": space_id}
        ).scalar_one()
        connection.execute(
            sqlalchemy.text(
                "INSERT INTO build (space_id, commit_sha, status, reused_image, no_cache, "
                "created_at, started_at) VALUES (:space, :sha, 'running', false, false, "
                ":long_ago, :long_ago)"
            ),
            {"space": space_id, "sha": sha, "long_ago": datetime(2020, 1, 1, tzinfo=UTC)},
        )
    engine.dispose()
    # Beat sends the task a minute after it starts; wait a little longer than that.
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline:
        build = newest_build(platform, "alice", "orphaned")
        if build["status"] != "running":
            break
        time.sleep(2)
    assert build["status"] == "failed", platform.log_tail()
    assert "worker running this build stopped" in build["errorMessage"]


def test_a_crashed_process_is_started_again(platform: Platform, alice: str, workdir: Path) -> None:
    """`spaceport up` supervises its processes: a worker killed outright comes back, and
    builds go on being served."""
    (up,) = platform.processes
    children = subprocess.run(
        ["ps", "--ppid", str(up.pid), "-o", "pid=,args="],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    (worker_pid,) = [int(line.split()[0]) for line in children.splitlines() if " worker" in line]
    os.kill(worker_pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while "starting it again" not in platform.log_tail() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert "the worker exited with code -9; starting it again" in platform.log_tail()
    push(sample_checkout("static_site", workdir), platform.git_url("alice", "after-crash", alice))
    assert platform.wait_for_stage("alice", "after-crash")["stage"] == "RUNNING"
