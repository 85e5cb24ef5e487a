"""`docker build` through the Engine API, streamed line by line, and stoppable.

The docker SDK's `build()` hides the HTTP response, so a build could only be stopped by
waiting for its next line. Here a watcher thread can shut the connection down at any moment
(a newer push, a timeout); the Engine cancels a build whose client has gone away.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import docker


class BuildFailed(Exception):
    pass


class BuildStopped(Exception):
    """The build was stopped from outside; `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class BuildRequest:
    context: bytes
    tag: str
    dockerfile: str
    build_args: dict[str, str]
    labels: dict[str, str]
    no_cache: bool = False
    limits: BuildLimits | None = None
    network: str | None = None  # `networkmode` of the RUN steps: the build network's name


@dataclass(frozen=True)
class BuildLimits:
    """Applied by the Engine to every RUN step's container."""

    memory_bytes: int
    cpus: float
    cgroup_parent: str | None = None  # holds the pids limit (builder/cgroup.py)

    def params(self) -> dict[str, object]:
        period = 100_000
        params: dict[str, object] = {
            "memory": self.memory_bytes,
            "memswap": self.memory_bytes,  # the same as memory: no swap on top
            "cpuperiod": period,
            "cpuquota": max(1000, int(self.cpus * period)),
        }
        if self.cgroup_parent:
            params["cgroupparent"] = self.cgroup_parent
        return params


def stream_build(
    api: docker.APIClient,
    request: BuildRequest,
    stop_reason: Callable[[], str | None],
    poll_seconds: float = 0.5,
) -> Iterator[str]:
    """Yield the build's output lines; raise BuildFailed or BuildStopped at the end."""
    params = {
        "t": request.tag,
        "dockerfile": request.dockerfile,
        "buildargs": json.dumps(request.build_args),
        "labels": json.dumps(request.labels),
        "nocache": request.no_cache,
        "rm": True,
        "forcerm": True,
        "q": False,
    }
    if request.limits is not None:
        params.update(request.limits.params())
    if request.network:
        params["networkmode"] = request.network
    try:
        response = _start_build(api, params, request.context)
    except docker.errors.APIError as exc:  # the Engine refused it outright (bad Dockerfile...)
        raise BuildFailed(str(exc.explanation or exc)) from exc
    raw = api._get_raw_response_socket(response)  # noqa: SLF001
    # Over the unix socket this is a SocketIO wrapper; shutdown needs the socket itself.
    sock: socket.socket = getattr(raw, "_sock", raw)

    stopped: list[str] = []
    done = threading.Event()

    def watch() -> None:
        while not done.wait(poll_seconds):
            reason = stop_reason()
            if reason:
                stopped.append(reason)
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                return

    watcher = threading.Thread(target=watch, name="build-watcher", daemon=True)
    watcher.start()
    error: str | None = None
    try:
        pending = ""
        for chunk in api._stream_helper(response, decode=True):  # noqa: SLF001
            if "stream" in chunk:
                pending += chunk["stream"]
                *lines, pending = pending.split("\n")
                yield from (line.rstrip("\r") for line in lines)
            elif "status" in chunk:
                status = chunk["status"]
                progress = chunk.get("progress")
                if progress is None:  # pull progress bars would flood the log
                    yield status
            elif "error" in chunk:
                error = chunk.get("errorDetail", {}).get("message") or chunk["error"]
        if pending:
            yield pending
    except Exception as exc:  # noqa: BLE001 - a stopped build ends in whatever the cut raises
        if not stopped:
            raise BuildFailed(f"lost the connection to the Docker Engine: {exc}") from exc
    finally:
        done.set()
        response.close()
    if stopped:
        raise BuildStopped(stopped[0])
    if error:
        raise BuildFailed(error.strip())


def _start_build(api: docker.APIClient, params: dict[str, object], context: bytes):  # type: ignore[no-untyped-def]
    response = api._post(  # noqa: SLF001 - see the module docstring
        api._url("/build"),  # noqa: SLF001
        data=context,
        params=params,
        headers={"Content-Type": "application/x-tar"},
        stream=True,
        timeout=None,
    )
    api._raise_for_status(response)  # noqa: SLF001
    return response
