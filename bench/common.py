"""What both benchmarks share: the sample, the hand-written Dockerfile, Docker helpers, a
Spaceport started in a temporary home with its own image prefix and instance label, and
the lines that describe the machine a run was taken on."""

from __future__ import annotations

import os
import platform as pyplatform
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import docker as docker_sdk
import httpx
from docker.models.containers import Container

from orchestrator.spaces.config import parse_readme
from tests.platform import SAMPLES, Platform, sample_checkout
from tests.services import docker_available, free_port
from tests.stacks import platform_env

DOCKER = "/usr/bin/docker"
SAMPLE = "hello"
OWNER, NAME = "bench", "hello"
BASE_IMAGE = "python:3.11-slim"
POLL_SECONDS = 0.1
SETTLE_TIMEOUT_SECONDS = 180.0
# Stages on the way from a build to a started app; anything else is where a Space rests.
MOVING_STAGES = {"BUILDING", "RUNNING_BUILDING", "APP_STARTING", "RUNNING_APP_STARTING"}
FAILED_STATUSES = {"failed", "cancelled"}
INSTANCE_LABEL = "org.spaceport.instance"


class BenchError(Exception):
    pass


def say(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def sample_gradio_version() -> str:
    config = parse_readme((SAMPLES / SAMPLE / "README.md").read_text())
    if not config.sdk_version:
        raise BenchError(f"sample_spaces/{SAMPLE}/README.md sets no sdk_version")
    return config.sdk_version


def hand_dockerfile(gradio_version: str) -> str:
    # The base image has no Env of its own worth extending (see measurements.md §2), so PATH
    # is spelled out in full with the venv first.
    return (
        f"FROM {BASE_IMAGE}\n"
        "ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"
        "RUN python3 -m venv /opt/venv\n"
        f"RUN pip install --no-cache-dir gradio=={gradio_version}\n"
        "RUN useradd -m -u 1000 user\n"
        "WORKDIR /home/user/app\n"
        "COPY --chown=1000:1000 app.py .\n"
        "USER 1000\n"
        'CMD ["python", "app.py"]\n'
    )


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([DOCKER, *args], capture_output=True, text=True, check=check)


def image_id(ref: str) -> str | None:
    result = docker("image", "inspect", "--format", "{{.Id}}", ref, check=False)
    return result.stdout.strip() if result.returncode == 0 else None


def untagged(ident: str) -> bool:
    """True when image `ident` exists and no repository tag refers to it."""
    result = docker("image", "inspect", "--format", "{{len .RepoTags}}", ident, check=False)
    return result.returncode == 0 and result.stdout.strip() == "0"


def docker_preflight() -> str | None:
    """Why the benches cannot run here, or None when they can."""
    if not Path(DOCKER).exists() or not docker_available():
        return f"no Docker Engine answers ({DOCKER})"
    if image_id(BASE_IMAGE) is None:
        return f"{BASE_IMAGE} is not in the local image store"
    return None


def tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def parse_hub_time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


# --- Spaceport -----------------------------------------------------------------------------


class SpaceportPlatform:
    """`spaceport up` (as tests.platform starts it) in a fresh home under `workdir`, with
    `prefix` as its image prefix and instance label, a token for OWNER and a checkout of
    the sample; `stop()` removes the containers it started, `cleanup_images()` its images."""

    def __init__(self, workdir: Path, prefix: str) -> None:
        self.workdir = workdir
        self.prefix = prefix
        home = workdir / "spaceport-home"
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("SPACEPORT_")}
        env.update(
            SPACEPORT_HOME=str(home),
            SPACEPORT_PUBLIC_URL=f"http://127.0.0.1:{port}",
            SPACEPORT_SPACES_DOMAIN=f"localhost:{port}",
            SPACEPORT_IMAGE_PREFIX=prefix,
            # Labels the containers it runs, so that stopping it removes only those.
            SPACEPORT_INSTANCE=prefix,
        )
        self.platform = Platform(home=home, env=env, port=port)
        self.token = ""
        self.repo = Path()
        self.image_ids: set[str] = set()  # every image built, to remove it at the end

    @property
    def space_host(self) -> str:
        """The Host header under which the gateway serves OWNER/NAME."""
        return self.platform.app_url(OWNER, NAME).removeprefix("http://")

    # setup / teardown

    def start(self) -> None:
        self.platform.start()
        self.token = self.cli("token", "create", OWNER, "--name", "bench").strip()
        self.repo = sample_checkout(SAMPLE, self.workdir)

    def stop(self) -> None:
        self.platform.stop()

    def cli(self, *args: str) -> str:
        try:
            return self.platform.cli(*args)
        except subprocess.CalledProcessError as exc:
            raise BenchError(
                f"spaceport {' '.join(args)} failed ({exc.returncode}):\n{exc.stderr}"
            ) from exc

    def containers(self) -> list[str]:
        """Ids of the containers this platform runs (by its instance label)."""
        return docker(
            "ps", "-q", "--filter", f"label={INSTANCE_LABEL}={self.prefix}", check=False
        ).stdout.split()

    def cleanup_images(self) -> list[str]:
        listed = docker(
            "images",
            "--filter",
            f"reference={self.prefix}/*",
            "--format",
            "{{.Repository}}:{{.Tag}}",
            check=False,
        ).stdout.split()
        removed = []
        for ref in listed:
            if docker("rmi", ref, check=False).returncode == 0:
                removed.append(ref)
        # Images whose tag a later build with the same content took over (--no-cache rebuilds)
        # are left untagged. Only those are removed by id: a fully cached build can yield the
        # very image another Spaceport (another prefix) has tagged, and `docker rmi <id>` of an
        # image with one tag left would delete that other image.
        for ident in sorted(self.image_ids):
            if untagged(ident) and docker("rmi", ident, check=False).returncode == 0:
                removed.append(ident[:19])
        return removed

    # the API

    def builds(self) -> list[dict]:
        response = self.platform.api(f"/api/spaces/{OWNER}/{NAME}/builds", self.token)
        if response.status_code == 404:  # before the first push creates the Space
            return []
        response.raise_for_status()
        return response.json()

    def build(self, build_id: int) -> dict:
        response = self.platform.api(f"/api/spaces/{OWNER}/{NAME}/builds/{build_id}", self.token)
        response.raise_for_status()
        return response.json()

    def newest_build_id(self) -> int:
        return max((b["id"] for b in self.builds()), default=0)

    def failure(self, what: str, build: dict | None = None) -> BenchError:
        parts = [what]
        if build is not None:
            parts.append(
                f"build {build.get('id')}: {build.get('status')}: {build.get('errorMessage')}"
            )
            parts.append("build log tail:\n" + "\n".join(build.get("log", [])[-30:]))
        parts.append("worker log tail:\n" + self.platform.log_tail("worker"))
        return BenchError("\n".join(parts))

    def settle(self, commit: str) -> dict:
        """Untimed: wait until the Space rests again (the new build's app started, or an
        error), so that the app's start-up does not load the machine during the next timed
        run of either side. Returns the Space's runtime."""
        start = time.monotonic()
        runtime: dict = {}
        while time.monotonic() - start < SETTLE_TIMEOUT_SECONDS:
            runtime = self.platform.runtime(OWNER, NAME, self.token)
            stage, sha = runtime.get("stage"), runtime.get("sha") or ""
            if stage not in MOVING_STAGES and (stage != "RUNNING" or sha == commit):
                took = time.monotonic() - start
                say(f"  (settled: {stage} after {took:.1f} s, not timed)")
                if runtime.get("errorMessage"):
                    say(f"  (its error message: {runtime['errorMessage'][-600:]})")
                return runtime
            time.sleep(0.25)
        say(f"  (still {runtime.get('stage')} after {SETTLE_TIMEOUT_SECONDS:.0f} s; going on)")
        return runtime


