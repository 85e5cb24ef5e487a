"""`spaceport up`: the whole platform on one machine.

API, git hosting and gateway (one uvicorn process), the Celery build worker with the
embedded broker, Celery beat (housekeeping), and the controller (reconciler), all on
SQLite under $SPACEPORT_HOME unless the settings say otherwise. It makes sure a Docker
Engine answers first, and on the first start prints an admin token.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from builder import logstyle
from orchestrator.builds import runner as builds
from orchestrator.core import auth, db, home, installation
from orchestrator.core.models import ApiToken, TokenRole
from orchestrator.core.settings import Settings, get_settings
from orchestrator.oauth import spaces_door
from orchestrator.processes import lifeline
from sandbox import docker_engine
from sandbox.hardware import SMALL_HOST_CPU_ALLOCATION_RATIO, SMALL_HOST_OVERRIDES

SAMPLES = Path(__file__).resolve().parent.parent / "sample_spaces"
# `up` refused to start: the home or the port is taken (sysexits' EX_TEMPFAIL).
EXIT_BUSY = 75
GOOD_SAMPLES = ("hello", "streaming_chatbot", "image_filter", "docker_fastapi", "static_site")


def say(line: str) -> None:
    print(line, flush=True)


def ensure_docker() -> None:
    """A Docker Engine that answers (sandbox/docker_engine.py starts or installs one where
    it can), or exit saying exactly what to do."""
    try:
        docker_engine.ensure_engine(lambda line: say(logstyle.step(line)))
    except docker_engine.EngineUnavailable as exc:
        raise SystemExit(logstyle.error(str(exc))) from None


def first_start_token() -> str | None:
    """An admin token on the first start (no token exists yet), else None."""
    with db.session_scope() as session:
        if session.exec(auth.select(ApiToken)).first() is not None:
            return None
        admin = auth.get_or_create_user(session, "admin")
        return auth.create_token(session, admin, TokenRole.ADMIN, display_name="first-start")


def deploy_samples(token: str) -> None:
    """Push the good sample Spaces as the admin, through the same git path as anyone."""
    settings = get_settings()
    base = settings.public_url.split("://", 1)
    for sample in GOOD_SAMPLES:
        name = sample.replace("_", "-")
        with tempfile.TemporaryDirectory() as tmp:
            repo = Path(tmp) / sample
            shutil.copytree(SAMPLES / sample, repo)
            env = {
                **os.environ,
                "GIT_AUTHOR_NAME": "Spaceport",
                "GIT_COMMITTER_NAME": "Spaceport",
                "GIT_AUTHOR_EMAIL": "spaceport@localhost",
                "GIT_COMMITTER_EMAIL": "spaceport@localhost",
                "GIT_TERMINAL_PROMPT": "0",
            }
            for command in (
                ["init", "-q", "--initial-branch=main"],
                ["add", "-A"],
                ["commit", "-q", "-m", f"{sample} sample"],
            ):
                subprocess.run(["git", *command], cwd=repo, env=env, check=True)
            url = f"{base[0]}://{base[1]}/spaces/admin/{name}"
            # The token travels in git's environment, never in its command line (`ps`).
            basic = base64.b64encode(f"admin:{token}".encode()).decode()
            push_env = {
                **env,
                "GIT_CONFIG_COUNT": "1",
                "GIT_CONFIG_KEY_0": "http.extraHeader",
                "GIT_CONFIG_VALUE_0": f"Authorization: Basic {basic}",
            }
            say(logstyle.step(f"Deploying sample Space admin/{name}"))
            # The hook follows the build; its output is the deploy log.
            subprocess.run(["git", "push", "-q", "--force", url, "main"], cwd=repo, env=push_env)


def wait_for_api(url: str, server: subprocess.Popen[bytes], timeout: float = 60) -> bool:
    """True once our own server answers: a server that exits (a port taken meanwhile, say)
    is a failure at once, never mistaken for whatever else answers on the port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and server.poll() is None:
        try:
            if httpx.get(f"{url}/api/health", timeout=2).status_code == 200:
                return server.poll() is None
        except httpx.HTTPError:
            time.sleep(0.3)
    return False


