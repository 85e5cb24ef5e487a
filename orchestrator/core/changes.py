"""The change feed: how one process learns, without polling the database, that another one
committed something it cares about.

A writer *rings* a channel in the transaction that makes the change (`ring(session, ...)`);
the ring is heard only once the transaction commits, and never if it rolls back. Each
process has one `Feed` (`feed()`), a thread that hears rings and wakes whoever waits:
threads through `Feed.wait` and asyncio tasks through `Feed.wait_async` (the gateway), so
waiting costs nothing per Space and no query until something changed.

How a ring travels:
* PostgreSQL: `NOTIFY spaceport, '<channel>'` in the writer's transaction, which PostgreSQL
  delivers at commit to every `LISTEN spaceport` connection, on any host.
* SQLite (the embedded default, one machine): after commit the writer rewrites a tiny file
  `$SPACEPORT_HOME/changes/<channel>`; the feed thread stats those files every
  `SPACEPORT_CHANGE_POLL_SECONDS` (a stat, not a query).
* Within the writer's own process, `committed_here` counts the commits, so a reader in
  that process can wait until it has read its own process's writes (the gateway does,
  after a rename through the API); the ring itself travels as above.

A ring says only "something on this channel changed": the waiter then reads what it needs
(the events after the last id it saw, a build's new log lines) with one indexed query.
Rings can be missed (a restart, a dropped connection): waiters pass a timeout and resync.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import os
import select
import threading
import time
from functools import lru_cache
from pathlib import Path

from sqlalchemy import event, text
from sqlalchemy.orm import Session

from orchestrator.core.settings import get_settings

log = logging.getLogger(__name__)
PG_CHANNEL = "spaceport"


class Channel(enum.StrEnum):
    EVENTS = "events"  # a row was appended to the event log (orchestrator/core/events.py)
    BUILD_LOGS = "build-logs"  # a batch of build-log lines was stored


def _is_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def _doorbell(channel: Channel, home: Path | None = None) -> Path:
    return (home or get_settings().home) / "changes" / channel.value


def _ring_file(channel: Channel) -> None:
    path = _doorbell(channel)
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(f".{channel.value}.{os.getpid()}.{threading.get_ident()}")
    scratch.write_text(str(time.time_ns()))
    os.replace(scratch, path)  # atomic: a reader sees the old or the new file, never half


# Per channel, how many transactions of this process that rang it have committed.
_committed_here = dict.fromkeys(Channel, 0)
_committed_lock = threading.Lock()


def committed_here(channel: Channel) -> int:
    """How many of this process's transactions that rang ``channel`` have committed: for
    read-your-writes within a process (the API renames a Space; the next request, at the
    same process's gateway, must already be redirected), a reader compares it with the
    count it had when it last read."""
    return _committed_here[channel]


def ring(session: Session, channel: Channel) -> None:
    """Announce a change on ``channel`` once ``session``'s transaction commits."""
    if _is_postgres(session):
        session.execute(text("SELECT pg_notify(:c, :p)"), {"c": PG_CHANNEL, "p": channel.value})
        session.info["spaceport_rings_postgres"] = True
    pending: set[Channel] = session.info.setdefault("spaceport_rings", set())
    if not pending:
        event.listen(session, "after_commit", _ring_after_commit, once=True)
        event.listen(session, "after_rollback", _forget_rings, once=True)
    pending.add(channel)


def _ring_after_commit(session: Session) -> None:
    channels = session.info.pop("spaceport_rings", set())
    postgres = session.info.pop("spaceport_rings_postgres", False)
    if not channels:
        return
    with _committed_lock:
        for channel in channels:
            _committed_here[channel] += 1
    if postgres:
        return
    for channel in channels:
        try:
            _ring_file(channel)
        except OSError:  # the change is committed; waiters resync on their timeout
            log.warning("could not ring %s", channel.value, exc_info=True)


def _forget_rings(session: Session) -> None:
    session.info.pop("spaceport_rings", None)
    session.info.pop("spaceport_rings_postgres", None)


class Feed:
    """One per process: a thread that hears rings and counts them per channel."""

    def __init__(self, database_url: str, poll_seconds: float, home: Path | None = None) -> None:
        self._url = database_url
        # Read once: a loop that asked the settings each poll could read (and cache) the
        # settings of whatever home the process has moved on to.
        self._home = home or get_settings().home
        self._poll = poll_seconds
        self._counts = {channel: 0 for channel in Channel}
        self._changed = threading.Condition()
        self._loops: dict[asyncio.AbstractEventLoop, asyncio.Event] = {}
        self._closed = threading.Event()
        self._lost = False  # between losing the listener's connection and getting it back
        self._thread = threading.Thread(target=self._run, name="change-feed", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop listening (within a second); for feeds made by tests."""
        self._closed.set()

    def count(self, channel: Channel) -> int:
        """How many rings this process heard on ``channel``: pass it to `wait`."""
        return self._counts[channel]

    def wait(self, channel: Channel, seen: int, timeout: float) -> int:
        """Block until ``channel`` rang after count ``seen`` or ``timeout`` passed."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while self._counts[channel] == seen:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._changed.wait(left)
            return self._counts[channel]

    async def wait_async(self, channel: Channel, seen: int, timeout: float) -> int:
        """`wait` for asyncio code: never blocks the event loop."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._counts[channel] == seen:
            left = deadline - loop.time()
            if left <= 0:
                break
            woken = self._loops.setdefault(loop, asyncio.Event())
            woken.clear()
            if self._counts[channel] != seen:
                break
            try:
                await asyncio.wait_for(woken.wait(), left)
            except TimeoutError:
                break
        return self._counts[channel]

    def _heard(self, channels: set[Channel]) -> None:
        with self._changed:
            for channel in channels:
                self._counts[channel] += 1
            self._changed.notify_all()
        for loop, woken in list(self._loops.items()):
            if loop.is_closed():
                self._loops.pop(loop, None)
                continue
            loop.call_soon_threadsafe(woken.set)

    def _run(self) -> None:
        backoff = 1.0
        while not self._closed.is_set():
            try:
                if self._url.startswith("postgresql"):
                    self._listen_postgres()
                else:
                    self._watch_files()
            except Exception as exc:  # noqa: BLE001 - the database restarting: listen again
                if self._closed.is_set():
                    return
                # Once per outage, not once per retry: a database down for a minute must
                # not flood the log (nor wake every waiter each second).
                if not self._lost:
                    log.warning("change feed lost its connection (%s); retrying", exc)
                self._lost = True
                self._closed.wait(backoff)
                backoff = min(backoff * 2, 10.0)
            else:
                backoff = 1.0

    def _listening(self) -> None:
        """Connected again after an outage: a ring may have been missed meanwhile."""
        if self._lost:
            self._lost = False
            log.info("change feed listening again")
            self._heard(set(Channel))

    def _watch_files(self) -> None:
        def stamp(channel: Channel) -> int:
            try:
                return os.stat(_doorbell(channel, self._home)).st_mtime_ns
            except FileNotFoundError:
                return 0

        stamps = {channel: stamp(channel) for channel in Channel}
        while not self._closed.wait(self._poll):
            rung = set()
            for channel in Channel:
                now = stamp(channel)
                if now != stamps[channel]:
                    stamps[channel] = now
                    rung.add(channel)
            if rung:
                self._heard(rung)

    def _listen_postgres(self) -> None:
        import psycopg
        from sqlalchemy.engine import make_url

        url = make_url(self._url).set(drivername="postgresql").render_as_string(False)
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute(f"LISTEN {PG_CHANNEL}")
            self._listening()
            known = {channel.value: channel for channel in Channel}
            idle = 0
            while not self._closed.is_set():
                ready, _, _ = select.select([connection.fileno()], [], [], 1.0)
                idle = 0 if ready else idle + 1
                if idle >= 30:
                    connection.execute("SELECT 1")  # notices a dead connection
                    idle = 0
                heard = connection.notifies(timeout=0)
                rung = {known[n.payload] for n in heard if n.payload in known}
                if rung:
                    self._heard(rung)


@lru_cache
def feed() -> Feed:
    settings = get_settings()
    return Feed(settings.sqlalchemy_url, settings.change_poll_seconds, settings.home)


def reset_feed() -> None:
    """Close this process's feed, if it made one, and forget it (tests moving between
    homes: a feed left running would keep watching the old one)."""
    if feed.cache_info().currsize:
        feed().close()
    feed.cache_clear()