# --- report --------------------------------------------------------------------------------


def first_line(*command: str) -> str:
    """The first line a command prints (stdout, else stderr), for version strings."""
    try:
        result = subprocess.run(command, capture_output=True, text=True, check=False)
    except OSError as exc:
        return f"unavailable ({exc})"
    lines = (result.stdout or result.stderr).strip().splitlines()
    return lines[0] if lines else "?"


def environment() -> list[str]:
    os_name = "?"
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                os_name = line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    try:
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        load = "?"
    docker_versions = first_line(
        DOCKER, "version", "--format", "client {{.Client.Version}}, server {{.Server.Version}}"
    )
    storage = first_line(DOCKER, "info", "--format", "{{.Driver}}, cgroup v{{.CgroupVersion}}")
    base = image_id(BASE_IMAGE) or "missing"
    return [
        f"date:      {time.strftime('%Y-%m-%d %H:%M:%S %Z')}",
        f"os:        {os_name}; kernel {pyplatform.release()}; {os.cpu_count()} CPUs; "
        f"load average {load}",
        f"docker:    {docker_versions}; storage {storage}; legacy builder on both sides",
        f"base:      {BASE_IMAGE} = {base[:19]}",
        f"git:       {first_line('git', '--version')}",
        f"python:    {pyplatform.python_version()} ({sys.executable})",
    ]


