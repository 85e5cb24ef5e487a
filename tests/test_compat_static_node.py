"""Static and Node.js Spaces shaped like real ones, pushed unchanged with real git: a static
Space built by `app_build_command` (npm ci + npm run build, served from dist/ only), and a
docker Space `FROM node:20` (Spaceport's equivalent where no registry serves it). Each
reaches RUNNING and answers through the gateway; a failing build command fails the build
with its output; what was substituted shows in the runtime's buildNotes. Build behaviour
does not depend on the database, so this runs on one stack; each Space is deleted at the
end."""

from __future__ import annotations

from collections.abc import Iterator

import docker
import httpx
import pytest

from tests.platform import Platform, commit_change, push, sample_checkout

pytestmark = pytest.mark.parametrize("platform", ["sqlite-embedded"], indirect=True)

OWNER = "nodefolk"
SAMPLES = {"static_build": "site-build", "docker_node": "node-server"}
BROKEN = "site-broken"


def _is_stand_in(ref: str) -> bool:
    """Whether the Engine's `ref` is Spaceport's equivalent (no registry served it)."""
    labels = docker.from_env().images.get(ref).labels or {}
    return labels.get("org.spaceport.base") == "offline"


@pytest.fixture(scope="module")
def token(platform: Platform) -> str:
    return platform.token(OWNER)


@pytest.fixture(scope="module")
def spaces(
    platform: Platform, token: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, dict]]:
    """Every sample pushed and built: {space name: its runtime, and "pushed": what the
    pusher saw}. Each test checks its own Space, so one failing sample hides no other."""
    workdir = tmp_path_factory.mktemp("nodefolk")
    pushed: dict[str, str] = {}
    try:
        for sample, name in SAMPLES.items():
            result = push(sample_checkout(sample, workdir), platform.git_url(OWNER, name, token))
            pushed[name] = result.stderr
        broken = sample_checkout("static_build", workdir)
        readme = (broken / "README.md").read_text()
        commit_change(
            broken, "README.md", readme.replace("npm run build", "npm run bundle"), "no script"
        )
        push(broken, platform.git_url(OWNER, BROKEN, token))
        runtimes = {}
        for name in [*SAMPLES.values(), BROKEN]:
            runtime = platform.wait_for_stage(OWNER, name, timeout=300)
            runtimes[name] = {**runtime, "pushed": pushed.get(name, "")[-4000:]}
        yield runtimes
    finally:
        for name in [*SAMPLES.values(), BROKEN]:
            platform.delete_space(OWNER, name, token)


def test_app_build_command_builds_the_site_and_only_it_is_served(
    platform: Platform, spaces: dict[str, dict]
) -> None:
    assert spaces["site-build"]["stage"] == "RUNNING", spaces["site-build"]["pushed"]
    url = platform.app_url(OWNER, "site-build")
    page = httpx.get(url + "/", timeout=30)
    assert page.status_code == 200
    # Written by build.js with the locked dependency (escape-html) that npm ci installed.
    assert "Built by app_build_command &lt;npm run build&gt;" in page.text
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    script = httpx.get(url + "/assets/app.js", timeout=30)  # dist/ is the site root
    assert script.status_code == 200
    assert script.headers["content-type"] == "text/javascript; charset=utf-8"
    for path in (
        "/package.json",  # the sources stay in the build stage
        "/src/index.html",
        "/build.js",
        "/node_modules/escape-html/index.js",
        "/dist/index.html",
        "/README.md",
        "/.dockerignore",  # nothing of Spaceport's, no dotfiles
        "/.spaceport.Dockerfile",
        "/.gitignore",
        "/assets/",  # a folder without index.html: no listing
        "/missing.html",
    ):
        response = httpx.get(url + path, timeout=30)
        assert response.status_code == 404, path
        assert "we can't find the page" in response.text, path
    build = platform.builds(OWNER, "site-build")[0]
    if not build["reusedImage"]:  # a rerun on the same Engine reuses the image: no steps
        log = platform.build_log(OWNER, "site-build", build["id"])
        assert "npm ci" in log and "npm run build" in log, log[-4000:]
        # The command's own output shows when its step ran (not when the Engine's layer
        # cache had it from an earlier run of the same content).
        command_step = log[log.index("npm run build") :]
        ran = "built dist/ with Node.js v24." in command_step
        assert ran or "Using cache" in command_step.split("Step ", 2)[0], log[-4000:]


def test_a_failing_build_command_fails_the_build_with_its_output(spaces: dict) -> None:
    runtime = spaces[BROKEN]
    assert runtime["stage"] == "BUILD_ERROR", runtime
    assert 'Missing script: "bundle"' in runtime["errorMessage"], runtime["errorMessage"]
    assert "npm run bundle" in runtime["errorMessage"]


def test_a_node_20_docker_space_runs_and_says_what_its_node_is(
    platform: Platform, spaces: dict[str, dict]
) -> None:
    runtime = spaces["node-server"]
    assert runtime["stage"] == "RUNNING", runtime["pushed"]
    answer = httpx.get(platform.app_url(OWNER, "node-server") + "/", timeout=30).json()
    assert answer["message"] == "Hello from Node.js"
    assert answer["node"].startswith("v20.")
    notes = runtime["buildNotes"]
    if _is_stand_in("node:20"):
        version = answer["node"].removeprefix("v")
        assert notes == [
            f"node:20 is Spaceport's equivalent: Node.js {version} with npm "
            f"{docker.from_env().images.get('node:20').labels['org.spaceport.npm']} on Debian "
            "bookworm"
        ], notes
        build = platform.builds(OWNER, "node-server")[0]
        assert build["notes"] == notes
        log = platform.build_log(OWNER, "node-server", build["id"])
        assert notes[0] in log
    else:
        assert notes == []
    # The static Space's build stage is a node:24 and its server a python:3.10 base: noted
    # when they are stand-ins (3.10 is Python 3.11 offline).
    site_notes = spaces["site-build"]["buildNotes"]
    assert any(n.startswith("node:24 is Spaceport's equivalent") for n in site_notes) == (
        _is_stand_in("node:24")
    )
    assert spaces["site-build"]["errorMessage"] is None
