"""docker Spaces build with BuildKit, end to end: sample_spaces/docker_buildkit (a heredoc,
`COPY a b .`, a `# syntax=` line and a build secret) pushed with real git reaches RUNNING and
answers through the gateway with the hash of the secret it was built with; the secret's value
is in no build-log line, no API response and no layer or history entry of the image. Without
the secret the same push fails, naming it. Build behaviour does not depend on the database, so
this runs on one stack; each Space is deleted when the module is done. (The build box of
BuildKit builds, network and limits, is tests/test_build_box.py: its docker-Space builds go
through BuildKit.)"""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import docker
import httpx
import pytest
from huggingface_hub import HfApi

from tests.platform import Platform, push, sample_checkout

pytestmark = pytest.mark.parametrize("platform", ["sqlite-embedded"], indirect=True)

OWNER = "kit"
SECRET = "bk-secret-7f3a9c21e4"  # long and unusual: any copy of it is found


@pytest.fixture(scope="module")
def spaces(platform: Platform, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """docker_buildkit pushed twice: `with-secret` (BUILD_TOKEN set first) and `no-secret`."""
    token = platform.token(OWNER)
    api = HfApi(endpoint=platform.url, token=token)
    workdir = tmp_path_factory.mktemp("buildkit")
    names = ("with-secret", "no-secret")
    try:
        for name in names:
            api.create_repo(f"{OWNER}/{name}", repo_type="space", space_sdk="docker")
        api.add_space_secret(f"{OWNER}/with-secret", "BUILD_TOKEN", SECRET)
        for name in names:
            push(sample_checkout("docker_buildkit", workdir), platform.git_url(OWNER, name, token))
        stages = {name: platform.wait_for_stage(OWNER, name, token, timeout=600) for name in names}
        yield {**stages, "token": token}
    finally:
        for name in names:
            platform.delete_space(OWNER, name, token)


def test_a_heredoc_and_secret_dockerfile_runs_with_its_secret(
    platform: Platform, spaces: dict
) -> None:
    runtime = spaces["with-secret"]
    assert runtime["stage"] == "RUNNING", (runtime, platform.log_tail())
    answer = httpx.get(platform.app_url(OWNER, "with-secret"), timeout=30).json()
    assert answer == {
        "data": {"sample": "docker_buildkit", "items": [1, 2, 3]},
        "heredoc": "written by a heredoc",
        "token_sha256": hashlib.sha256(SECRET.encode()).hexdigest(),
        "user": 1000,
    }


def test_the_build_log_says_buildkit_and_the_frontend_it_used(
    platform: Platform, spaces: dict
) -> None:
    token = spaces["token"]
    build = platform.builds(OWNER, "with-secret", token)[0]
    log = platform.build_log(OWNER, "with-secret", build["id"], token)
    assert "BuildKit v" in log
    assert "built-in Dockerfile frontend" in log  # the `# syntax=` line
    assert "RUN <<EOF" in log  # BuildKit's own step names


def test_the_secret_is_in_no_log_response_layer_or_history(
    platform: Platform, spaces: dict
) -> None:
    token = spaces["token"]
    builds = platform.builds(OWNER, "with-secret", token)
    responses = [
        platform.api(f"/api/spaces/{OWNER}/with-secret/builds", token).text,
        platform.api(f"/api/spaces/{OWNER}/with-secret/builds/{builds[0]['id']}", token).text,
        platform.api(f"/api/spaces/{OWNER}/with-secret/runtime", token).text,
        platform.api(f"/api/spaces/{OWNER}/with-secret", token).text,
        platform.api(f"/api/spaces/{OWNER}/with-secret/secrets", token).text,
        platform.api(f"/api/spaces/{OWNER}/with-secret/events", token).text,
    ]
    assert not [text for text in responses if SECRET in text]
    image = builds[0]["image"]
    history = docker.from_env().api.history(image)
    assert SECRET not in repr(history)
    saved = subprocess.run(["docker", "save", image], capture_output=True, check=True).stdout
    assert SECRET.encode() not in saved  # no layer, config or manifest holds it
    assert (platform.home / "logs").is_dir()
    for path in (platform.home / "logs").iterdir():
        assert SECRET not in path.read_text(errors="replace"), path.name


def test_a_missing_required_secret_fails_naming_it(platform: Platform, spaces: dict) -> None:
    runtime = spaces["no-secret"]
    assert runtime["stage"] == "BUILD_ERROR", runtime
    message = runtime.get("errorMessage") or ""
    assert "BUILD_TOKEN" in message and "required=true" in message, message
    assert "Dockerfile line" in message


def test_buildkit_state_survives_in_the_installations_volume(
    platform: Platform, spaces: dict
) -> None:
    client = docker.from_env()
    daemon = client.containers.get(f"{platform.instance}-buildkitd")
    assert daemon.status == "running"
    # On the build network only: the steps share its namespace.
    assert list(daemon.attrs["NetworkSettings"]["Networks"]) == ["spaceport-builds"]
    mounts = {m["Destination"]: m for m in daemon.attrs["Mounts"]}
    assert mounts["/var/lib/buildkit"]["Type"] == "volume"
    assert Path(mounts["/run/buildkit"]["Source"]).is_relative_to(platform.home)
