"""Base images for Space builds, with an offline fallback.

Spaceport normally pulls its base images (``python:3.11-slim`` by default). Self-hosted installs
often have no registry at all, so when a pull fails and the wanted image is an official
``python:X.Y[-slim][-<suite>]`` image, Spaceport builds an equivalent itself from Debian
packages (``debootstrap`` + ``docker import``) and tags it under the official name too, so that
user Dockerfiles saying ``FROM python:3.11-slim`` build unchanged.

The Docker image store is the cache: the Debian-built base is tagged
``{image_prefix}/base:python{X.Y}-{suite}`` and only ever built once per suite (guarded by a
file lock under ``settings.home``, so concurrent builds of one install wait for the first one
instead of racing it).

Differences from the official image worth knowing: CPython comes from Debian (so the patch
version is Debian's, e.g. 3.11.2), and ``pip install`` outside a venv goes to
``/usr/local/lib/python3.X/dist-packages`` (Debian's layout) rather than ``site-packages``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections import deque
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Protocol

import docker
import docker.errors
import requests
from docker.models.images import Image
from docker.utils import parse_repository_tag

from builder import registry_mirror
from builder.logstyle import LogSink, detail, error, step

# Which Debian suite ships which CPython as its python3. Only suites whose python3 is the
# version named here: the mapping is what lets "python:3.11-slim" become Debian bookworm.
OFFLINE_SUITES: dict[str, str] = {"3.9": "bullseye", "3.11": "bookworm", "3.13": "trixie"}

# Kept small on purpose: this is what the official -slim image has, plus venv (Gradio builds
# make a venv) and python-is-python3 (so `python` works as in the official image).
DEBOOTSTRAP_PACKAGES = "python3,python3-venv,python3-pip,python-is-python3,ca-certificates"

# `docker import --change` instructions. The imported rootfs has no config at all (no PATH:
# `ENV PATH=/x:$PATH` would yield "/x:"), so the whole environment is spelled out here.
# PIP_BREAK_SYSTEM_PACKAGES lets `pip install` outside a venv work as it does in the official
# image (Debian otherwise refuses with "externally-managed-environment").
IMAGE_ENV: dict[str, str] = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
    "PYTHONUNBUFFERED": "1",
    "PIP_BREAK_SYSTEM_PACKAGES": "1",
    "PIP_DISABLE_PIP_VERSION_CHECK": "1",
}

# Extra CAs the host trusts (e.g. a TLS-intercepting egress proxy or a company CA). Without
# them, `pip install` inside the image fails certificate checks wherever the host needs them
# to reach PyPI, so they are copied into the image the way Debian expects local CAs.
HOST_LOCAL_CA_DIR = Path("/usr/local/share/ca-certificates")

# Official Docker Hub python tags that are Debian-based: X.Y[.Z], optionally -slim and/or a
# Debian codename. Alpine/Windows variants are left out: their Dockerfiles use apk/PowerShell,
# which a Debian-built stand-in cannot run.
_DEBIAN_CODENAMES = "stretch|buster|bullseye|bookworm|trixie|forky"
OFFICIAL_PYTHON_REF = re.compile(
    r"^(?:(?:docker\.io|index\.docker\.io|registry-1\.docker\.io)/)?(?:library/)?python:"
    r"(?P<minor>3\.\d+)(?:\.\d+(?:(?:a|b|rc)\d+)?)?"
    rf"(?:-slim)?(?:-(?:{_DEBIAN_CODENAMES}))?$"
)

_VERSION = re.compile(r"^\s*(?P<major>\d+)\.(?P<minor>\d+)(?:\.\d+\S*)?\s*$")

# debootstrap prints five lines per package (~125 packages); these are summarised so a build
# log shows progress without 600 lines of it.
# Per-package lines are "I: Retrieving apt 2.6.1" or "I: Unpacking apt..."; step headers such
# as "I: Retrieving InRelease" or "I: Unpacking the base system..." do not fit either shape.
_PER_PACKAGE_LINE = re.compile(
    r"^I: (?:Retrieving|Validating) \S+ \S+$|^I: (?:Extracting|Unpacking|Configuring) \S+\.\.\.$"
)
_PER_PACKAGE_EVERY_S = 5.0

# Connection-level failures, as the daemon words them: the registry was never reached.
_UNREACHABLE_MARKERS = (
    "no such host",
    "dial tcp",
    "connection refused",
    "i/o timeout",
    "network is unreachable",
    "tls handshake timeout",
    "server misbehaving",
    "temporary failure in name resolution",
)


class _Settings(Protocol):
    """The part of orchestrator.core.settings.Settings this module reads."""

    image_prefix: str
    base_image: str
    debian_mirror: str
    home: Path


class BaseImageUnavailable(RuntimeError):
    """No usable base image: not local, not pullable, and no offline equivalent could be made.

    The message is meant for the user: it says what to do.
    """


def offline_suite_for(python_version: str) -> tuple[str, str]:
    """Return (Debian suite, CPython minor it ships) for a wanted Python version.

    The exact minor when a suite ships it; otherwise the nearest one, preferring the next newer
    (code written for 3.10 is likelier to run on 3.11 than on 3.9). Callers should warn when the
    returned minor differs from the one asked for.
    """
    match = _VERSION.match(python_version)
    if match is None:
        raise ValueError(f"not a Python version: {python_version!r} (expected e.g. 3.11)")
    wanted = (int(match["major"]), int(match["minor"]))
    available = sorted((_minor_tuple(minor), minor) for minor in OFFLINE_SUITES)
    same_major = [(key, minor) for key, minor in available if key[0] == wanted[0]]
    if not same_major:
        raise ValueError(
            f"no Debian suite Spaceport knows ships Python {wanted[0]}.x "
            f"(offline bases exist for {', '.join(OFFLINE_SUITES)})"
        )
    newer_or_equal = [minor for key, minor in same_major if key >= wanted]
    chosen = newer_or_equal[0] if newer_or_equal else same_major[-1][1]
    return OFFLINE_SUITES[chosen], chosen


def parse_official_python_ref(ref: str) -> str | None:
    """The CPython minor ("3.11") of an official Debian-based python image ref, else None."""
    match = OFFICIAL_PYTHON_REF.match(ref.strip())
    return match["minor"] if match else None


def offline_base_tag(settings: _Settings, python_minor: str, suite: str) -> str:
    return f"{settings.image_prefix}/base:python{python_minor}-{suite}"


def ensure_python_base(
    client: docker.DockerClient, python_version: str, log: LogSink, settings: _Settings
) -> str:
    """The base image of a Gradio Space for `python_version`, as a ref usable in FROM."""
    return ensure_image(
        client, settings.base_image.format(python_version=python_version), log, settings
    )


def ensure_image(client: docker.DockerClient, ref: str, log: LogSink, settings: _Settings) -> str:
    """Make sure `ref` is in the local image store and return a ref usable in FROM.

    Local image -> used as is. Otherwise pulled; if the pull fails and `ref` is an official
    python image, Spaceport's Debian-built equivalent is built (or reused) and tagged as `ref`.
    Raises BaseImageUnavailable when none of that works.
    """
    wanted_minor = parse_official_python_ref(ref)
    local = _get_image(client, ref)
    if local is not None:
        _describe_local_offline_image(local, ref, wanted_minor, log)
        if wanted_minor is None and _offline_node_ref(ref):
            from builder import node_base

            note = node_base.substitution_note(ref, local.labels or {})
            if note:
                log(detail(note))
        return ref

    repository, tag = parse_repository_tag(ref)
    log(step(f"Pulling base image {ref}"))
    mirror = getattr(settings, "registry_mirror", "")  # SPACEPORT_REGISTRY_MIRROR
    if mirror and registry_mirror.pull(client, ref, mirror, log):
        return ref
    try:
        # An explicit tag: without one the SDK pulls *every* tag of the repository.
        client.images.pull(repository, tag=tag or "latest")
        return ref
    # requests' own errors (e.g. a read timeout from a registry that hangs) are not
    # DockerExceptions, and must not abort the build before the offline fallback is tried.
    except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
        reason = _short_pull_reason(exc)
        log(detail(f"pull of {ref} failed: {reason}"))

    if wanted_minor is None and _offline_node_ref(ref):
        return _ensure_offline_node(client, ref, log, settings)
    if wanted_minor is None:
        why = "no registry reachable" if _is_unreachable(reason) else reason
        raise BaseImageUnavailable(
            f"{ref} could not be pulled ({why}) and Spaceport has no offline equivalent for it: "
            f"load it with `docker load`, or use python:3.11-slim"
        )

    suite, actual_minor = offline_suite_for(wanted_minor)
    if actual_minor != wanted_minor:
        log(detail(_version_mismatch_warning(ref, wanted_minor, actual_minor, suite)))
    offline_tag = build_offline_python_base(client, wanted_minor, log, settings)
    # Tagged under the official name as well, so `FROM python:3.11-slim` in a user's
    # Dockerfile resolves from the local store instead of failing on the missing registry.
    client.images.get(offline_tag).tag(repository, tag or "latest")
    log(
        step(
            f"Using Spaceport's Debian-built equivalent of {ref}: "
            f"Python {actual_minor} from Debian {suite} ({offline_tag})"
        )
    )
    return ref


def _offline_node_ref(ref: str) -> bool:
    from builder import node_base  # imports this module: resolved at call time

    return node_base.parse_official_node_ref(ref) is not None


def _ensure_offline_node(
    client: docker.DockerClient, ref: str, log: LogSink, settings: _Settings
) -> str:
    """node:* gets Spaceport's equivalent (builder/node_base.py) on the Debian base of the
    suite its tag names: the same Debian-built base as python:* of that suite."""
    from builder import node_base

    python_of_suite = {suite: minor for minor, suite in OFFLINE_SUITES.items()}

    def debian_base(suite: str) -> str:
        return build_offline_python_base(client, python_of_suite[suite], log, settings)

    return node_base.ensure_offline_node(client, ref, log, settings, debian_base)  # type: ignore[arg-type]


def build_offline_python_base(
    client: docker.DockerClient, python_minor: str, log: LogSink, settings: _Settings
) -> str:
    """Build (once) the Debian-based stand-in for python:`python_minor`; return its tag.

    `python_minor` is mapped with offline_suite_for, so the tag names the CPython actually
    installed, e.g. "3.10" -> "{prefix}/base:python3.11-bookworm".
    """
    suite, actual_minor = offline_suite_for(python_minor)
    final_tag = offline_base_tag(settings, actual_minor, suite)
    if _get_image(client, final_tag) is not None:
        return final_tag

    lock_path = settings.home / "locks" / f"base-{suite}.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with _exclusive_lock(lock_path, log, suite):
        # Another build may have made it while this one waited for the lock.
        if _get_image(client, final_tag) is not None:
            log(detail(f"{final_tag} was built meanwhile by another build; reusing it"))
            return final_tag
        _build_locked(client, suite, actual_minor, final_tag, log, settings)
    return final_tag


# --------------------------------------------------------------------------------------------
# The offline build itself


def _build_locked(
    client: docker.DockerClient,
    suite: str,
    python_minor: str,
    final_tag: str,
    log: LogSink,
    settings: _Settings,
) -> None:
    if shutil.which("debootstrap", path=IMAGE_ENV["PATH"]) is None:
        raise BaseImageUnavailable(
            "no registry is reachable and debootstrap is not installed, so Spaceport cannot "
            "build its own Python base image: install debootstrap (apt-get install debootstrap) "
            f"on the build host, or load python:{python_minor}-slim with `docker load`"
        )
    if os.geteuid() != 0:
        raise BaseImageUnavailable(
            "no registry is reachable and building Spaceport's own Python base image needs root "
            "(debootstrap): run the build worker as root once, or load "
            f"python:{python_minor}-slim with `docker load`"
        )

    tmp_root = settings.home / "tmp"
    tmp_root.mkdir(parents=True, exist_ok=True)
    # We hold the suite's lock, so leftovers of the same suite can only be from a build that
    # was killed; clear them so they do not pile up (each is ~300 MB).
    for stale in tmp_root.glob(f"rootfs-{suite}-*"):
        _remove_tree(stale, log)

    log(
        step(
            f"Building Spaceport's Python {python_minor} base from Debian {suite} packages "
            f"(no registry reachable; takes about a minute, once)"
        )
    )
    started = time.monotonic()
    # Absolute: debootstrap chroots into it, and the mount check compares real paths.
    workdir = Path(tempfile.mkdtemp(prefix=f"rootfs-{suite}-", dir=tmp_root)).resolve()
    rootfs = workdir / "rootfs"
    try:
        _debootstrap(suite, rootfs, settings.debian_mirror, log)
        # debootstrap mounts proc/sys inside the target; anything still mounted would end up
        # in the tarball (and make the clean-up walk into the host's /proc).
        if _mounts_under(rootfs) and not _unmount_all(rootfs, log):
            raise BaseImageUnavailable(
                f"file systems are still mounted under {rootfs} after debootstrap; "
                "unmount them and retry the build"
            )
        _prepare_rootfs(rootfs, log)
        image_id = _import_rootfs(client, rootfs, suite, python_minor)
        repository, tag = parse_repository_tag(final_tag)
        client.images.get(image_id).tag(repository, tag)
        size_mb = client.images.get(final_tag).attrs.get("Size", 0) / 1e6
        log(detail(f"built {final_tag} ({size_mb:.0f} MB) in {time.monotonic() - started:.0f} s"))
    finally:
        _remove_tree(workdir, log)


def _debootstrap(suite: str, rootfs: Path, mirror: str, log: LogSink) -> None:
    command = [
        "debootstrap",
        "--variant=minbase",
        f"--include={DEBOOTSTRAP_PACKAGES}",
        suite,
        str(rootfs),
        mirror,
    ]
    env = dict(os.environ)
    # debootstrap calls chroot/mknod and runs maintainer scripts: it needs the sbin dirs and a
    # locale that exists in a fresh rootfs.
    env["PATH"] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    env.update(LC_ALL="C", LANG="C", LANGUAGE="C", DEBIAN_FRONTEND="noninteractive")
    log(detail("$ " + " ".join(command)))
    hidden: deque[str] = deque(maxlen=10)
    proc = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=env,
        text=True,
        errors="replace",
        # The image must be world-readable whatever umask the worker runs with.
        umask=0o022,
        # Own process group, so an interrupted build can stop dpkg & co. too.
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        _stream_debootstrap_output(proc.stdout, log, hidden)
        returncode = proc.wait()
    finally:
        if proc.poll() is None:
            _stop_process_group(proc)
    if returncode != 0:
        # Lines summarised away just before the end may be the ones that explain the failure,
        # and debootstrap writes its tools' errors (wget, dpkg) only to its own log.
        for line in hidden:
            log(detail(line))
        log_tail = _tail(rootfs / "debootstrap" / "debootstrap.log", 15)
        if log_tail:
            log(detail("debootstrap.log ends with:"))
        for line in log_tail:
            log(detail("  " + line))
        raise BaseImageUnavailable(
            f"debootstrap of Debian {suite} failed (exit code {returncode}; see the lines "
            f"above): check that {mirror} is reachable from the build host, or load an official "
            "python image with `docker load`"
        )


def _stream_debootstrap_output(stream: Iterable[str], log: LogSink, hidden: deque[str]) -> None:
    """Pass debootstrap's lines on, but per-package ones only every few seconds.

    A shown per-package line ends with "[n]": the how-manyth package of that step it is.
    `hidden` gets the lines left out since the last one shown, for the error report.
    """
    phase = ""
    count = 0
    last_emit = 0.0
    for raw in stream:
        line = raw.rstrip()
        if not line:
            continue
        per_package = _PER_PACKAGE_LINE.match(line)
        if per_package is None:
            log(detail(line))
            hidden.clear()
            continue
        verb = line.split()[1]
        if verb == "Validating":
            hidden.append(line)
            continue  # pairs with the Retrieving line just before it; adds nothing
        now = time.monotonic()
        first_of_phase = verb != phase
        if first_of_phase:
            phase, count = verb, 0
        count += 1
        if first_of_phase or now - last_emit >= _PER_PACKAGE_EVERY_S:
            log(detail(f"{line} [{count}]"))
            hidden.clear()
            last_emit = now
        else:
            hidden.append(line)


def _prepare_rootfs(rootfs: Path, log: LogSink) -> None:
    # mkdtemp-style permissions on "/" would lock the Space's non-root user out of everything.
    os.chmod(rootfs, 0o755)

    # Same shrinking as the official images: ~50 MB of .debs and package lists.
    for pattern in ("var/cache/apt/archives/*.deb", "var/cache/apt/*.bin"):
        for path in rootfs.glob(pattern):
            path.unlink()
    for path in (rootfs / "var/cache/apt/archives/partial", rootfs / "var/lib/apt/lists"):
        if path.is_dir():
            for child in path.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()

    # Debian bookworm and newer ship /usr/bin/pip; bullseye only pip3. The official image has
    # both, and Dockerfiles say `pip install`.
    pip = rootfs / "usr/bin/pip"
    if not os.path.lexists(pip) and (rootfs / "usr/bin/pip3").exists():
        pip.symlink_to("pip3")

    _trust_host_local_cas(rootfs, log)


def _trust_host_local_cas(rootfs: Path, log: LogSink) -> None:
    if not HOST_LOCAL_CA_DIR.is_dir():
        return
    certificates = sorted(p for p in HOST_LOCAL_CA_DIR.rglob("*.crt") if p.is_file())
    if not certificates:
        return
    target = rootfs / "usr/local/share/ca-certificates/spaceport-host"
    target.mkdir(parents=True, exist_ok=True)
    target.chmod(0o755)  # the image's files are world-readable whatever the worker's umask
    for certificate in certificates:
        relative = certificate.relative_to(HOST_LOCAL_CA_DIR)
        copy = target / "_".join(relative.parts)
        shutil.copyfile(certificate, copy)
        copy.chmod(0o644)
    # Run inside the rootfs so the bundle is built from the image's own Mozilla list plus these.
    result = subprocess.run(
        ["chroot", str(rootfs), "update-ca-certificates"],
        capture_output=True,
        text=True,
        env={"PATH": IMAGE_ENV["PATH"], "LC_ALL": "C"},
        check=False,
        umask=0o022,  # the bundle it writes must be readable by the Space's user
    )
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip().splitlines()[-3:]
        raise BaseImageUnavailable(
            "update-ca-certificates failed in the new base image: " + " / ".join(output)
        )
    names = ", ".join(p.name for p in certificates)
    log(detail(f"trusting the host's local CA certificates too: {names}"))


def _import_rootfs(client: docker.DockerClient, rootfs: Path, suite: str, python_minor: str) -> str:
    """`tar -C rootfs -c . | docker import` through the SDK; returns the new image's id.

    tar runs as a subprocess (the tarfile module is several times slower on ~250 MB) and its
    output is streamed to the daemon in 1 MiB chunks. The image is imported untagged and only
    tagged by the caller once tar is known to have succeeded, so a truncated rootfs can never
    sit in the cache under the real tag.
    """
    changes = [f"ENV {key}={value}" for key, value in IMAGE_ENV.items()]
    changes += [
        'CMD ["python3"]',
        f"LABEL org.spaceport.base=offline org.spaceport.suite={suite} "
        f"org.spaceport.python={python_minor}",
    ]
    # tar's stderr goes to a file, not a pipe: a pipe nobody reads while the import runs could
    # fill up and stall tar (e.g. one warning per ignored socket).
    with tempfile.TemporaryFile() as tar_stderr:
        tar = subprocess.Popen(
            ["tar", "-C", str(rootfs), "--numeric-owner", "-c", "."],
            stdout=subprocess.PIPE,
            stderr=tar_stderr,
            stdin=subprocess.DEVNULL,
        )
        assert tar.stdout is not None
        stdout = tar.stdout

        def chunks() -> Iterator[bytes]:
            yield from iter(lambda: stdout.read(1 << 20), b"")

        try:
            response = client.api.import_image_from_stream(chunks(), changes=changes)
        finally:
            stdout.close()
            tar_returncode = tar.wait()
        tar_stderr.seek(0)
        tar_error = tar_stderr.read().decode(errors="replace").strip()[-500:]

    image_id = _imported_image_id(response)
    if tar_returncode != 0:
        with contextlib.suppress(docker.errors.DockerException):
            client.images.remove(image_id, force=True)
        raise BaseImageUnavailable(f"tar of the new base rootfs failed: {tar_error}")
    return image_id


def _imported_image_id(response: str) -> str:
    # The daemon answers with JSON messages, one per line; errors come in-band with HTTP 200.
    image_id = ""
    for line in response.splitlines():
        line = line.strip()
        if not line:
            continue
        message = json.loads(line)
        if message.get("error"):
            raise BaseImageUnavailable(f"docker import of the new base failed: {message['error']}")
        status = str(message.get("status", ""))
        if status.startswith("sha256:"):
            image_id = status
    if not image_id:
        raise BaseImageUnavailable(f"docker import returned no image id: {response[:200]!r}")
    return image_id


# --------------------------------------------------------------------------------------------
# Helpers


def _get_image(client: docker.DockerClient, ref: str) -> Image | None:
    try:
        return client.images.get(ref)
    except docker.errors.ImageNotFound:
        return None


def _describe_local_offline_image(
    image: Image, ref: str, wanted_minor: str | None, log: LogSink
) -> None:
    # A local python:X.Y image may be Spaceport's stand-in from an earlier offline build; say so
    # every time, since it differs from the official image (and maybe in its Python minor).
    labels = image.labels or {}
    if labels.get("org.spaceport.base") != "offline" or wanted_minor is None:
        return  # a real image, or our own {prefix}/base tag used directly: nothing to explain
    suite = labels.get("org.spaceport.suite", "?")
    actual_minor = labels.get("org.spaceport.python", "?")
    log(
        detail(
            f"{ref} is Spaceport's Debian-built equivalent (Python {actual_minor}, Debian {suite})"
        )
    )
    if actual_minor != wanted_minor:
        log(detail(_version_mismatch_warning(ref, wanted_minor, actual_minor, suite)))


def _version_mismatch_warning(ref: str, wanted: str, actual: str, suite: str) -> str:
    return (
        f"WARNING: no Debian suite Spaceport can build offline ships Python {wanted}; {ref} "
        f"will be Python {actual} (Debian {suite}). Use python_version {actual}, or load "
        f"{ref} with `docker load`"
    )


def _short_pull_reason(exc: Exception) -> str:
    reason = str(getattr(exc, "explanation", None) or exc)
    # 'Get "https://registry-1.docker.io/v2/": dial tcp: lookup ...: no such host' -> drop the
    # request part, keep what went wrong.
    reason = re.sub(r'^[A-Za-z]+ "https?://[^"]*": ', "", reason.strip())
    reason = " ".join(reason.split())
    return reason if len(reason) <= 200 else reason[:197] + "..."


def _is_unreachable(reason: str) -> bool:
    lowered = reason.lower()
    return any(marker in lowered for marker in _UNREACHABLE_MARKERS)


def _minor_tuple(minor: str) -> tuple[int, int]:
    major, _, rest = minor.partition(".")
    return int(major), int(rest)


@contextlib.contextmanager
def _exclusive_lock(path: Path, log: LogSink, suite: str) -> Iterator[None]:
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(detail(f"waiting for another build that is making the Debian {suite} base"))
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _stop_process_group(proc: subprocess.Popen[str]) -> None:
    for sig, wait_s in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 10.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def _mounts_under(path: Path) -> list[str]:
    """Mount points at or below `path`, deepest first (the order to unmount them in)."""
    root = os.path.realpath(path)
    found: list[str] = []
    with open("/proc/self/mounts") as mounts:
        for line in mounts:
            fields = line.split()
            if len(fields) < 2:
                continue
            # /proc/self/mounts escapes blanks etc. as octal, e.g. "\040".
            mount_point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), fields[1])
            if mount_point == root or mount_point.startswith(root + "/"):
                found.append(mount_point)
    return sorted(set(found), key=len, reverse=True)


def _unmount_all(path: Path, log: LogSink) -> bool:
    for mount_point in _mounts_under(path):
        done = subprocess.run(["umount", mount_point], capture_output=True, check=False)
        if done.returncode != 0:
            # Lazy unmount detaches it even if a straggling process still has it open.
            subprocess.run(["umount", "-l", mount_point], capture_output=True, check=False)
    left = _mounts_under(path)
    if left:
        log(error(f"could not unmount {', '.join(left)}; unmount them by hand"))
    return not left


def _remove_tree(path: Path, log: LogSink) -> None:
    if not os.path.lexists(path):
        return
    # shutil.rmtree does not stop at mount points: never let it loose on a mounted /proc.
    if not _unmount_all(path, log):
        log(error(f"left {path} in place because file systems are still mounted under it"))
        return
    try:
        shutil.rmtree(path)
    except OSError as exc:
        log(error(f"could not remove {path}: {exc}"))


def _tail(path: Path, lines: int) -> list[str]:
    try:
        with open(path, errors="replace") as handle:
            return [line.rstrip() for line in deque(handle, maxlen=lines)]
    except OSError:
        return []
