"""Helpers that test fixtures use to reach the real services Spaceport depends on.

The rule: a test that needs Docker, PostgreSQL, Redis or Chromium FAILS when the part is
missing under CI=true (CI installs everything through scripts/bootstrap.sh --test, so a
missing part is a broken setup), and is skipped elsewhere. Call :func:`require` for that.

:func:`start_redis` and :func:`start_postgres` start throwaway servers on free loopback
ports, each with its own state, and hand back a URL and a function that stops the server.
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest

START_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 15.0
PG_USER = "spaceport"
PG_DATABASE = "spaceport"
PG_SYSTEM_USER = "postgres"


def under_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() == "true"


def require(part: str, available: bool, how_to_fix: str) -> None:
    """Fail (under CI=true) or skip the calling test when ``part`` is not available."""
    if available:
        return
    if under_ci():
        pytest.fail(f"{part} is required under CI=true but missing: {how_to_fix}", pytrace=False)
    pytest.skip(f"{part} is not available: {how_to_fix}")


def require_postgres() -> None:
    """PostgreSQL's server binaries (and, as root, its system user) are installed."""
    require(
        "PostgreSQL",
        postgres_installed(),
        "apt-get install postgresql (scripts/bootstrap.sh --test)",
    )


def require_redis() -> None:
    require(
        "Redis", redis_installed(), "apt-get install redis-server (scripts/bootstrap.sh --test)"
    )


# --- Docker --------------------------------------------------------------------------------


def docker_available(timeout: float = 5.0) -> bool:
    """True when a Docker Engine answers a ping (DOCKER_HOST, or the default socket)."""
    try:
        import docker

        client = docker.from_env(timeout=timeout)
    except Exception:
        return False
    try:
        return bool(client.ping())
    except Exception:
        return False
    finally:
        client.close()


# --- shared helpers ------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _log_tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _stop_process(proc: subprocess.Popen, timeout: float = STOP_TIMEOUT_SECONDS) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout)


# --- Redis ---------------------------------------------------------------------------------


def redis_installed() -> bool:
    return shutil.which("redis-server") is not None


def start_redis(workdir: Path) -> tuple[str, Callable[[], None]]:
    """Start a redis-server on a free loopback port, keeping nothing on disk.

    Returns ``(url, stop)``. Raises RuntimeError when it does not answer PING in time.
    """
    import redis

    server = shutil.which("redis-server")
    if server is None:
        raise RuntimeError("redis-server not found on PATH")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log_path = workdir / f"redis-{port}.log"
    cmd = [
        server,
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--daemonize", "no",
        "--save", "",
        "--appendonly", "no",
        "--dir", str(workdir),
    ]  # fmt: skip
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=workdir)
    url = f"redis://127.0.0.1:{port}/0"

    def stop() -> None:
        _stop_process(proc)

    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while True:
        if proc.poll() is not None:
            raise RuntimeError(
                f"redis-server exited with {proc.returncode}:\n{_log_tail(log_path)}"
            )
        client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
        try:
            if client.ping():
                return url, stop
        except redis.RedisError:
            pass
        finally:
            client.close()
        if time.monotonic() > deadline:
            stop()
            raise RuntimeError(
                f"redis-server did not answer PING on port {port} within "
                f"{START_TIMEOUT_SECONDS:.0f} s:\n{_log_tail(log_path)}"
            )
        time.sleep(0.05)


# --- PostgreSQL ----------------------------------------------------------------------------


