"""Gradio Spaces shaped like real ones, pushed unchanged, run as they run on the Hub: one per
Gradio major (3, 4, 5, 6) and one per piece of the Hub's environment (preinstalled requests
and datasets, ffmpeg, gr.LoginButton, @spaces.GPU). Each is pushed with real git, reaches
RUNNING and answers through the gateway. Build behaviour does not depend on the database, so
this runs on one stack; each Space is deleted when the module is done."""

from __future__ import annotations

import json
from collections.abc import Iterator

import docker
import httpx
import pytest
from gradio_client import Client

from tests.platform import Platform, push, sample_checkout

pytestmark = pytest.mark.parametrize("platform", ["sqlite-embedded"], indirect=True)

OWNER = "compat"
SAMPLES = {
    "compat_gradio3": "gradio3",
    "compat_gradio4": "gradio4",
    "compat_gradio5": "gradio5",
    "compat_gradio6": "gradio6",
    "hub_preinstalled": "preinstalled",
    "ffmpeg_audio": "ffmpeg",
    "login_button": "login",
    "zero_gpu": "zero-gpu",
}


@pytest.fixture(scope="module")
def token(platform: Platform) -> str:
    return platform.token(OWNER)


@pytest.fixture(scope="module")
def spaces(
    platform: Platform, token: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, dict]]:
    """Every sample pushed and RUNNING: {space name: its newest build}."""
    workdir = tmp_path_factory.mktemp("compat")
    try:
        for sample, name in SAMPLES.items():
            result = push(sample_checkout(sample, workdir), platform.git_url(OWNER, name, token))
            assert "Build succeeded" in result.stderr, result.stderr[-4000:]
        builds = {}
        for name in SAMPLES.values():
            runtime = platform.wait_for_stage(OWNER, name, timeout=300)
            assert runtime["stage"] == "RUNNING", (name, runtime)
            builds[name] = platform.builds(OWNER, name)[0]
        yield builds
    finally:
        for name in SAMPLES.values():
            platform.delete_space(OWNER, name, token)


def _log(platform: Platform, spaces: dict[str, dict], name: str) -> str:
    return platform.build_log(OWNER, name, spaces[name]["id"])


def _client(platform: Platform, name: str) -> Client:
    return Client(platform.app_url(OWNER, name), verbose=False)


_VERSIONS = (
    "import importlib.metadata as m, json; "
    "print(json.dumps({d: m.version(d) for d in ('gradio', 'starlette', 'huggingface_hub', "
    "'requests', 'datasets', 'spaces', 'uvicorn')}))"
)


def _inside(spaces: dict[str, dict], name: str) -> tuple[dict, dict[str, str]]:
    """(gradio_env's plan, installed versions) read from the Space's image: a build whose
    layers came from the cache does not print the lines that made them."""
    client = docker.from_env()
    image = spaces[name]["image"]
    plan = client.containers.run(
        # print(), not cat: the file ends without a newline, and the Engine's log drops an
        # unterminated last line.
        image,
        ["python", "-c", "print(open('/opt/spaceport/gradio.json').read())"],
        remove=True,
        network_disabled=True,
    )
    versions = client.containers.run(
        image, ["python", "-c", _VERSIONS], remove=True, network_disabled=True
    )
    return json.loads(plan), json.loads(versions)


def _from_cache(log: str, step: str) -> bool:
    """Whether `step` of the build came from the Engine's cache (or the whole image did: the
    same content was built before, by an earlier run on this machine)."""
    if "already exists for this content: nothing to build" in log:
        return True
    lines = log.splitlines()
    index = next(i for i, line in enumerate(lines) if "Step " in line and step in line)
    return "Using cache" in " ".join(lines[index : index + 3])


def _major(version: str) -> int:
    return int(version.split(".")[0])


def test_gradio_3_renders_and_predicts_over_http(platform: Platform, spaces: dict) -> None:
    # gradio_client 2 no longer speaks Gradio 3's websocket queue: its REST route does.
    url = platform.app_url(OWNER, "gradio3")
    page = httpx.get(url, timeout=30)  # the first page render is what Starlette 1.0 broke
    assert page.status_code == 200 and "gradio" in page.text.lower()
    answer = httpx.post(f"{url}/run/predict", json={"data": ["World"]}, timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.json()["data"] == ["Hello, World!"]
    plan, versions = _inside(spaces, "gradio3")
    assert plan["uploaded"].startswith("2023-10-19") and plan["cutoff"].startswith("2023-10-20")
    assert plan["caps"] == ["starlette<1.0", "huggingface_hub<1.0"]
    assert versions["gradio"] == "3.50.2"
    assert _major(versions["starlette"]) == 0 and _major(versions["huggingface_hub"]) == 0


def test_gradio_4_keeps_its_version_over_a_requirements_line(
    platform: Platform, spaces: dict
) -> None:
    assert _client(platform, "gradio4").predict("1, 2, 3.5", api_name="/total") == "sum=6.5"
    plan, versions = _inside(spaces, "gradio4")
    assert versions["gradio"] == "4.44.1" and _major(versions["starlette"]) == 0
    log = _log(platform, spaces, "gradio4")
    if not _from_cache(log, "gradio_env.py requirements"):  # a cached step prints nothing
        assert "requirements.txt line 1 (gradio) is left out" in log


def test_gradio_5_and_6_answer_through_gradio_client(platform: Platform, spaces: dict) -> None:
    assert _client(platform, "gradio5").predict("hi", api_name="/chat") == "echo 0: hi"
    assert _client(platform, "gradio6").predict("ab", 3, api_name="/repeat") == "ab ab ab"
    plan, versions = _inside(spaces, "gradio6")
    assert plan["extras"] == ["oauth", "mcp"] and plan["caps"] == []
    assert versions["gradio"] == "6.31.0"
    for package in ("requests", "datasets", "huggingface_hub", "spaces", "uvicorn"):
        assert versions[package], package


def test_the_hubs_preinstalled_packages_and_ffmpeg_are_there(
    platform: Platform, spaces: dict
) -> None:
    described = _client(platform, "preinstalled").predict("a b c", api_name="/describe")
    assert described == "requests 2.x; 3 rows"
    converted = _client(platform, "ffmpeg").predict(0.5, api_name="/convert")
    assert converted == "flac: True, 4000 samples"


def test_login_button_and_spaces_gpu_run(platform: Platform, spaces: dict) -> None:
    page = httpx.get(platform.app_url(OWNER, "login"), timeout=30)
    assert page.status_code == 200
    assert _client(platform, "login").predict(api_name="/whoami") == "Not signed in"
    assert _client(platform, "zero-gpu").predict(3, api_name="/square") == "9"


def test_the_shared_layers_are_built_once(platform: Platform, spaces: dict) -> None:
    """Four Spaces on Gradio 6.31.0 and the default Python: the second and later ones take
    the Hub environment and the Gradio layer from the cache."""
    for name in ("ffmpeg", "login", "zero-gpu"):
        log = _log(platform, spaces, name)
        for step in ("apt-get", "python3 -m venv", "gradio_env.py install"):
            assert _from_cache(log, step), (name, step)
