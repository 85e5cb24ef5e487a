"""The Docker Engine itself: whether one answers, and getting one running for `spaceport up`.

The one place outside the backend (sandbox/docker_backend.py) that talks to Docker, so the
orchestrator never imports the docker SDK: `spaceport up` asks `ensure_engine()` and says
what it reports.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable

import docker

DOCKERD_LOG = "/var/log/spaceport-dockerd.log"
START_TIMEOUT_SECONDS = 60


class EngineUnavailable(RuntimeError):
    """No Docker Engine answers and none could be started; the message says what to do."""


def engine_client(timeout: float = 60) -> docker.DockerClient:
    """A client of the configured engine (DOCKER_HOST, or the default socket)."""
    return docker.from_env(timeout=timeout)


def engine_answers(timeout: float = 5) -> bool:
    try:
        client = engine_client(timeout)
    except Exception:  # noqa: BLE001 - any failure means "not usable"
        return False
    try:
        return bool(client.ping())
    except Exception:  # noqa: BLE001
        return False
    finally:
        client.close()


def ensure_engine(progress: Callable[[str], None]) -> None:
    """Start (and on Debian as root, install) a Docker Engine; ``progress`` hears each step.
    Raises EngineUnavailable with what the operator should do where that is not possible."""
    if engine_answers():
        return
    is_root = os.geteuid() == 0
    if shutil.which("dockerd") is None:
        if not (is_root and shutil.which("apt-get")):
            raise EngineUnavailable(
                "No Docker Engine found. Install one "
                "(Debian: `sudo apt-get install docker.io`), "
                "start it (`sudo dockerd &` or `sudo systemctl start docker`), then run "
                "`spaceport up` again."
            )
        progress("Installing Docker Engine (Debian package docker.io)")
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "docker.io"],
            check=True,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
    if not is_root:
        raise EngineUnavailable(
            "The Docker Engine is installed but not answering. Start it as root "
            "(`sudo systemctl start docker` or `sudo dockerd &`) or add yourself to the "
            "docker group, then run `spaceport up` again."
        )
    progress("Starting the Docker Engine")
    log = open(DOCKERD_LOG, "ab")  # noqa: SIM115 - handed to dockerd
    subprocess.Popen(["dockerd"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if engine_answers():
            return
        time.sleep(1)
    raise EngineUnavailable(
        f"dockerd did not answer within {START_TIMEOUT_SECONDS} s: see {DOCKERD_LOG}"
    )
