"""Base image resolution, including the offline (debootstrap) fallback.

The unit tests need nothing. The integration test needs a Docker Engine and, unless
python:3.11-slim is already in the local image store, debootstrap and root. It leaves
python:3.11-slim and spaceport-test/base:* in place on purpose: they are the cache that later
runs and other tests reuse (the first build takes one to two minutes).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest

from builder import base_image
from builder.base_image import (
    OFFLINE_SUITES,
    BaseImageUnavailable,
    ensure_image,
    ensure_python_base,
    offline_suite_for,
    parse_official_python_ref,
)
from builder.logstyle import DETAIL, STEP
from orchestrator.core.settings import Settings

DNS_FAILURE = (
    'Get "https://registry-1.docker.io/v2/": dial tcp: lookup registry-1.docker.io on '
    "10.255.255.53:53: no such host"
)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", image_prefix="spaceport-test")


# --------------------------------------------------------------------------------------------
# offline_suite_for


@pytest.mark.parametrize(
    ("wanted", "expected"),
    [
        ("3.9", ("bullseye", "3.9")),
        ("3.11", ("bookworm", "3.11")),
        ("3.13", ("trixie", "3.13")),
        # No exact match: the next newer minor wins over the older one.
        ("3.10", ("bookworm", "3.11")),
        ("3.12", ("trixie", "3.13")),
        ("3.8", ("bullseye", "3.9")),
        ("3.7", ("bullseye", "3.9")),
        # Nothing newer: the nearest older.
        ("3.14", ("trixie", "3.13")),
        # Patch versions (README python_version may carry one) count by their minor.
        ("3.11.4", ("bookworm", "3.11")),
        (" 3.10 ", ("bookworm", "3.11")),
    ],
)
def test_offline_suite_for(wanted: str, expected: tuple[str, str]) -> None:
    assert offline_suite_for(wanted) == expected


@pytest.mark.parametrize("bad", ["", "3", "three.eleven", "3.x", "2.7", "4.0"])
def test_offline_suite_for_rejects_what_it_cannot_map(bad: str) -> None:
    with pytest.raises(ValueError):
        offline_suite_for(bad)


def test_every_offline_suite_maps_to_itself() -> None:
    for minor, suite in OFFLINE_SUITES.items():
        assert offline_suite_for(minor) == (suite, minor)


# --------------------------------------------------------------------------------------------
# The official python ref regex


@pytest.mark.parametrize(
    ("ref", "minor"),
    [
        ("python:3.11-slim", "3.11"),
        ("python:3.11", "3.11"),
        ("python:3.11.9", "3.11"),
        ("python:3.11.9-slim", "3.11"),
        ("python:3.10-slim-bookworm", "3.10"),
        ("python:3.12-slim-bullseye", "3.12"),
        ("python:3.9-bullseye", "3.9"),
        ("python:3.13-trixie", "3.13"),
        ("python:3.14.0rc1-slim", "3.14"),
        ("library/python:3.11-slim", "3.11"),
        ("docker.io/library/python:3.11-slim", "3.11"),
        ("docker.io/python:3.11", "3.11"),
        ("index.docker.io/library/python:3.9-slim-buster", "3.9"),
    ],
)
def test_official_python_refs_are_recognised(ref: str, minor: str) -> None:
    assert parse_official_python_ref(ref) == minor


@pytest.mark.parametrize(
    "ref",
    [
        "python",  # no version: "latest" moves
        "python:latest",
        "python:3",
        "python:3-slim",
        "python:3.11-alpine",  # apk, not apt: a Debian stand-in would break its Dockerfile
        "python:3.11-alpine3.20",
        "python:3.11-windowsservercore",
        "python:3.11-slim-jessie-extra",
        "python:2.7-slim",
        "pythonx:3.11-slim",
        "myorg/python:3.11-slim",
        "ghcr.io/library/python:3.11-slim",
        "python@sha256:" + "0" * 64,
        "spaceport/base:python3.11-bookworm",
        "ubuntu:22.04",
    ],
)
def test_other_refs_are_not_official_python(ref: str) -> None:
    assert parse_official_python_ref(ref) is None


# --------------------------------------------------------------------------------------------
# ensure_image against a fake Docker client: the decisions, without a daemon


class FakeImage:
    def __init__(self, store: FakeImages, ref: str, labels: dict[str, str] | None = None):
        self.store = store
        self.ref = ref
        self.labels = labels or {}

    def tag(self, repository: str, tag: str) -> bool:
        self.store.local[f"{repository}:{tag}"] = self
        return True


class FakeImages:
    def __init__(self) -> None:
        self.local: dict[str, FakeImage] = {}
        self.pulls: list[tuple[str, str | None]] = []
        self.pull_error: Exception | None = docker.errors.APIError(
            "500 Server Error", explanation=DNS_FAILURE
        )

    def get(self, ref: str) -> FakeImage:
        if ref not in self.local:
            raise docker.errors.ImageNotFound(f"No such image: {ref}")
        return self.local[ref]

    def pull(self, repository: str, tag: str | None = None, **_: Any) -> FakeImage:
        self.pulls.append((repository, tag))
        if self.pull_error is not None:
            raise self.pull_error
        image = FakeImage(self, f"{repository}:{tag}")
        self.local[image.ref] = image
        return image


class FakeClient:
    def __init__(self) -> None:
        self.images = FakeImages()


def test_local_image_is_used_without_pulling(settings: Settings) -> None:
    client = FakeClient()
    client.images.local["python:3.11-slim"] = FakeImage(client.images, "python:3.11-slim")
    lines: list[str] = []
    assert ensure_image(client, "python:3.11-slim", lines.append, settings) == "python:3.11-slim"  # type: ignore[arg-type]
    assert client.images.pulls == []
    assert lines == []


def test_pull_is_tried_with_an_explicit_tag(settings: Settings) -> None:
    client = FakeClient()
    client.images.pull_error = None
    lines: list[str] = []
    assert ensure_image(client, "ubuntu", lines.append, settings) == "ubuntu"  # type: ignore[arg-type]
    # Without a tag the SDK would pull every tag of the repository.
    assert client.images.pulls == [("ubuntu", "latest")]


def test_unpullable_non_python_image_says_what_to_do(settings: Settings) -> None:
    client = FakeClient()
    lines: list[str] = []
    with pytest.raises(BaseImageUnavailable) as raised:
        ensure_image(client, "ubuntu:22.04", lines.append, settings)  # type: ignore[arg-type]
    message = str(raised.value)
    assert "ubuntu:22.04 could not be pulled (no registry reachable)" in message
    assert "docker load" in message and "python:3.11-slim" in message
    pull_failed = [line for line in lines if "pull of ubuntu:22.04 failed" in line]
    assert len(pull_failed) == 1
    assert pull_failed[0].startswith(DETAIL)
    # The reason is kept short: what went wrong, not the request that was made.
    assert pull_failed[0].endswith("no such host")
    assert "https://" not in pull_failed[0]


def test_unpullable_python_image_gets_the_offline_equivalent(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = FakeClient()
    built: list[str] = []

    def fake_build(client_: FakeClient, minor: str, log: Any, settings_: Settings) -> str:
        built.append(minor)
        tag = "spaceport-test/base:python3.11-bookworm"
        client_.images.local[tag] = FakeImage(
            client_.images,
            tag,
            {
                "org.spaceport.base": "offline",
                "org.spaceport.suite": "bookworm",
                "org.spaceport.python": "3.11",
            },
        )
        return tag

    monkeypatch.setattr(base_image, "build_offline_python_base", fake_build)
    lines: list[str] = []
    ref = ensure_python_base(client, "3.10", lines.append, settings)  # type: ignore[arg-type]

    # settings.base_image is python:{python_version}-slim; 3.10 is in no suite -> 3.11.
    assert ref == "python:3.10-slim"
    assert built == ["3.10"]
    assert client.images.local[ref].ref == "spaceport-test/base:python3.11-bookworm"
    assert any(line.startswith(DETAIL + "WARNING:") and "Python 3.11" in line for line in lines)
    assert lines[-1].startswith(STEP)
    assert "Debian-built equivalent of python:3.10-slim" in lines[-1]

    # Later builds find the tag locally and still say what it really is.
    again: list[str] = []
    assert ensure_python_base(client, "3.10", again.append, settings) == ref  # type: ignore[arg-type]
    assert built == ["3.10"]
    assert any("Debian-built equivalent" in line for line in again)
    assert any("WARNING:" in line for line in again)


def test_debootstrap_output_is_summarised() -> None:
    output = [
        "I: Retrieving InRelease \n",
        "I: Checking Release signature\n",
        *[f"I: Retrieving pkg{i} 1.0\n" for i in range(50)],
        *[f"I: Validating pkg{i} 1.0\n" for i in range(50)],
        "I: Extracting adduser...\n",
        "I: Extracting base-files...\n",
        "I: Unpacking required packages...\n",
        "I: Unpacking hostname...\n",
        "I: Unpacking the base system...\n",
        "W: something to look at\n",
        "I: Base system installed successfully.\n",
        "I: Configuring a...\n",
        "I: Configuring b...\n",
        "I: Configuring c...\n",
    ]
    lines: list[str] = []
    hidden: base_image.deque[str] = base_image.deque(maxlen=10)
    base_image._stream_debootstrap_output(output, lines.append, hidden)
    shown = [line.removeprefix(DETAIL) for line in lines]
    assert all(line.startswith(DETAIL) for line in lines)
    # Step headers and warnings always pass; per-package lines only the first of each step.
    assert shown == [
        "I: Retrieving InRelease",
        "I: Checking Release signature",
        "I: Retrieving pkg0 1.0 [1]",
        "I: Extracting adduser... [1]",
        "I: Unpacking required packages...",
        "I: Unpacking hostname... [1]",
        "I: Unpacking the base system...",
        "W: something to look at",
        "I: Base system installed successfully.",
        "I: Configuring a... [1]",
    ]
    # What was left out since the last shown line is kept for the error report.
    assert list(hidden) == ["I: Configuring b...", "I: Configuring c..."]


# --------------------------------------------------------------------------------------------
# Integration: a real offline build (or the cached one) and containers run from it


def _unavailable(what: str) -> None:
    message = f"needs {what}"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def _docker_client() -> docker.DockerClient:
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as exc:
        _unavailable(f"a running Docker Engine (apt-get install docker.io; start dockerd): {exc}")
        raise  # unreachable: _unavailable always raises
    return client


def _run(client: docker.DockerClient, image: str, command: list[str], user: str = "") -> str:
    output = client.containers.run(image, command, remove=True, user=user, network_disabled=True)
    assert isinstance(output, bytes)
    return output.decode().strip()


@pytest.mark.docker
@pytest.mark.timeout(600)
def test_offline_python_base_builds_and_is_cached(settings: Settings) -> None:
    client = _docker_client()
    ref = "python:3.11-slim"
    if base_image._get_image(client, ref) is None and (
        shutil.which("debootstrap", path="/usr/sbin:/usr/bin:/sbin:/bin") is None
        or os.geteuid() != 0
    ):
        _unavailable(
            "debootstrap (apt-get install debootstrap) and root, to build python:3.11-slim "
            "offline (or load python:3.11-slim with docker load)"
        )

    first: list[str] = []
    assert ensure_image(client, ref, first.append, settings) == ref

    # Spaces run as uid 1000, so check as that user: "/" and the interpreter must be usable.
    assert (
        _run(
            client,
            ref,
            ["python", "-c", "import sys, venv, ssl; print(sys.version_info[:2])"],
            user="1000",
        )
        == "(3, 11)"
    )
    assert _run(client, ref, ["pip", "--version"]).startswith("pip ")
    venv_pip = _run(
        client,
        ref,
        ["sh", "-c", "python -m venv /tmp/v && /tmp/v/bin/pip --version"],
        user="1000",
    )
    assert venv_pip.startswith("pip ") and "/tmp/v/" in venv_pip

    image = client.images.get(ref)
    if image.labels.get("org.spaceport.base") == "offline":
        env = image.attrs["Config"]["Env"]
        assert "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" in env
        assert "PIP_BREAK_SYSTEM_PACKAGES=1" in env
        assert image.labels["org.spaceport.python"] == "3.11"

    # Second call: from the image store, no debootstrap, fast.
    second: list[str] = []
    started = time.monotonic()
    assert ensure_image(client, ref, second.append, settings) == ref
    assert time.monotonic() - started < 10
    assert not any("debootstrap" in line or "I: " in line for line in second), second
    assert not any(line.startswith(STEP) for line in second), second

    # Nothing is left in the temp dir (the rootfs is ~300 MB).
    tmp_dir = settings.home / "tmp"
    assert not tmp_dir.exists() or list(tmp_dir.iterdir()) == []