def port_is_free(host: str, port: int) -> bool:
    """Whether the server could listen on host:port (bound the way uvicorn binds)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def start_child(command: list[str]) -> subprocess.Popen[bytes]:
    """A child that dies with `up`, even on kill -9 of `up` (orchestrator/processes/lifeline.py)."""
    return subprocess.Popen(
        command,
        env={**os.environ, lifeline.PARENT_ENV: str(os.getpid())},
        preexec_fn=lifeline.die_with_parent(os.getpid()),  # `up` starts no threads
    )


def refuse_if_busy(settings: Settings, host: str, port: int) -> home.UpLock | None:
    """Take the home's lock, or say why `up` can't start: one `up` per home, and none on a
    port that is taken, refused at once instead of a server that crash-loops behind an
    "up" message."""
    home.make_private(settings.home)
    lock = home.UpLock(settings.home)
    try:
        lock.acquire()
    except home.HomeBusy as exc:
        say(logstyle.error(str(exc)))
        return None
    if not port_is_free(host, port):
        lock.release()
        say(
            logstyle.error(
                f"port {port} on {host} is already in use (another Spaceport or another "
                "program): stop that, or start this one with --port N"
            )
        )
        return None
    return lock


def run(host: str, port: int, with_samples: bool) -> int:
    os.environ.setdefault("SPACEPORT_PUBLIC_URL", f"http://{host}:{port}")
    os.environ.setdefault("SPACEPORT_SPACES_DOMAIN", f"localhost:{port}")
    if with_samples:  # a demo: size the tiers so the samples fit side by side on a small host
        os.environ.setdefault("SPACEPORT_HARDWARE_OVERRIDES", json.dumps(SMALL_HOST_OVERRIDES))
        os.environ.setdefault(
            "SPACEPORT_CPU_ALLOCATION_RATIO", str(SMALL_HOST_CPU_ALLOCATION_RATIO)
        )
    get_settings.cache_clear()
    settings = get_settings()
    lock = refuse_if_busy(settings, host, port)
    if lock is None:
        return EXIT_BUSY
    ensure_docker()
    db.migrate()
    # Spaces' way to the sign-in provider when the public URL is loopback (oauth/spaces_door).
    door = spaces_door.open_for_up(settings, port)
    if door:
        os.environ["SPACEPORT_SPACES_PROVIDER_URL"] = door
    # Builds left `running` by a worker that died with an earlier `up` fail now, so their
    # Spaces leave BUILDING before anyone asks.
    builds.reap_stale_builds()
    # Made now, on the first start, before any process labels a container with it.
    instance = installation.instance_name()
    token = first_start_token()
    exe = [sys.executable, "-m", "orchestrator.cli"]
    commands = {
        "server": [*exe, "serve", "--host", host, "--port", str(port)],
        "worker": [*exe, "worker"],
        "controller": [*exe, "controller"],
        "beat": [*exe, "beat"],
    }
    children = {name: start_child(command) for name, command in commands.items()}
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True
        for child in children.values():
            if child.poll() is None:
                child.terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if not wait_for_api(settings.public_url, children["server"]):
        stop()
        raise SystemExit(logstyle.error("the API server did not start; see the lines above"))
    say(logstyle.step(f"Spaceport is up at {settings.public_url} (state in {settings.home})"))
    say(logstyle.detail(f"Installation {instance}: the label on each of its containers"))
    say(logstyle.detail(f"Spaces are served at http://{{owner}}-{{name}}.{settings.spaces_domain}"))
    if door:
        say(logstyle.detail(f"Spaces' servers reach its sign-in provider at {door}"))
    if token:
        say(logstyle.step(f"Admin token (shown once, keep it): {token}"))
        if with_samples:
            deploy_samples(token)
            say(
                logstyle.step(
                    f"Sample Spaces deployed: open http://admin-hello.{settings.spaces_domain}"
                )
            )
    supervise(commands, children, lambda: stopping)
    for child in children.values():
        try:
            child.wait(timeout=20)
        except subprocess.TimeoutExpired:
            child.kill()
    if door:
        spaces_door.close_for_up(settings, port)
    lock.release()
    return 0


def supervise(
    commands: dict[str, list[str]],
    children: dict[str, subprocess.Popen[bytes]],
    stopping: Callable[[], bool],
) -> None:
    """Keep every process running until `up` is told to stop: one that dies is started
    again (with a pause if it keeps dying), so one crash never takes the platform down."""
    restarts: dict[str, list[float]] = {name: [] for name in commands}
    while not stopping():
        for name, child in list(children.items()):
            code = child.poll()
            if code is None or stopping():
                continue
            recent = [t for t in restarts[name] if time.monotonic() - t < 60] + [time.monotonic()]
            restarts[name] = recent
            say(logstyle.error(f"the {name} exited with code {code}; starting it again"))
            if len(recent) > 5:
                time.sleep(10)  # crashing in a loop: don't spin
            children[name] = start_child(commands[name])
        time.sleep(0.5)
