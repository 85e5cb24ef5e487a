"""The BuildKit daemon docker Spaces build with: one per installation, in the build box.

`buildkitd` runs in a container of Spaceport's own (`{instance}-buildkitd`), like buildx's
docker-container driver, attached to the internal build network only (sandbox/build_network.py)
and started lazily by the first docker build. Its OCI worker runs every `RUN` step in the
daemon's own network namespace (`--oci-worker-net=host`), so a step reaches exactly what the
daemon reaches: the build proxy, nothing else (no route out, host INPUT rules on the bridge).
The daemon fetches `ADD <url>` through the same proxy (HTTP(S)_PROXY in its environment), and
pulls nothing: base images come from the Engine (builder/buildkit_build.py).

The container is privileged (runc needs to create namespaces and mounts; the steps themselves
get BuildKit's default capabilities, and no entitlement is granted) with a private cgroup
namespace, so the cgroups runc makes for the steps nest under the container's, and its
memory, CPU and pids limits hold for every step. State (layer cache, `--mount=type=cache`)
lives in a volume that survives restarts; the gRPC socket is in a folder of
$SPACEPORT_HOME bind-mounted into the container, for `buildctl` on the host.

The image is built on Spaceport's Python base with runc from Debian (through the build
proxy) and the buildkitd binary of scripts/build_buildkit.sh, tagged by a digest of both; a
container whose image or configuration differs from the wanted one is replaced.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import subprocess
import tarfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors
from docker.models.containers import Container

from sandbox.backend import LABEL_INSTANCE
from sandbox.build_network import (
    BUILD_NETWORK,
    LABEL_CONFIG,
    LABEL_ROLE,
    PROXY_ARGS,
    BuildNetwork,
    _locked,
)

STATE_DIR = "/var/lib/buildkit"
SOCKET_DIR = "/run/buildkit"
SOCKET_NAME = "bk.sock"
# Room for buildkitd's own memory and threads on top of what the steps are given.
DAEMON_MEMORY_MB = 256
DAEMON_PIDS = 128
UNIX_PATH_MAX = 107  # sun_path is 108 bytes with its NUL


class BuildKitError(Exception):
    """The BuildKit daemon could not be set up; the message says why."""


@dataclass(frozen=True)
class BuildKitDaemon:
    address: str  # buildctl's --addr
    container: str


@dataclass(frozen=True)
class DaemonConfig:
    """What the daemon's container is made from (BuildOptions fields and the binaries)."""

    instance: str
    image_prefix: str
    home: Path
    bin_dir: Path
    memory_mb: int
    cpus: float
    pids_limit: int  # 0: none


def binaries(bin_dir: Path) -> tuple[Path, Path]:
    """buildkitd and buildctl in `bin_dir`, or a BuildKitError saying how to get them."""
    daemon, ctl = bin_dir / "buildkitd", bin_dir / "buildctl"
    for path in (daemon, ctl):
        if not os.access(path, os.X_OK):
            raise BuildKitError(
                f"BuildKit is not installed: {path} is missing (run scripts/build_buildkit.sh, "
                "which scripts/bootstrap.sh calls, or point SPACEPORT_BUILDKIT_DIR at a folder "
                "holding buildkitd and buildctl)"
            )
    return daemon, ctl


def container_name(instance: str) -> str:
    return f"{instance}-buildkitd"


def volume_name(instance: str) -> str:
    return f"{instance}-buildkit-state"


def socket_dir(home: Path, instance: str) -> Path:
    # Short: a unix socket's path has at most 107 bytes, and homes can be long.
    return Path(home) / "buildkit" / f"run-{hashlib.sha256(instance.encode()).hexdigest()[:12]}"


def daemon_dockerfile(base_image: str) -> str:
    # runc from Debian: the OCI worker's runtime. No other package: the daemon fetches
    # nothing but what the proxy lets through, and git sources are refused before a build.
    return (
        f"FROM {base_image}\n"
        'RUN apt-get -o Acquire::http::Proxy="${http_proxy:-false}" update \\\n'
        " && DEBIAN_FRONTEND=noninteractive apt-get -o "
        'Acquire::http::Proxy="${http_proxy:-false}" install -y --no-install-recommends '
        "runc \\\n"
        " && rm -rf /var/lib/apt/lists/*\n"
        "COPY buildkitd /usr/local/bin/buildkitd\n"
        "COPY entrypoint.sh /usr/local/bin/buildkitd-entrypoint\n"
        'ENTRYPOINT ["/bin/sh", "/usr/local/bin/buildkitd-entrypoint"]\n'
    )


