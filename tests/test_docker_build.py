"""The build stream against a real Docker Engine: lines as they come, and a stop that
really stops the Engine's build (a newer push, a timeout)."""

from __future__ import annotations

import io
import tarfile
import time

import docker
import pytest

from builder.base_image import ensure_image
from builder.docker_build import BuildFailed, BuildRequest, BuildStopped, stream_build
from orchestrator.builds.runner import _stop_reason
from orchestrator.core.settings import Settings


def context(dockerfile: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        data = dockerfile.encode()
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture(scope="module")
def python_base(docker_engine: None, tmp_path_factory: pytest.TempPathFactory) -> str:
    """python:3.11-slim, pulled or built offline (on a fresh machine this takes a minute)."""
    settings = Settings(home=tmp_path_factory.mktemp("home"), image_prefix="spaceport-test")
    return ensure_image(docker.from_env(), "python:3.11-slim", lambda _line: None, settings)


def test_a_stopped_build_stops_in_the_engine(python_base: str) -> None:
    marker = f"sleeping-{time.time_ns()}"
    request = BuildRequest(
        context(f"FROM python:3.11-slim\nRUN echo {marker} && sleep 120\n"),
        tag=f"spaceport-test/stopped:{time.time_ns()}",
        dockerfile="Dockerfile",
        build_args={},
        labels={},
        no_cache=True,
    )
    client = docker.from_env()
    started = time.monotonic()
    lines: list[str] = []
    with pytest.raises(BuildStopped, match="took longer"):
        for line in stream_build(
            client.api,
            request,
            lambda: "the build took longer than 3 s" if time.monotonic() - started > 3 else None,
        ):
            lines.append(line)
    assert time.monotonic() - started < 30
    assert any(marker in line for line in lines)  # lines arrived while it ran
    time.sleep(2)
    still_running = [
        c
        for c in client.containers.list(ignore_removed=True)
        if marker in " ".join(c.attrs["Config"]["Cmd"] or [])
    ]
    assert still_running == []


def test_a_refused_dockerfile_is_a_build_failure(python_base: str) -> None:
    request = BuildRequest(
        context("FROM python:3.11-slim\nNOT_AN_INSTRUCTION x\n"),
        tag="spaceport-test/refused:1",
        dockerfile="Dockerfile",
        build_args={},
        labels={},
    )
    with pytest.raises(BuildFailed, match="(?i)unknown instruction"):
        list(stream_build(docker.from_env().api, request, lambda: None))


def test_timeout_is_reported_before_looking_at_the_database() -> None:
    # The deadline check needs no database: a wedged store can't keep a build alive.
    assert "took longer than" in (_stop_reason(build_id=-1, deadline=time.monotonic() - 1) or "")
