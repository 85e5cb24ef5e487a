"""One active controller: two would both start the same revision.

* PostgreSQL (controllers on several hosts sharing one database): a session-level advisory
  lock, `pg_try_advisory_lock`, held by a dedicated connection for as long as the
  controller runs. PostgreSQL releases it when that connection ends, so a controller that
  dies (or loses its connection) hands over at once; a standby asks again every
  `STANDBY_SECONDS` and takes over. The holder checks its connection every
  `CHECK_SECONDS` and stops acting the moment it is gone (it may no longer hold the lock).
* SQLite (the embedded default, one machine): an exclusive file lock under
  $SPACEPORT_HOME/locks, released by the kernel when the process dies.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

from orchestrator.core.settings import get_settings

log = logging.getLogger(__name__)
STANDBY_SECONDS = 1.0
CHECK_SECONDS = 5.0
# One lock key per database: the installation's controllers share it, nothing else uses it.
LOCK_KEY = int.from_bytes(hashlib.sha256(b"spaceport:controller").digest()[:8], "big", signed=True)


class Lease:
    """Held leadership; `alive()` says whether it still is (cheap, rate-limited)."""

    def __init__(self, connection: Any = None) -> None:
        self._connection = connection
        self._checked = time.monotonic()
        self._alive = True

    def alive(self) -> bool:
        if self._connection is None or not self._alive:
            return self._alive
        if time.monotonic() - self._checked < CHECK_SECONDS:
            return True
        self._checked = time.monotonic()
        try:
            self._connection.execute("SELECT 1")
        except Exception:  # noqa: BLE001 - connection gone: so is the lock
            log.error("lost the controller lock's connection: stepping down")
            self._alive = False
        return self._alive


@contextmanager
def leadership(stop: threading.Event | None = None) -> Iterator[Lease]:
    """Wait until this process is the active controller, then hold it until the block ends.
    `stop` ends a wait early: the block is then not entered and TimeoutError is raised."""
    url = get_settings().sqlalchemy_url
    if url.startswith("postgresql"):
        with _postgres_lock(url, stop) as lease:
            yield lease
    else:
        with _file_lock(stop) as lease:
            yield lease


@contextmanager
def _postgres_lock(url: str, stop: threading.Event | None) -> Iterator[Lease]:
    import psycopg
    from sqlalchemy.engine import make_url

    dsn = make_url(url).set(drivername="postgresql").render_as_string(False)
    announced = False
    while True:
        if stop is not None and stop.is_set():
            raise TimeoutError("stopped while standing by")
        try:
            connection = psycopg.connect(dsn, autocommit=True)
        except psycopg.OperationalError as exc:
            log.warning("controller lock: database unreachable (%s); retrying", exc)
            _pause(stop)
            continue
        try:
            row = connection.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,)).fetchone()
            if row and row[0]:
                log.info("controller lock taken (PostgreSQL advisory lock)")
                try:
                    yield Lease(connection)
                finally:
                    # Closing the session releases the lock.
                    connection.close()
                return
        except psycopg.Error:
            log.warning("controller lock: query failed; retrying", exc_info=True)
        connection.close()
        if not announced:
            log.info("another controller is active: standing by")
            announced = True
        _pause(stop)


@contextmanager
def _file_lock(stop: threading.Event | None) -> Iterator[Lease]:
    lock_path = get_settings().home / "locks" / "controller.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as lock:
        _flock(lock, stop)
        yield Lease()


def _flock(lock: IO[str], stop: threading.Event | None) -> None:
    announced = False
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if stop is not None and stop.is_set():
                raise TimeoutError("stopped while standing by") from None
            if not announced:
                log.info("another controller is active: standing by")
                announced = True
            _pause(stop)


def _pause(stop: threading.Event | None) -> None:
    if stop is not None:
        stop.wait(STANDBY_SECONDS)
    else:
        time.sleep(STANDBY_SECONDS)