# The container is not privileged (this Engine may not grant every capability), so Docker
# mounts its cgroup filesystems read-only: remount each writable (CAP_SYS_ADMIN) so that runc
# can make the steps' cgroups, which nest under the container's own (private cgroup namespace).
ENTRYPOINT = """set -e
for dir in $(awk '$5 ~ "^/sys/fs/cgroup/" {print $5}' /proc/self/mountinfo); do
    mount -o remount,bind,rw "$dir"
done
exec /usr/local/bin/buildkitd "$@"
"""


def daemon_image_tag(image_prefix: str, base_image: str, buildkitd: bytes) -> str:
    material = daemon_dockerfile(base_image) + ENTRYPOINT
    digest = hashlib.sha256(material.encode() + buildkitd).hexdigest()
    return f"{image_prefix}/buildkitd:{digest[:16]}"


def daemon_command(gid: int) -> list[str]:
    return [
        "--addr",
        f"unix://{SOCKET_DIR}/{SOCKET_NAME}",
        "--group",
        str(gid),  # the worker's group may use the socket
        "--root",
        STATE_DIR,
        "--oci-worker=true",
        "--containerd-worker=false",
        "--oci-worker-net=host",  # the steps share the daemon's netns: the build network
        "--oci-worker-snapshotter=overlayfs",
        "--oci-worker-gc",
    ]


def limits(config: DaemonConfig) -> dict[str, object]:
    memory = (config.memory_mb + DAEMON_MEMORY_MB) << 20
    params: dict[str, object] = {
        "mem_limit": memory,
        "memswap_limit": memory,  # no swap on top
        "nano_cpus": int(config.cpus * 1e9),
    }
    if config.pids_limit:
        params["pids_limit"] = config.pids_limit + DAEMON_PIDS
    return params


def ensure_daemon(
    client: docker.DockerClient,
    config: DaemonConfig,
    base_image: str,
    network: BuildNetwork,
    log: Callable[[str], None],
) -> BuildKitDaemon:
    """Make sure the installation's buildkitd runs as `config` says; return how to reach it.
    `base_image` is the local Python image its image is built on; `network` the build
    network with its proxy (ensure_build_network)."""
    daemon_bin, ctl = binaries(config.bin_dir)
    sockets = socket_dir(config.home, config.instance)
    address = f"unix://{sockets / SOCKET_NAME}"
    if len(str(sockets / SOCKET_NAME)) > UNIX_PATH_MAX:
        raise BuildKitError(
            f"the BuildKit socket path {sockets / SOCKET_NAME} is longer than a unix socket "
            "path may be: use a shorter SPACEPORT_HOME"
        )
    locks = Path(config.home) / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    with _locked(locks / "buildkitd.lock"):
        image = _ensure_image(client, config.image_prefix, base_image, daemon_bin, network)
        env = dict.fromkeys(PROXY_ARGS, network.proxy_url)
        gid = os.getgid()
        digest = _config_digest(image, env, daemon_command(gid), limits(config))
        name = container_name(config.instance)
        with contextlib.suppress(docker.errors.NotFound):
            container = client.containers.get(name)
            if container.labels.get(LABEL_CONFIG) == digest and container.status == "running":
                if _answers(ctl, address, timeout_s=10):
                    return BuildKitDaemon(address, name)
            container.remove(force=True)
        log(f"starting the BuildKit daemon {name} on {BUILD_NETWORK}")
        sockets.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            (sockets / SOCKET_NAME).unlink()  # a stale socket of a removed container
        container = _run(client, config, image, env, gid, digest, sockets)
        if not _answers(ctl, address, timeout_s=60):
            container.reload()
            tail = container.logs(tail=8).decode(errors="replace").strip()
            raise BuildKitError(f"the BuildKit daemon did not start: {tail or container.status}")
        return BuildKitDaemon(address, name)


