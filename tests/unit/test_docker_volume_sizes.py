"""Volume sizes on the Docker backend come from the Engine's disk usage count, which the
Engine runs one at a time: a second caller is refused with "a disk usage operation is
already running" (e.g. another installation's sweep, or `docker system df`). The backend
waits for the other count to end rather than leaving the sweep unmeasured."""

from __future__ import annotations

from typing import Any

import pytest
import requests
from docker.errors import APIError

from sandbox import docker_backend
from sandbox.docker_backend import DockerBackend

USAGE = {"Volumes": [{"Name": "spaceport-test-bucket-a", "UsageData": {"Size": 4096}}]}


class BusyEngineApi:
    """The low-level API calls `_volume_sizes` makes; the first `busy` counts are refused."""

    def __init__(self, busy: int, error: str = "a disk usage operation is already running"):
        self.busy, self.error, self.asked = busy, error, 0

    def _url(self, path: str) -> str:
        return f"http+docker://localhost/v1.41{path}"

    def _get(self, url: str, params: dict[str, str]) -> str:
        self.asked += 1
        if self.asked <= self.busy:
            response = requests.Response()
            response.status_code = 500
            raise APIError("500 Server Error", response, explanation=self.error)
        return url

    def _result(self, response: str, json: bool) -> dict[str, Any]:
        return USAGE


class Client:
    def __init__(self, api: BusyEngineApi) -> None:
        self.api = api


def backend_with(api: BusyEngineApi) -> DockerBackend:
    return DockerBackend("test", client=Client(api))  # type: ignore[arg-type]


def test_a_count_already_running_is_waited_for(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(docker_backend.time, "sleep", lambda seconds: None)
    api = BusyEngineApi(busy=3)
    assert backend_with(api)._volume_sizes() == {"spaceport-test-bucket-a": 4096}
    assert api.asked == 4


def test_other_errors_and_a_count_that_never_ends_leave_the_sizes_unknown(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(docker_backend.time, "sleep", lambda seconds: None)
    broken = BusyEngineApi(busy=1, error="no space left on device")
    assert backend_with(broken)._volume_sizes() == {}
    assert broken.asked == 1  # not retried: waiting would not help

    monkeypatch.setattr(docker_backend, "DISK_USAGE_PATIENCE_SECONDS", 0.0)
    never = BusyEngineApi(busy=10**6)
    assert backend_with(never)._volume_sizes() == {}
    assert "the next sweep tries again" in caplog.text
