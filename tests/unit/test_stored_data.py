"""Stored data protected: secrets encrypted at rest, the home and its files private
(orchestrator/core/secret_store.py, orchestrator/core/home.py, db.migrate). SQLite in a temporary
home; the PostgreSQL case is tests/test_stored_data.py."""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlmodel import select

from orchestrator.core import db, home, secret_store
from orchestrator.core.models import Secret, Space, User
from orchestrator.core.settings import get_settings


def _reset_caches() -> None:
    get_settings.cache_clear()
    db.get_engine.cache_clear()
    secret_store._fernet.cache_clear()


@pytest.fixture
def spaceport_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    path = tmp_path / "home"
    monkeypatch.setenv("SPACEPORT_HOME", str(path))
    monkeypatch.delenv("SPACEPORT_DATABASE_URL", raising=False)
    _reset_caches()
    yield path
    db.get_engine().dispose()
    _reset_caches()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _space(session) -> Space:  # type: ignore[no-untyped-def]
    user = User(name="alice")
    session.add(user)
    session.commit()
    space = Space(owner="alice", name="demo", owner_id=user.id, host="alice-demo")
    session.add(space)
    session.commit()
    return space


def test_a_secret_is_not_in_the_database_file_but_reads_back(spaceport_home: Path) -> None:
    db.migrate()
    with db.session_scope() as session:
        space = _space(session)
        session.add(Secret(space_id=space.id, key="TOKEN", value="hunter2-plaintext"))
        session.commit()
    db.get_engine().dispose()  # checkpoint the WAL, so the file holds everything
    raw = b"".join(p.read_bytes() for p in spaceport_home.glob("spaceport.db*"))
    assert b"hunter2-plaintext" not in raw
    with db.session_scope() as session:
        stored = session.execute(text("SELECT value FROM secret")).scalar_one()
        assert stored.startswith(secret_store.PREFIX)
        assert session.exec(select(Secret)).one().value == "hunter2-plaintext"


def test_plaintext_rows_from_before_are_encrypted_at_migrate(spaceport_home: Path) -> None:
    db.migrate()
    with db.session_scope() as session:
        space = _space(session)
        session.execute(
            text(
                "INSERT INTO secret (space_id, key, value, updated_at) VALUES (:s, 'K', 'old', :t)"
            ),
            {"s": space.id, "t": "2026-01-01 00:00:00"},
        )
        session.commit()
        assert session.exec(select(Secret)).one().value == "old"  # readable before, too
    db.migrate()
    with db.session_scope() as session:
        stored = session.execute(text("SELECT value FROM secret")).scalar_one()
        assert stored.startswith(secret_store.PREFIX) and "old" not in stored
        assert session.exec(select(Secret)).one().value == "old"
    db.migrate()  # idempotent: encrypted rows are left alone
    with db.session_scope() as session:
        assert session.execute(text("SELECT value FROM secret")).scalar_one() == stored


def test_a_foreign_key_file_is_a_clear_error(spaceport_home: Path) -> None:
    db.migrate()
    with db.session_scope() as session:
        space = _space(session)
        session.add(Secret(space_id=space.id, key="K", value="v"))
        session.commit()
    (spaceport_home / secret_store.KEY_FILE).unlink()
    secret_store._fernet.cache_clear()
    secret_store.ensure_key()
    with db.session_scope() as session, pytest.raises(secret_store.SecretKeyError, match="key"):
        session.exec(select(Secret)).one()


def test_home_database_and_key_are_private(spaceport_home: Path) -> None:
    spaceport_home.mkdir(mode=0o755)
    os.chmod(spaceport_home, 0o755)  # an older install, made before this rule
    (spaceport_home / "logs").mkdir()
    log = spaceport_home / "logs" / "up.log"
    log.write_text("x")
    log.chmod(0o644)
    old_umask = os.umask(0o022)  # even when the caller's umask is permissive
    try:
        db.migrate()
        with db.session_scope() as session:
            _space(session)
    finally:
        os.umask(old_umask)
    assert mode(spaceport_home) == 0o700
    assert mode(spaceport_home / secret_store.KEY_FILE) == 0o600
    assert mode(spaceport_home / "spaceport.db") == 0o600
    for extra in ("spaceport.db-wal", "spaceport.db-shm"):
        if (spaceport_home / extra).exists():
            assert mode(spaceport_home / extra) == 0o600
    assert mode(log) == 0o600


def test_processes_starting_at_once_share_one_key(tmp_path: Path) -> None:
    path = tmp_path / "secrets.key"
    keys: list[bytes] = []
    threads = [
        threading.Thread(target=lambda: keys.append(secret_store.ensure_key(path)))
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(keys)) == 1 and mode(path) == 0o600


def test_a_second_up_lock_on_one_home_is_refused(tmp_path: Path) -> None:
    first = home.UpLock(tmp_path)
    first.acquire()
    try:
        with pytest.raises(home.HomeBusy, match=f"pid {os.getpid()}"):
            home.UpLock(tmp_path).acquire()
    finally:
        first.release()
    again = home.UpLock(tmp_path)
    again.acquire()  # free once the holder is gone
    again.release()