def _run(  # type: ignore[no-untyped-def]
    client: docker.DockerClient,
    config: DaemonConfig,
    image: str,
    env: dict[str, str],
    gid: int,
    digest: str,
    sockets: Path,
) -> Container:
    volume = volume_name(config.instance)
    with contextlib.suppress(docker.errors.APIError):
        client.volumes.create(volume, labels={LABEL_INSTANCE: config.instance})
    try:
        return client.containers.run(
            image,
            command=daemon_command(gid),
            name=container_name(config.instance),
            detach=True,
            # runc makes namespaces and mounts: CAP_SYS_ADMIN, and no seccomp/AppArmor
            # profile of Docker's in its way; the steps get BuildKit's own default profile.
            cap_add=["SYS_ADMIN"],
            security_opt=["seccomp=unconfined", "apparmor=unconfined"],
            cgroupns="private",  # the steps' cgroups nest under this container's limits
            network=BUILD_NETWORK,  # its only network: no way out but the proxy
            environment=env,
            volumes={
                volume: {"bind": STATE_DIR, "mode": "rw"},
                str(sockets): {"bind": SOCKET_DIR, "mode": "rw"},
            },
            restart_policy={"Name": "unless-stopped"},
            labels={LABEL_ROLE: "buildkitd", LABEL_INSTANCE: config.instance, LABEL_CONFIG: digest},
            log_config={"type": "json-file", "config": {"max-size": "10m", "max-file": "2"}},
            **limits(config),
        )
    except docker.errors.APIError as exc:
        raise BuildKitError(f"cannot start the BuildKit daemon: {exc}") from exc


def _config_digest(
    image: str, env: dict[str, str], command: list[str], params: dict[str, object]
) -> str:
    material = "\0".join(
        [image, *(f"{k}={v}" for k, v in sorted(env.items())), *command]
        + [f"{k}={v}" for k, v in sorted(params.items())]
    )
    return hashlib.sha256(material.encode()).hexdigest()[:16]


def _answers(ctl: Path, address: str, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while True:
        done = subprocess.run(
            [str(ctl), "--addr", address, "--timeout", "5", "debug", "workers"],
            capture_output=True,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        )
        if done.returncode == 0:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)


