"""A docker Space's build through BuildKit (`buildctl` against the installation's buildkitd,
sandbox/buildkit.py), streamed line by line, stoppable, loaded into the Engine at the end.

* The context is the filtered tar of builder/context.py, unpacked into a work folder under
  $SPACEPORT_HOME/tmp (BuildKit's Dockerfile frontend reads local folders, and applies the
  context's `.dockerignore`, Spaceport's, as the classic builder does).
* Base images come from the Engine, never from a registry: every `FROM` image (made sure of by
  builder/base_image.py, pulled, loaded or built offline) is copied once per image ID into an
  OCI layout ($SPACEPORT_HOME/buildkit/oci-layout, with skopeo's `docker-daemon:` transport)
  and handed to the frontend as a named context (`context:<name>=oci-layout://...@digest`).
* The Space's secrets are build secrets (`RUN --mount=type=secret,id=NAME`): `buildctl
  --secret id=NAME,env=VAR`, the values only in buildctl's environment.
* The result is exported as a Docker image tar (`--output type=docker`) and loaded into the
  Engine under the content-addressed tag.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import fcntl
import hashlib
import hmac
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import docker

from builder.buildkit_checks import BuildKitPlan
from builder.docker_build import BuildFailed, BuildStopped
from builder.logstyle import LogSink, detail
from builder.spec import BuildOptions
from sandbox import buildkit
from sandbox.build_network import BuildNetwork

# Keep in step with scripts/build_buildkit.sh VERSION (tests/unit/test_buildkit.py checks).
BUILDKIT_VERSION = "v0.34.2"
PR_SET_PDEATHSIG = 1  # prctl(2)
_ERROR_LINE = re.compile(r"^(?:error|ERROR):\s*(.+)$")


def default_bin_dir() -> Path:
    """Where scripts/build_buildkit.sh puts the binaries (its --print)."""
    root = os.environ.get("SPACEPORT_TOOLS_CACHE") or str(
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "spaceport"
    )
    return Path(root) / f"buildkit-{BUILDKIT_VERSION}" / "bin"


@dataclass
class BuildKitRequest:
    context: bytes  # the filtered context tar
    dockerfile: str  # its path in the context
    tag: str
    build_args: dict[str, str]
    base_images: dict[str, str]  # FROM name as written -> the Engine's image of it
    secrets: dict[str, str] = field(default_factory=dict)  # id -> value
    no_cache: bool = False
    cgroup_parent: str | None = None  # the build's cgroup in the daemon's (its limits)


def familiar_name(ref: str) -> str:
    """The name BuildKit's frontend looks named contexts up by (reference.FamiliarString,
    `:latest` dropped): `docker.io/library/python:3.11` -> `python:3.11`."""
    name = ref
    for prefix in ("docker.io/", "index.docker.io/", "registry-1.docker.io/"):
        if name.startswith(prefix):
            name = name[len(prefix) :]
            if name.startswith("library/") and name.count("/") == 1:
                name = name[len("library/") :]
            break
    if name.endswith(":latest"):
        name = name[: -len(":latest")]
    return name


def buildctl_argv(
    ctl: Path,
    address: str,
    context_dir: Path,
    dockerfile_dir: Path,
    dockerfile_name: str,
    output: Path,
    request: BuildKitRequest,
    layouts: dict[str, str],  # FROM name -> "oci-layout://engine@sha256:..."
    layout_dir: Path,
) -> tuple[list[str], dict[str, str]]:
    """The buildctl command line and its environment. Secret values go into the environment
    only (a command line is readable by every user of the host)."""
    argv = [
        str(ctl),
        "--addr",
        address,
        "build",
        "--progress",
        "plain",
        "--frontend",
        "dockerfile.v0",
        "--local",
        f"context={context_dir}",
        "--local",
        f"dockerfile={dockerfile_dir}",
        "--opt",
        f"filename={dockerfile_name}",
        # A `# syntax=` line would make the frontend pull that image from a registry, which
        # builds cannot reach: `cmdline` set means "this is the frontend asked for", so the
        # built-in one runs (the log says so).
        "--opt",
        "cmdline=",
        "--output",
        f"type=docker,name={request.tag},dest={output},compression=uncompressed",
    ]
    if layouts:
        argv += ["--oci-layout", f"engine={layout_dir}"]
    for name, source in sorted(layouts.items()):
        argv += ["--opt", f"context:{familiar_name(name)}={source}"]
    for key, value in sorted(request.build_args.items()):
        argv += ["--opt", f"build-arg:{key}={value}"]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(context_dir.parent)}
    for number, (key, value) in enumerate(sorted(request.secrets.items())):
        variable = f"SPACEPORT_BUILD_SECRET_{number}"
        argv += ["--secret", f"id={key},env={variable}"]
        env[variable] = value
    if request.cgroup_parent:
        argv += ["--opt", f"cgroup-parent={request.cgroup_parent}"]
    if request.no_cache:
        argv.append("--no-cache")
    return argv, env


def error_message(lines: list[str]) -> str:
    """What failed, from buildctl's last `error:` line (plain progress prints the cause)."""
    for line in reversed(lines):
        match = _ERROR_LINE.match(line.strip())
        if match:
            return match.group(1).strip()
    tail = [line for line in lines if line.strip()][-3:]
    return "BuildKit failed: " + (" / ".join(tail) if tail else "no output")


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def layout_manifest(layout_dir: Path, key: str) -> str | None:
    """The manifest digest stored under `key` in the OCI layout's index, if any."""
    try:
        index = json.loads((layout_dir / "index.json").read_text())
    except (OSError, ValueError):
        return None
    for entry in index.get("manifests", []):
        if (entry.get("annotations") or {}).get("org.opencontainers.image.ref.name") == key:
            return str(entry["digest"])
    return None


