"""The embedded broker: kombu's SQLAlchemy transport on a SQLite file of its own.

Used when SPACEPORT_BROKER_URL is unset, so one machine needs no extra server. Every
send is an INSERT and every receive an UPDATE inside one SQLite transaction, so several
writers (the API server, Celery beat, the worker) can never leave a half-written message
behind, which kombu's filesystem transport did (the worker crashed on a JSONDecodeError
and the message was gone). The file is `$SPACEPORT_HOME/broker.db`, apart from the
control-plane database, so the worker's polling never contends with the API's writes.

kombu's transport hands every transport option to `create_engine`, which refuses the
ones it does not know (`polling_interval` among them), so the few things tuned here are
set on a subclass instead of through `broker_transport_options`.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kombu.transport import sqlalchemy as kombu_sqla
from sqlalchemy import create_engine, event, inspect, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

# Where Celery finds this transport (celery's `broker_transport`).
TRANSPORT = "orchestrator.builds.embedded_broker:Transport"
# The worker asks for new messages this often when its queue is empty: a queued build
# starts within about this long (kombu's default, 1 s, is felt on every push).
POLLING_INTERVAL_SECONDS = 0.1
# How long a sender waits for another process's transaction before the send fails (and
# Celery retries it). Transactions here last milliseconds.
BUSY_TIMEOUT_SECONDS = 30


def url(path: Path) -> str:
    """The broker URL for Celery, used together with `broker_transport=TRANSPORT`."""
    return f"sqlite:///{path}"


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """One process at a time creates the tables: two CREATE TABLEs racing in different
    processes would fail the loser with "table already exists"."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _engine(database_url: str) -> Engine:
    engine = create_engine(database_url, connect_args={"timeout": BUSY_TIMEOUT_SECONDS})

    @event.listens_for(engine, "connect")
    def _wal(dbapi_connection: Any, _record: Any) -> None:
        # WAL: the worker's polling reads never block a sender, nor a sender a reader.
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    return engine


class Channel(kombu_sqla.Channel):
    def _engine_from_config(self) -> Engine:
        return _engine(self.connection.client.hostname)

    def _open(self) -> Any:
        database = self.connection.client.hostname.removeprefix("sqlite:///")
        with _file_lock(Path(database + ".lock")):
            # Private like the rest of the home, whatever the umask: SQLite gives its -wal
            # and -shm files the database file's mode.
            os.close(os.open(database, os.O_RDWR | os.O_CREAT, 0o600))
            return super()._open()

    def _get_or_create(self, queue: str) -> Any:
        # Two processes declaring the same new queue at once: the loser's INSERT breaks the
        # unique name, which kombu does not expect; the winner's row is the queue.
        try:
            return super()._get_or_create(queue)
        except IntegrityError:
            self.session.rollback()
            return super()._get_or_create(queue)


class Transport(kombu_sqla.Transport):
    Channel = Channel
    polling_interval = POLLING_INTERVAL_SECONDS


def delete_delivered(path: Path) -> int:
    """Drop messages already handed to a worker. kombu only marks them invisible, so
    without this the file grows with every build and housekeeping tick. A message a
    worker took but never finished is not lost by this: its build stays QUEUED and is
    re-sent (orchestrator.builds.state.resend_lost_builds)."""
    if not path.exists():
        return 0
    engine = _engine(url(path))
    try:
        with engine.begin() as connection:
            if not inspect(connection).has_table("kombu_message"):
                return 0
            return connection.execute(text("DELETE FROM kombu_message WHERE visible = 0")).rowcount
    finally:
        engine.dispose()
