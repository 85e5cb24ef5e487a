"""The Hub API through the real huggingface_hub and gradio_client (run in a subprocess with
HF_ENDPOINT pointing at the test platform: both clients read it at import time)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.platform import REPO_ROOT, SAMPLES, Platform, commit_change, git, push, sample_checkout

# The database and broker are exercised on both stacks by the push, auth and run tests;
# the Hub API add nothing stack-specific, so they run once, keeping CI well under half an hour.
pytestmark = pytest.mark.parametrize("platform", ["sqlite-embedded"], indirect=True)


@pytest.fixture(scope="module")
def scenario(platform: Platform) -> dict[str, dict]:
    token = platform.token("carol")
    other = platform.token("dave")
    env = {
        **os.environ,
        "HF_ENDPOINT": platform.url,
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_OFFLINE": "0",
        "NO_PROXY": "localhost,127.0.0.1,.localhost",
    }
    env.pop("HF_TOKEN", None)
    # As a module from the repo root: run as a script, tests/platform.py would shadow the
    # standard library's platform module.
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.hub_client_scenario",
            "carol",
            token,
            other,
            str(SAMPLES / "hello"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=1500,
        cwd=REPO_ROOT,
    )
    steps = {}
    for line in result.stdout.splitlines():
        if line.startswith("{"):
            item = json.loads(line)
            steps[item.pop("step")] = item
    if result.returncode != 0:
        pytest.fail(
            f"scenario failed after {list(steps)}:\n{result.stderr[-4000:]}\n{platform.log_tail()}"
        )
    return steps


def test_whoami_and_create(scenario: dict, platform: Platform) -> None:
    assert scenario["whoami"]["name"] == "carol"
    create = scenario["create"]
    assert create["url"] == f"{platform.url}/spaces/carol/demo"
    assert create["again"] == create["url"]
    assert create["conflict"] == 409 and create["exists"] is True


def test_upload_folder_deploys_like_a_push(scenario: dict) -> None:
    step = scenario["upload_folder"]
    assert step["stage"] == "RUNNING" and step["answer"] == "Hello, World!"


def test_duplicate_answers_without_a_build(scenario: dict, platform: Platform) -> None:
    step = scenario["duplicate"]
    assert step["stage"] == "RUNNING" and step["answer"] == "Hello, World!"
    builds = platform.builds("carol", "demo-copy", platform.token("carol"))
    assert builds and all(b["reusedImage"] for b in builds if b["status"] == "succeeded")
    info = platform.api("/api/spaces/carol/demo-copy", platform.token("carol")).json()
    assert info["duplicatedFrom"] == "carol/demo"


def test_secret_and_variable_reach_the_app(scenario: dict) -> None:
    step = scenario["secret_and_variable"]
    assert step["variables"] == {"GREETING": "Howdy"}
    assert step["answer"] == "Howdy, World! (secret of 9 letters)"


def test_pause_and_restart(scenario: dict, platform: Platform) -> None:
    step = scenario["pause_restart"]
    assert step["paused"] == "PAUSED" and step["page_while_paused"] == 503
    assert step["restarted"] == "RUNNING" and step["answer"].startswith("Howdy")
    # The event log has them, by whom, under the name the Space had then (it was moved and
    # deleted since: the audit log keeps its history).
    admin = platform.token("hub-auditor", "--admin")
    page = platform.api("/api/events?kind=paused&kind=restarted&limit=500", admin).json()
    mine = [(e["kind"], e["actor"]) for e in page["events"] if e["space"] == "carol/demo"]
    assert ("paused", "carol") in mine and ("restarted", "carol") in mine
    assert platform.api("/api/events", platform.token("hub-nobody")).status_code == 403


def test_move(scenario: dict, platform: Platform) -> None:
    step = scenario["move"]
    # The old id still answers, with the moved Space (a 307 the client follows).
    assert step["old_exists"] is True and step["old_id_answers"] == "carol/demo-moved"
    assert step["new_stage"] == "RUNNING"
    assert step["stage_after_move"] in ("RUNNING_APP_STARTING", "APP_STARTING")
    assert step["new_host"] == platform.app_url("carol", "demo-moved")
    assert step["old_host_status"] == 308
    assert step["old_host_location"] == step["new_host"] + "/config?x=1"
    assert step["answer"].startswith("Howdy")


def test_other_peoples_spaces(scenario: dict) -> None:
    step = scenario["not_yours"]
    assert step["delete_status"] == 403
    assert step["private_hidden"] is True


def test_delete(scenario: dict) -> None:
    step = scenario["delete"]
    assert step["exists"] is False and step["missing"] == "RepositoryNotFoundError"


def test_cli_duplicate_copies_history_and_variables(platform: Platform, workdir: Path) -> None:
    token = platform.token("erin")
    repo = sample_checkout("static_site", workdir)
    commit_change(repo, "about.html", "<p>second commit</p>")
    push(repo, platform.git_url("erin", "site", token))
    assert platform.wait_for_stage("erin", "site")["stage"] == "RUNNING"
    auth = {"authorization": f"Bearer {token}"}
    httpx.post(
        f"{platform.url}/api/spaces/erin/site/variables",
        headers=auth,
        json={"key": "COLOR", "value": "teal"},
    ).raise_for_status()
    httpx.post(
        f"{platform.url}/api/spaces/erin/site/secrets",
        headers=auth,
        json={"key": "API_KEY", "value": "not-for-copies"},
    ).raise_for_status()

    url = platform.cli("duplicate", "erin/site", "erin/site-copy").strip()
    assert url == f"{platform.url}/spaces/erin/site-copy"
    assert platform.wait_for_stage("erin", "site-copy")["stage"] == "RUNNING"
    assert platform.builds("erin", "site-copy")[0]["reusedImage"] is True
    source_log = git(repo, "ls-remote", platform.git_url("erin", "site")).stdout
    copy_log = git(repo, "ls-remote", platform.git_url("erin", "site-copy")).stdout
    assert source_log.split()[0] == copy_log.split()[0]  # same history, same head
    variables = httpx.get(
        f"{platform.url}/api/spaces/erin/site-copy/variables", headers=auth
    ).json()
    assert variables["COLOR"]["value"] == "teal"
    secrets = httpx.get(f"{platform.url}/api/spaces/erin/site-copy/secrets", headers=auth)
    assert secrets.json() == {}  # secrets only when given
    info = platform.api("/api/spaces/erin/site-copy").json()
    assert info["duplicatedFrom"] == "erin/site"
    assert (
        "not-for-copies"
        not in httpx.get(f"{platform.url}/api/spaces/erin/site/secrets", headers=auth).text
    )  # values never returned


def test_a_private_space_is_duplicated_only_by_those_who_see_it(
    platform: Platform, workdir: Path
) -> None:
    owner = platform.token("frank")
    stranger = platform.token("grace")
    push(sample_checkout("static_site", workdir), platform.git_url("frank", "secret-site", owner))
    platform.wait_for_stage("frank", "secret-site")
    httpx.put(
        f"{platform.url}/api/spaces/frank/secret-site/settings",
        headers={"authorization": f"Bearer {owner}"},
        json={"visibility": "private"},
    ).raise_for_status()
    refused = httpx.post(
        f"{platform.url}/api/spaces/frank/secret-site/duplicate",
        headers={"authorization": f"Bearer {stranger}"},
        json={"repository": "grace/stolen"},
    )
    assert refused.status_code == 404
    assert refused.headers["x-error-code"] == "RepoNotFound"
    assert platform.api("/api/spaces/grace/stolen", stranger).status_code == 404
    allowed = httpx.post(
        f"{platform.url}/api/spaces/frank/secret-site/duplicate",
        headers={"authorization": f"Bearer {owner}"},
        json={"repository": "frank/secret-copy"},
    )
    assert allowed.status_code == 200, allowed.text
    info = platform.api("/api/spaces/frank/secret-copy", owner).json()
    assert info["private"] is True  # the source's visibility by default