def feed_engine_image(client: docker.DockerClient, ref: str, layout_dir: Path, locks: Path) -> str:
    """`oci-layout://engine@<digest>` for the Engine's image `ref`, copied into the layout
    once per image ID (skopeo's docker-daemon transport reads it with `docker save`)."""
    image_id = (client.images.get(ref).id or "").split(":", 1)[-1]
    if not image_id:
        raise BuildFailed(f"the Docker Engine has no image {ref}")
    key = f"id-{image_id[:32]}"
    with _locked(locks / "buildkit-oci-layout.lock"):
        digest = layout_manifest(layout_dir, key)
        if digest is None:
            skopeo = shutil.which("skopeo")
            if skopeo is None:
                raise BuildFailed(
                    "skopeo not found: BuildKit builds take their base images from the Docker "
                    "Engine through it (scripts/bootstrap.sh installs it)"
                )
            layout_dir.mkdir(parents=True, exist_ok=True)
            argv = [skopeo, "copy", "--quiet", f"docker-daemon:{ref}", f"oci:{layout_dir}:{key}"]
            host = os.environ.get("DOCKER_HOST")
            if host:
                argv[2:2] = ["--src-daemon-host", host]
            done = subprocess.run(argv, capture_output=True, text=True)
            if done.returncode != 0:
                raise BuildFailed(
                    f"cannot hand the base image {ref} to BuildKit: {done.stderr.strip()[-400:]}"
                )
            digest = layout_manifest(layout_dir, key)
            if digest is None:
                raise BuildFailed(f"skopeo copied {ref} but the OCI layout does not list it")
    return f"oci-layout://engine@{digest}"


def _unpack(context: bytes, into: Path) -> None:
    with tarfile.open(fileobj=io.BytesIO(context), mode="r:") as tar:
        # "tar": no absolute paths, nothing written outside `into` (through a link either).
        tar.extractall(into, filter="tar")


def stream_buildkit(
    client: docker.DockerClient,
    ctl: Path,
    address: str,
    request: BuildKitRequest,
    home: Path,
    stop_reason: Callable[[], str | None],
    poll_seconds: float = 0.5,
) -> Iterator[str]:
    """Yield the build's output lines; load the image into the Engine; raise BuildFailed or
    BuildStopped at the end."""
    layout_dir = Path(home) / "buildkit" / "oci-layout"
    layouts = {
        name: feed_engine_image(client, ref, layout_dir, Path(home) / "locks")
        for name, ref in request.base_images.items()
    }
    scratch = Path(home) / "tmp"
    scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="buildkit-", dir=scratch) as work:
        root = Path(work)
        context_dir, dockerfile_dir = root / "context", root / "dockerfile"
        context_dir.mkdir()
        dockerfile_dir.mkdir()
        _unpack(request.context, context_dir)
        dockerfile = context_dir / request.dockerfile
        if not dockerfile.is_file():
            raise BuildFailed(f"the build context has no {request.dockerfile}")
        shutil.copyfile(dockerfile, dockerfile_dir / "Dockerfile")
        output = root / "image.tar"
        argv, env = buildctl_argv(
            ctl,
            address,
            context_dir,
            dockerfile_dir,
            "Dockerfile",
            output,
            request,
            layouts,
            layout_dir,
        )
        yield from _run_buildctl(argv, env, stop_reason, poll_seconds)
        yield f"loading {request.tag} into the Docker Engine"
        try:
            with open(output, "rb") as handle:
                client.images.load(handle)
        except (OSError, docker.errors.APIError) as exc:
            raise BuildFailed(f"cannot load the built image into the Docker Engine: {exc}") from exc