def fmt_seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f} s" if value < 10 else f"{value:.1f} s"


def fmt_list(values: list[float]) -> str:
    return " ".join(f"{v:.2f}" for v in values) or "-"


# --- a Spaceport of its own, for one bench run ----------------------------------------------


@contextmanager
def bench_platform(kind: str, **settings: str) -> Iterator[Platform]:
    """A started `tests.platform.Platform` in a fresh `/tmp/spaceport-bench-{kind}-*` home,
    with its own instance label and image prefix (so it touches no other installation's
    containers or images) and ``settings`` (SPACEPORT_... names). On the way out it stops,
    removes its containers, and removes the images it tagged: by tag, never by id (an
    identical build elsewhere shares the id)."""
    tag = uuid.uuid4().hex[:8]
    home = Path(tempfile.mkdtemp(prefix=f"spaceport-bench-{kind}-"))
    port = free_port()
    env = platform_env(
        home,
        port,
        SPACEPORT_INSTANCE=f"bench-{kind}-{tag}",
        SPACEPORT_IMAGE_PREFIX=f"spaceport-bench-{kind}-{tag}",
        **settings,
    )
    platform = Platform(home=home, env=env, port=port)
    platform.start()
    try:
        yield platform
    finally:
        platform.stop()
        client = docker_sdk.from_env()
        prefix = env["SPACEPORT_IMAGE_PREFIX"] + "/"
        for image in client.images.list():
            for name in image.tags:
                if name.startswith(prefix):
                    client.images.remove(name)


def run_until_answering(
    image: str,
    *,
    path: str = "/config",
    cpus: float | None = None,
    memory_gib: float | None = None,
    then: Callable[[Container, int], float] | None = None,
) -> tuple[float, float | None]:
    """A bare `docker run` of `image` (no Spaceport, no security profile; `cpus` and
    `memory_gib` as limits when given): seconds until its app's GET `path` answers 200 on
    loopback (polled every 0.05 s). `then(container, spare_port)`, if given, runs while the
    container is up (its 7861 is published on `spare_port`) and its figure is returned too."""
    client = docker_sdk.from_env()
    port, spare = free_port(), free_port()
    limits: dict[str, object] = {}
    if cpus is not None:
        limits["nano_cpus"] = int(cpus * 1e9)
    if memory_gib is not None:
        limits["mem_limit"] = f"{int(memory_gib * 1024)}m"
    started = time.monotonic()
    container = client.containers.run(
        image,
        detach=True,
        ports={"7860/tcp": ("127.0.0.1", port), "7861/tcp": ("127.0.0.1", spare)},
        environment={"GRADIO_SERVER_NAME": "0.0.0.0", "GRADIO_SERVER_PORT": "7860"},
        **limits,
    )
    try:
        cold = wait_answering_url(f"http://127.0.0.1:{port}{path}", started)
        return cold, then(container, spare) if then is not None else None
    finally:
        container.remove(force=True)


def wait_answering_url(url: str, started: float, timeout: float = 300) -> float:
    """Seconds from `started` (time.monotonic) until GET `url` answers 200."""
    while time.monotonic() - started < timeout:
        try:
            if httpx.get(url, timeout=5).status_code == 200:
                return time.monotonic() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise BenchError(f"{url} never answered within {timeout:.0f} s")
