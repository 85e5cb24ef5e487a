"""Stored data protected, against a real `spaceport up`: a secret is nowhere in the database
in plain text (SQLite file or PostgreSQL table) yet reaches the app's environment; the home,
database and keys are private to their user; no process of the platform carries a password
or token in its command line (`ps`). Unit-level cases: tests/unit/test_stored_data.py."""

from __future__ import annotations

import base64
import os
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
import sqlalchemy
from huggingface_hub import HfApi

from sandbox.backend import LABEL_INSTANCE, LABEL_SPACE
from tests import services
from tests.platform import Platform, git, push, sample_checkout
from tests.test_processes import descendants, platform_env

PLAINTEXT = "correct-horse-battery-staple-4711"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def container_env(platform: Platform, space: str) -> list[str]:
    client = docker.from_env()
    labels = [f"{LABEL_INSTANCE}={platform.instance}", f"{LABEL_SPACE}={space}"]
    env: list[str] = []
    for container in client.containers.list(ignore_removed=True, filters={"label": labels}):
        env += container.attrs["Config"]["Env"] or []
    return env


def test_a_secret_is_encrypted_at_rest_and_reaches_the_app(
    platform: Platform, workdir: Path
) -> None:
    token = platform.token("sally")
    push(sample_checkout("static_site", workdir), platform.git_url("sally", "vault", token))
    assert platform.wait_for_stage("sally", "vault")["stage"] == "RUNNING"
    api = HfApi(endpoint=platform.url, token=token)
    api.add_space_secret("sally/vault", "VAULT_KEY", PLAINTEXT)

    deadline = time.monotonic() + 300
    while f"VAULT_KEY={PLAINTEXT}" not in container_env(platform, "sally/vault"):
        assert time.monotonic() < deadline, "the secret never reached the Space's container"
        time.sleep(1)

    url = platform.env.get("SPACEPORT_DATABASE_URL")
    if url is None:  # SQLite: the file itself, its write-ahead log included
        files = [p for p in platform.home.glob("spaceport.db*") if p.is_file()]
        assert files and not any(PLAINTEXT.encode() in p.read_bytes() for p in files)
        url = f"sqlite:///{platform.home}/spaceport.db"
    engine = sqlalchemy.create_engine(url)
    with engine.connect() as connection:
        stored = connection.execute(
            sqlalchemy.text("SELECT value FROM secret WHERE key = 'VAULT_KEY'")
        ).scalar_one()
        if platform.env.get("SPACEPORT_DATABASE_URL"):
            # PostgreSQL: no column of any table holds it (a dump of the database neither).
            rows = connection.execute(
                sqlalchemy.text(
                    "SELECT count(*) FROM secret WHERE value LIKE :p OR key LIKE :p "
                    "OR description LIKE :p"
                ),
                {"p": f"%{PLAINTEXT}%"},
            ).scalar_one()
            assert rows == 0
    engine.dispose()
    assert stored.startswith("fernet:v1:") and PLAINTEXT not in stored
    # Reads still see the value where they need it, and the API never shows it.
    assert PLAINTEXT not in platform.api("/api/spaces/sally/vault/secrets", token).text


def test_the_home_database_and_keys_are_private(platform: Platform) -> None:
    assert mode(platform.home) == 0o700
    for path in platform.home.iterdir():
        if path.is_file():
            assert mode(path) & 0o077 == 0, f"{path.name} is {oct(mode(path))}"
    assert mode(platform.home / "secrets.key") == 0o600
    if "SPACEPORT_DATABASE_URL" not in platform.env:
        for name in ("spaceport.db", "spaceport.db-wal", "spaceport.db-shm"):
            if (platform.home / name).exists():
                assert mode(platform.home / name) == 0o600, name
    for log in (platform.home / "logs").glob("*.log"):
        assert mode(log) == 0o600, log.name


@pytest.fixture
def platform_with_password(docker_engine: None) -> Iterator[tuple[Platform, str]]:
    """A PostgreSQL and Redis stack whose URLs carry a password (the test PostgreSQL
    trusts local connections, so any password is accepted; Redis requires it)."""
    services.require_postgres()
    services.require_redis()
    home = Path(tempfile.mkdtemp(prefix="spaceport-ps-"))
    url, stop_pg = services.start_postgres(home.parent / f"{home.name}-pg")
    password = f"pw-{os.urandom(8).hex()}"
    url = url.replace("://spaceport@", f"://spaceport:{password}@")
    broker_url, redis = start_redis_with_password(password)
    port = services.free_port()
    env = platform_env(home, port) | {
        "SPACEPORT_DATABASE_URL": url,
        "SPACEPORT_BROKER_URL": broker_url,
    }
    platform = Platform(home=home, env=env, port=port)
    try:
        platform.start()
        yield platform, password
    finally:
        platform.stop()
        redis.terminate()
        redis.wait()
        stop_pg()
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(home.parent / f"{home.name}-pg", ignore_errors=True)


def start_redis_with_password(password: str) -> tuple[str, subprocess.Popen[bytes]]:
    """A Redis that wants a password (its own command line is the test's, not Spaceport's);
    the password is given on stdin as a config file, so not even this one shows it."""
    import redis as redis_client

    port = services.free_port()
    server = subprocess.Popen(
        ["redis-server", "-"],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    assert server.stdin is not None
    server.stdin.write(
        f'port {port}\nbind 127.0.0.1\nsave ""\nappendonly no\nrequirepass {password}\n'.encode()
    )
    server.stdin.close()
    url = f"redis://:{password}@127.0.0.1:{port}/0"
    deadline = time.monotonic() + 30
    while True:
        try:
            if redis_client.Redis.from_url(url, socket_connect_timeout=1).ping():
                return url, server
        except redis_client.RedisError:
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.1)


def command_lines(pid: int) -> dict[int, bytes]:
    lines = {}
    for child in descendants(pid) | {pid}:
        try:
            lines[child] = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
    return lines


def test_no_password_or_token_in_any_command_line(
    platform_with_password: tuple[Platform, str], tmp_path: Path
) -> None:
    platform, password = platform_with_password
    (up,) = platform.processes
    admin_token = platform.log_tail(lines=400).split("keep it): ", 1)[1].split()[0]
    token = platform.token("pat")
    repo = sample_checkout("static_site", tmp_path)
    basic = base64.b64encode(f"pat:{token}".encode()).decode()
    git(repo, "config", "http.extraHeader", f"Authorization: Basic {basic}")
    # The push runs git http-backend and the post-receive hook under the server: look at
    # every process while it runs, and after.
    pusher = subprocess.Popen(
        ["git", "push", "-q", platform.git_url("pat", "ps-check"), "main"],
        cwd=repo,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    seen: dict[int, bytes] = {}
    while pusher.poll() is None:
        seen |= command_lines(up.pid)
        time.sleep(0.05)
    seen |= command_lines(up.pid)
    assert pusher.returncode == 0
    assert len(seen) >= 5, seen  # up, api, worker, beat, controller at least
    for secret in (password, token, admin_token):
        leaks = [line for line in seen.values() if secret.encode() in line]
        assert not leaks, leaks
    # The password does travel, by environment, to the processes that need it.
    assert password.encode() in Path(f"/proc/{up.pid}/environ").read_bytes()