def _die_with_this_thread() -> None:
    """buildctl's preexec_fn: killed when the worker's thread that started it is gone (a
    worker killed mid-build must not leave its build running: buildkitd cancels the
    build of a buildctl that went away)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _run_buildctl(
    argv: list[str],
    env: dict[str, str],
    stop_reason: Callable[[], str | None],
    poll_seconds: float,
) -> Iterator[str]:
    proc = subprocess.Popen(
        argv,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
        start_new_session=True,
        preexec_fn=_die_with_this_thread,
    )
    stopped: list[str] = []
    done = threading.Event()

    def watch() -> None:
        while not done.wait(poll_seconds):
            reason = stop_reason()
            if reason:
                stopped.append(reason)
                # SIGINT: buildctl cancels the solve, and buildkitd stops its steps.
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGINT)
                if proc.poll() is None:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        proc.wait(15)
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                return

    watcher = threading.Thread(target=watch, name="buildkit-watcher", daemon=True)
    watcher.start()
    seen: list[str] = []
    try:
        assert proc.stderr is not None
        for raw in proc.stderr:
            line = raw.rstrip("\n").rstrip("\r")
            seen.append(line)
            if len(seen) > 200:
                del seen[:100]
            yield line
        proc.wait()
    finally:
        done.set()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if stopped:
        raise BuildStopped(stopped[0])
    if proc.returncode != 0:
        raise BuildFailed(error_message(seen))


def secrets_digest(home: Path, secrets: dict[str, str]) -> str:
    """Part of a secret-using docker Space's image tag, so that a changed secret builds again;
    keyed with a random key of the installation's (never a plain hash of a secret in a tag
    anyone may read)."""
    if not secrets:
        return ""
    key_file = Path(home) / "buildkit" / "tag-key"
    key_file.parent.mkdir(parents=True, exist_ok=True)
    with _locked(Path(home) / "locks" / "buildkit-tag-key.lock"):
        if not key_file.exists():
            fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(os.urandom(32))
        key = key_file.read_bytes()
    material = json.dumps(sorted(secrets.items())).encode()
    return hmac.new(key, material, hashlib.sha256).hexdigest()[:32]


def build_docker_space(
    client: docker.DockerClient,
    plan: DockerSpacePlan,
    options: BuildOptions,
    network: BuildNetwork,
    base: str,
    log: LogSink,
    stop_reason: Callable[[], str | None],
) -> None:
    """Build a docker Space's image with the installation's buildkitd, every line to `log`."""
    config = buildkit.DaemonConfig(
        instance=options.instance,
        image_prefix=options.image_prefix,
        home=Path(options.home),
        bin_dir=Path(options.buildkit_dir) if options.buildkit_dir else default_bin_dir(),
        memory_mb=options.build_memory_mb,
        cpus=options.build_cpus,
        pids_limit=options.build_pids_limit,
    )
    try:
        daemon = buildkit.ensure_daemon(client, config, base, network, lambda m: log(detail(m)))
    except buildkit.BuildKitError as exc:
        raise BuildFailed(f"BuildKit is not available: {exc}") from exc
    log(
        detail(
            f"BuildKit {BUILDKIT_VERSION} ({daemon.container}): limits {options.build_memory_mb} "
            f"MiB memory, {options.build_cpus:g} CPUs, {options.build_pids_limit or 'no'} pids "
            f"limit; network: {network.name} (package hosts only, through the build proxy)"
        )
    )
    if plan.checks.syntax:
        log(
            detail(
                f"the Dockerfile asks for the frontend {plan.checks.syntax} (# syntax=): builds "
                f"reach no registry, so BuildKit {BUILDKIT_VERSION}'s built-in Dockerfile "
                "frontend builds it"
            )
        )
    missing = [s for s in plan.checks.secret_ids if s not in plan.request.secrets]
    if missing:
        log(
            detail(
                "WARNING: the Dockerfile mounts the secret(s) "
                + ", ".join(missing)
                + " which this Space does not have: the step sees no file (add them in the "
                "Space's settings, or mount with required=true to fail instead)"
            )
        )
    ctl = config.bin_dir / "buildctl"
    name = f"{options.instance}-{uuid.uuid4().hex[:12]}"
    try:
        with buildkit.build_cgroup(
            client,
            daemon,
            name,
            memory_bytes=options.build_memory_mb << 20,
            cpus=options.build_cpus,
            pids_max=options.build_pids_limit,
            stale_after_s=options.build_timeout_seconds + 600,
        ) as cgroup_parent:
            # Spaceport's proxy args last: they win over a variable of the same name.
            # BuildKit, like the classic builder, keeps these predefined args out of the
            # image's history.
            request = dataclasses.replace(
                plan.request,
                build_args={**plan.request.build_args, **network.build_args()},
                cgroup_parent=cgroup_parent,
            )
            for line in stream_buildkit(
                client, ctl, daemon.address, request, config.home, stop_reason
            ):
                log(detail(line))
    except buildkit.BuildKitError as exc:
        raise BuildFailed(str(exc)) from exc


@dataclass
class DockerSpacePlan:
    checks: BuildKitPlan
    request: BuildKitRequest