def _ensure_image(
    client: docker.DockerClient,
    image_prefix: str,
    base_image: str,
    daemon_bin: Path,
    network: BuildNetwork,
) -> str:
    data = daemon_bin.read_bytes()
    tag = daemon_image_tag(image_prefix, base_image, data)
    with contextlib.suppress(docker.errors.ImageNotFound):
        client.images.get(tag)
        return tag
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        for name, content, mode in (
            ("Dockerfile", daemon_dockerfile(base_image).encode(), 0o644),
            ("buildkitd", data, 0o755),
            ("entrypoint.sh", ENTRYPOINT.encode(), 0o644),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(content)
            info.mode = mode
            tar.addfile(info, io.BytesIO(content))
    context.seek(0)
    errors: list[str] = []
    for chunk in client.api.build(
        fileobj=context,
        custom_context=True,
        tag=tag,
        rm=True,
        forcerm=True,
        decode=True,
        network_mode=network.name,  # apt reaches the Debian mirror through the proxy only
        buildargs=network.build_args(),
    ):
        if "error" in chunk:
            errors.append(str(chunk["error"]).strip())
    if errors:
        raise BuildKitError(f"cannot build the BuildKit daemon's image: {errors[-1]}")
    return tag


# -- A cgroup per build inside the daemon's ------------------------------------------------

CGROUP_ROOT = Path("/sys/fs/cgroup")
LIMITED_CONTROLLERS = ("memory", "cpu", "pids")


def _daemon_cgroups(pid: int, root: Path) -> dict[str, Path]:
    """Each controller's folder of the process `pid` (the daemon's init), on the host."""
    dirs: dict[str, Path] = {}
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if not controllers:  # cgroup v2's hierarchy: the one in use only on a v2-only host
            if (root / "cgroup.controllers").exists():
                dirs["unified"] = root / path.lstrip("/")
            continue
        if controllers.startswith("name="):
            continue
        for controller in controllers.split(","):
            dirs[controller] = root / controllers / path.lstrip("/")
    return dirs


def _limit_files(cpus: float, memory_bytes: int, pids_max: int) -> list[tuple[str, str, str]]:
    """(controller, file, value) in the order they must be written (v1)."""
    period = 100_000
    files = [
        ("memory", "memory.limit_in_bytes", str(memory_bytes)),
        ("memory", "memory.memsw.limit_in_bytes", str(memory_bytes)),  # no swap on top
        ("cpu", "cpu.cfs_period_us", str(period)),
        ("cpu", "cpu.cfs_quota_us", str(max(1000, int(cpus * period)))),
    ]
    if pids_max > 0:
        files.append(("pids", "pids.max", str(pids_max)))
    return files


@contextlib.contextmanager
def build_cgroup(
    client: docker.DockerClient,
    daemon: BuildKitDaemon,
    name: str,
    memory_bytes: int,
    cpus: float,
    pids_max: int,
    stale_after_s: float,
    root: Path = CGROUP_ROOT,
) -> Iterator[str]:
    """Yield the `cgroup-parent` of one build: a cgroup of its own inside the daemon's (its
    steps' cgroups are made below it), with the build's memory, CPU and pids limits, as the
    classic builder's steps get them. Removed when the build ends; ones left by a dead worker
    are swept by later builds once older than any build may run."""
    try:
        pid = int(client.containers.get(daemon.container).attrs["State"]["Pid"])
        dirs = _daemon_cgroups(pid, root)
    except (OSError, ValueError, KeyError, docker.errors.APIError) as exc:
        raise BuildKitError(f"cannot find the BuildKit daemon's cgroups: {exc}") from exc
    prefix = name.rsplit("-", 1)[0] + "-"
    _sweep(dirs, prefix, stale_after_s)
    try:
        if "unified" in dirs:
            path = dirs["unified"] / name
            with contextlib.suppress(OSError):
                (dirs["unified"] / "cgroup.subtree_control").write_text("+memory +cpu +pids")
            path.mkdir(exist_ok=True)
            (path / "memory.max").write_text(str(memory_bytes))
            with contextlib.suppress(OSError):
                (path / "memory.swap.max").write_text("0")
            (path / "cpu.max").write_text(f"{max(1000, int(cpus * 100_000))} 100000")
            if pids_max > 0:
                (path / "pids.max").write_text(str(pids_max))
        else:
            for controller in LIMITED_CONTROLLERS:
                (dirs[controller] / name).mkdir(exist_ok=True)
            for controller, file, value in _limit_files(cpus, memory_bytes, pids_max):
                target = dirs[controller] / name / file
                if file == "memory.memsw.limit_in_bytes" and not target.exists():
                    continue  # no swap accounting on this kernel: no swap limit to set
                target.write_text(value)
    except (OSError, KeyError) as exc:
        _remove(dirs, name)
        raise BuildKitError(
            f"cannot set up the build's limits in the BuildKit daemon's cgroup ({exc}): run "
            "the build worker as root on a host with the memory, cpu and pids controllers"
        ) from exc
    try:
        yield f"/{name}"
    finally:
        _remove(dirs, name)


def _remove(dirs: dict[str, Path], name: str) -> None:
    for base in set(dirs.values()):
        path = base / name
        if not path.is_dir() or path.is_symlink():
            continue
        # Children are the (finished) steps' cgroups, deepest first.
        for child in sorted((p for p in path.rglob("*") if p.is_dir()), reverse=True):
            with contextlib.suppress(OSError):
                os.rmdir(child)
        with contextlib.suppress(OSError):
            os.rmdir(path)


def _sweep(dirs: dict[str, Path], prefix: str, older_than_s: float) -> None:
    for base in set(dirs.values()):
        with contextlib.suppress(OSError):
            for path in base.iterdir():
                if (
                    path.is_dir()
                    and path.name.startswith(prefix)
                    and time.time() - path.stat().st_mtime > older_than_s
                ):
                    _remove({"x": base}, path.name)
