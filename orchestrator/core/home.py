"""$SPACEPORT_HOME: private to the user running Spaceport, and held by one `up` at a time.

The home holds the database (with build logs), the keys that encrypt secrets and sign
tokens, every Space's repository and LFS objects. Other users of the machine get nothing:
the home is 0700, and its files 0600 (new ones through the umask every `spaceport`
command sets, older ones through :func:`make_private`).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
from pathlib import Path
from typing import IO

# Files only their owner may read or write; directories only their owner may enter.
UMASK = 0o077
LOCK_FILE = "up.lock"


def set_umask() -> None:
    os.umask(UMASK)


def make_private(home: Path, sqlite_db: Path | None = None) -> None:
    """Create the home if needed and take group and other access away from it, from the
    files directly in it (database, keys, schedules, ...), from a SQLite database kept
    elsewhere (and its -wal, -shm and -journal files: SQLite gives them the database's
    mode) and from the log files under logs/."""
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    _restrict(home)
    files = [p for p in home.iterdir() if p.is_file() and not p.is_symlink()]
    logs = home / "logs"
    if logs.is_dir():
        _restrict(logs)
        files += [p for p in logs.iterdir() if p.is_file() and not p.is_symlink()]
    if sqlite_db is not None:
        files += [sqlite_db.with_name(sqlite_db.name + s) for s in ("", "-wal", "-shm", "-journal")]
    for path in files:
        with contextlib.suppress(FileNotFoundError):
            _restrict(path)


def _restrict(path: Path) -> None:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        path.chmod(mode & 0o700)


class HomeBusy(RuntimeError):
    pass


class UpLock:
    """An exclusive lock on the home, held for the life of `spaceport up`. The kernel
    drops it when the process ends however it ends (kill -9 included), so a stale lock
    never blocks the next start. It records the holder's pid for the error message."""

    def __init__(self, home: Path) -> None:
        self.path = home / LOCK_FILE
        self._file: IO[str] | None = None

    def acquire(self) -> None:
        handle = open(self.path, "a+")  # noqa: SIM115 - held until release
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise HomeBusy(
                f"another `spaceport up` (pid {holder}) is already running on {self.path.parent}; "
                "stop it first, or give this one its own SPACEPORT_HOME"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._file = handle

    def release(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
