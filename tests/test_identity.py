"""Identity, end to end on both stacks: every Space has its own host (names that fold to the
same string, long names, renames, user names that differ in case), and a new Space never
sees what a deleted one left behind (its run log)."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx

from tests.platform import Platform, git, push


def marker_checkout(workdir: Path, marker: str) -> Path:
    """A docker Space that prints `marker` and its SPACE_HOST at start and serves `marker`
    as its page: cheap to build (one layer on python:3.11-slim) and easy to tell apart."""
    repo = workdir / f"marker-{uuid.uuid4().hex[:8]}"
    repo.mkdir()
    (repo / "README.md").write_text("---\ntitle: Marker\nsdk: docker\napp_port: 7860\n---\n")
    (repo / "Dockerfile").write_text(
        "FROM python:3.11-slim\n"
        "WORKDIR /srv\n"
        "COPY index.html marker.txt ./\n"
        'CMD ["sh", "-c", "echo marker=$(cat marker.txt) host=$SPACE_HOST; '
        'exec python -u -m http.server 7860"]\n'
    )
    (repo / "index.html").write_text(f"<p>{marker}</p>\n")
    (repo / "marker.txt").write_text(marker + "\n")
    git(repo, "init", "-q", "--initial-branch=main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "marker")
    return repo


def deploy_marker(platform: Platform, owner: str, name: str, workdir: Path, marker: str) -> None:
    token = platform.token(owner)
    push(marker_checkout(workdir, marker), platform.git_url(owner, name, token))
    runtime = platform.wait_for_stage(owner, name, timeout=300)
    assert runtime["stage"] == "RUNNING", runtime


def info(platform: Platform, owner: str, name: str) -> dict:
    response = platform.api(f"/api/spaces/{owner}/{name}", platform.token(owner))
    response.raise_for_status()
    return response.json()


def run_log(platform: Platform, owner: str, name: str) -> str:
    response = httpx.get(
        f"{platform.url}/api/spaces/{owner}/{name}/logs/run",
        params={"follow": "false"},
        headers={"authorization": f"Bearer {platform.token(owner)}"},
        timeout=30,
    )
    response.raise_for_status()
    return response.text


def wait_for_log(platform: Platform, owner: str, name: str, text: str) -> str:
    deadline = time.monotonic() + 60
    log = ""
    while time.monotonic() < deadline:
        log = run_log(platform, owner, name)
        if text in log:
            return log
        time.sleep(0.5)
    raise AssertionError(f"{text!r} not in the run log of {owner}/{name}:\n{log[-2000:]}")


def test_names_that_fold_together_get_their_own_hosts(platform: Platform, workdir: Path) -> None:
    # alice/x-y first; then alice-x/y, which spelled the same host: on the old code the
    # impostor's row won, and space_info gave both Spaces one host.
    deploy_marker(platform, "alice", "x-y", workdir, "victim-page")
    deploy_marker(platform, "alice-x", "y", workdir, "impostor-page")
    victim, impostor = info(platform, "alice", "x-y"), info(platform, "alice-x", "y")
    assert victim["subdomain"] == "alice-x-y"
    assert impostor["host"] != victim["host"] and impostor["subdomain"] != "alice-x-y"
    assert victim["host"] == f"http://{victim['subdomain']}.localhost:{platform.port}"
    assert "victim-page" in httpx.get(victim["host"] + "/", timeout=30).text
    assert "impostor-page" in httpx.get(impostor["host"] + "/", timeout=30).text
    # The app is told its own host, the one it is really served at.
    log = wait_for_log(platform, "alice-x", "y", "marker=impostor-page")
    assert f"host={impostor['subdomain']}.localhost:{platform.port}" in log


def test_long_names_fit_one_dns_label(platform: Platform) -> None:
    owner, name = "o" + "w" * 47, "n" * 48  # 96 characters together
    token = platform.token(owner)
    created = httpx.post(
        f"{platform.url}/api/repos/create",
        headers={"authorization": f"Bearer {token}"},
        json={"type": "space", "name": name, "sdk": "docker"},
        timeout=30,
    )
    created.raise_for_status()
    assert len(created.json()["id"]) == 24  # the Hub-style id, not a row number
    label = info(platform, owner, name)["subdomain"]
    assert len(label) <= 63 and label.startswith("o" + "w" * 20)
    assert httpx.get(f"http://{label}.localhost:{platform.port}/", timeout=30).status_code == 503


def test_a_renamed_space_redirects_from_its_old_host(platform: Platform, workdir: Path) -> None:
    deploy_marker(platform, "alice", "before", workdir, "renamed-page")
    old_host = info(platform, "alice", "before")["host"]
    moved = httpx.post(
        f"{platform.url}/api/repos/move",
        headers={"authorization": f"Bearer {platform.token('alice')}"},
        json={"fromRepo": "alice/before", "toRepo": "alice/after", "type": "space"},
        timeout=30,
    )
    moved.raise_for_status()
    # Not RUNNING until the instance that knows its new host answers.
    assert platform.runtime("alice", "after")["stage"] in ("RUNNING_APP_STARTING", "APP_STARTING")
    new_host = info(platform, "alice", "after")["host"]
    assert new_host != old_host
    redirect = httpx.get(old_host + "/index.html?q=1&r=two", timeout=30)
    assert redirect.status_code == 308
    assert redirect.headers["location"] == new_host + "/index.html?q=1&r=two"
    assert platform.wait_for_stage("alice", "after")["stage"] == "RUNNING"
    # RUNNING means the new host answers now, with the app restarted under it.
    assert "renamed-page" in httpx.get(new_host + "/", timeout=30).text
    log = wait_for_log(platform, "alice", "after", "marker=renamed-page")
    assert f"host={new_host.removeprefix('http://')}" in log


def test_user_names_differing_only_in_case_are_refused(platform: Platform) -> None:
    platform.token("frank")
    result = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "token", "create", "Frank"],
        env=platform.env,
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0 and not result.stdout.strip()
    assert "'frank' exists" in result.stderr and "regardless of case" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_new_space_never_sees_a_deleted_ones_run_log(platform: Platform, workdir: Path) -> None:
    old_marker, new_marker = f"old-{uuid.uuid4().hex[:8]}", f"new-{uuid.uuid4().hex[:8]}"
    deploy_marker(platform, "gina", "reused", workdir, old_marker)
    wait_for_log(platform, "gina", "reused", old_marker)
    old_id = info(platform, "gina", "reused")["_id"]
    auth = {"authorization": f"Bearer {platform.token('gina')}"}
    httpx.request(
        "DELETE",
        f"{platform.url}/api/repos/delete",
        headers=auth,
        json={"type": "space", "name": "reused"},
        timeout=30,
    ).raise_for_status()
    # At once, while the deleted Space's container may still run: on the old code the new
    # Space took the same row number, and with it the old container's log.
    httpx.post(
        f"{platform.url}/api/repos/create",
        headers=auth,
        json={"type": "space", "name": "reused", "sdk": "docker"},
        timeout=30,
    ).raise_for_status()
    assert info(platform, "gina", "reused")["_id"] != old_id
    assert old_marker not in run_log(platform, "gina", "reused")
    deploy_marker(platform, "gina", "reused", workdir, new_marker)
    log = wait_for_log(platform, "gina", "reused", new_marker)
    assert old_marker not in log