def _pg_version_key(bindir: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", Path(bindir).parent.name)) or (0,)


def postgres_bindir() -> Path | None:
    """Directory holding initdb/postgres/pg_ctl: Debian's newest version, else PATH."""
    debian = sorted(
        (str(Path(p).parent) for p in glob.glob("/usr/lib/postgresql/*/bin/initdb")),
        key=_pg_version_key,
    )
    for bindir in reversed(debian):
        if shutil.which("postgres", path=bindir) and shutil.which("initdb", path=bindir):
            return Path(bindir)
    initdb = shutil.which("initdb")
    if initdb and shutil.which("postgres", path=str(Path(initdb).parent)):
        return Path(initdb).parent
    return None


def _running_as_root() -> bool:
    return os.geteuid() == 0


def postgres_installed() -> bool:
    """PostgreSQL server binaries are there (and, as root, the user to run them as)."""
    if postgres_bindir() is None:
        return False
    if _running_as_root():
        try:
            pwd.getpwnam(PG_SYSTEM_USER)
        except KeyError:
            return False
    return True


def start_postgres(workdir: Path) -> tuple[str, Callable[[], None]]:
    """Start a throwaway PostgreSQL cluster on a free loopback port, with database
    ``spaceport`` owned by superuser ``spaceport`` (trust authentication).

    PostgreSQL refuses to run as root, so as root the cluster belongs to the ``postgres``
    system user and lives in a fresh /tmp directory that user can reach (pytest's own tmp
    dirs may be 0700). Logs go to ``workdir``.

    Returns ``(url, stop)`` with a SQLAlchemy URL (postgresql+psycopg://...).
    """
    import psycopg

    bindir = postgres_bindir()
    if bindir is None:
        raise RuntimeError("PostgreSQL server binaries (initdb, postgres) not found")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)

    as_root = _running_as_root()
    prefix = ["runuser", "-u", PG_SYSTEM_USER, "--"] if as_root else []

    base = Path(tempfile.mkdtemp(prefix="spaceport-pg-"))
    base.chmod(0o755)
    datadir = base / "data"
    sockdir = base / "sock"
    datadir.mkdir(mode=0o700)
    sockdir.mkdir(mode=0o755)
    if as_root:
        owner = pwd.getpwnam(PG_SYSTEM_USER)
        for path in (datadir, sockdir):
            os.chown(path, owner.pw_uid, owner.pw_gid)

    def cleanup_dir() -> None:
        shutil.rmtree(base, ignore_errors=True)

    initdb_log = workdir / "postgres-initdb.log"
    with open(initdb_log, "wb") as log:
        result = subprocess.run(
            [
                *prefix,
                str(bindir / "initdb"),
                "-D", str(datadir),
                "-A", "trust",
                "-U", PG_USER,
                "-E", "UTF8",
                "--no-locale",
                "--no-sync",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=base,
            timeout=120,
        )  # fmt: skip
    if result.returncode != 0:
        cleanup_dir()
        raise RuntimeError(f"initdb failed ({result.returncode}):\n{_log_tail(initdb_log)}")

    port = free_port()
    log_path = workdir / f"postgres-{port}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [
                *prefix,
                str(bindir / "postgres"),
                "-D", str(datadir),
                "-p", str(port),
                "-k", str(sockdir),
                "-c", "listen_addresses=127.0.0.1",
                "-c", "fsync=off",
                "-c", "synchronous_commit=off",
                "-c", "full_page_writes=off",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=base,
        )  # fmt: skip

    stopped = False

    def stop() -> None:
        nonlocal stopped
        if stopped:
            return
        stopped = True
        if proc.poll() is None:
            # Stop through pg_ctl (a fast shutdown, sent to the postmaster itself): runuser
            # answers SIGTERM with a SIGTERM to postgres (a "smart" shutdown that waits for
            # every client) and a SIGKILL 2 s later, which would orphan the backends.
            pg_ctl_stop = [
                *prefix,
                str(bindir / "pg_ctl"), "stop",
                "-D", str(datadir),
                "-m", "fast",
                "-w", "-t", str(int(STOP_TIMEOUT_SECONDS)),
            ]  # fmt: skip
            subprocess.run(
                pg_ctl_stop,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                cwd=base,
                check=False,
            )
            _stop_process(proc)
        cleanup_dir()

    conninfo = f"host=127.0.0.1 port={port} user={PG_USER} dbname=postgres connect_timeout=2"
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while True:
        if proc.poll() is not None:
            stop()
            raise RuntimeError(f"postgres exited with {proc.returncode}:\n{_log_tail(log_path)}")
        try:
            with psycopg.connect(conninfo, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{PG_DATABASE}"')
            break
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                stop()
                raise RuntimeError(
                    f"postgres did not accept connections on port {port} within "
                    f"{START_TIMEOUT_SECONDS:.0f} s:\n{_log_tail(log_path)}"
                ) from None
            time.sleep(0.1)

    return f"postgresql+psycopg://{PG_USER}@127.0.0.1:{port}/{PG_DATABASE}", stop
