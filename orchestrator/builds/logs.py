"""A build's log: written in batches by the worker, followed through the change feed.

The worker's `BuildLog` masks each line (the Space's secrets, anything shaped like a
platform token) and stores them in batches: at most every BATCH_SECONDS, or BATCH_LINES at
once, and the rest when the build ends. Each batch is one transaction that rings
`Channel.BUILD_LOGS` (orchestrator/core/changes.py), so a follower (the pusher's terminal,
the API's SSE) waits on the feed and then reads the new lines with one indexed query
(build_id, id > last seen), instead of polling the database.

Each line keeps the time it was written (`created_at` is taken when the builder logs it, not
when its batch is stored), and the API's SSE sends that time: a slow batch or a follower
that reads the log later sees the build's own timing.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime

from sqlmodel import col, select

from builder.logstyle import error
from orchestrator.core.changes import Channel, feed, ring
from orchestrator.core.db import session_scope
from orchestrator.core.models import Build, BuildLogLine, BuildStatus
from orchestrator.core.redaction import Redactor
from orchestrator.core.settings import get_settings

log = logging.getLogger(__name__)
BATCH_SECONDS = 0.25  # a line waits at most this long before followers can read it
BATCH_LINES = 100  # or this many lines are stored at once
PAGE_LINES = 1000  # most lines one read of a follower takes
RESYNC_SECONDS = 5.0  # a follower reads again after this long without a ring (one missed)


class BuildLog:
    """Writes a build's lines to the store in batches, with the Space's secrets masked.
    Call it with each line; `close()` stores what is left (before the build's end is
    written, so a follower that sees the end has every line)."""

    def __init__(
        self,
        build_id: int,
        secrets: list[str],
        *,
        batch_seconds: float = BATCH_SECONDS,
        batch_lines: int = BATCH_LINES,
    ) -> None:
        self.build_id = build_id
        # Secrets and anything shaped like a platform token (orchestrator/core/redaction.py).
        self.mask = Redactor(secrets)
        self.tail: list[str] = []
        self.stored = 0
        settings = get_settings()
        self._tail_lines = settings.build_log_tail_lines
        self._max_lines = settings.max_build_log_lines
        self._batch_seconds = batch_seconds
        self._batch_lines = batch_lines
        self._pending: list[tuple[str, datetime]] = []  # each line with when it was written
        self._closed = False
        self._changed = threading.Condition()
        self._writer = threading.Thread(
            target=self._write_batches, name=f"build-{build_id}-log", daemon=True
        )
        self._writer.start()

    def __call__(self, line: str) -> None:
        written = datetime.now(UTC)
        line = self.mask(line)
        self.tail = (self.tail + [line])[-self._tail_lines :]
        # A build that prints without end must not fill the database: past the limit one
        # line says so, and the rest is dropped (the tail above still feeds the error).
        self.stored += 1
        if self.stored > self._max_lines + 1:
            return
        if self.stored == self._max_lines + 1:
            line = error(
                f"log truncated: more than {self._max_lines} lines "
                "(SPACEPORT_MAX_BUILD_LOG_LINES); the rest of this build's output is not kept"
            )
        with self._changed:
            if self._closed:
                return  # the build has ended; nothing may follow its end
            self._pending.append((line, written))
            # The first line starts a batch's clock; a full batch goes at once.
            if len(self._pending) in (1, self._batch_lines):
                self._changed.notify()

    def close(self) -> None:
        """Store the lines still waiting; the log takes no more lines after this."""
        with self._changed:
            self._closed = True
            self._changed.notify()
        self._writer.join()

    def __enter__(self) -> BuildLog:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _write_batches(self) -> None:
        while True:
            with self._changed:
                while not self._pending and not self._closed:
                    self._changed.wait()
                # The first line of a batch waits at most batch_seconds for company.
                deadline = time.monotonic() + self._batch_seconds
                while len(self._pending) < self._batch_lines and not self._closed:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._changed.wait(left)
                batch = self._pending[: self._batch_lines]
                del self._pending[: self._batch_lines]
                done = self._closed and not self._pending
            if batch:
                self._store(batch)
            if done:
                return

    def _store(self, lines: list[tuple[str, datetime]]) -> None:
        try:
            with session_scope() as session:
                session.add_all(
                    BuildLogLine(build_id=self.build_id, line=line, created_at=written)
                    for line, written in lines
                )
                ring(session, Channel.BUILD_LOGS)
                session.commit()
        except Exception:  # noqa: BLE001 - a database hiccup costs lines, never the build
            log.warning(
                "build %s: %d log lines not stored", self.build_id, len(lines), exc_info=True
            )


def read_new(build_id: int, after_id: int) -> tuple[list[BuildLogLine], bool]:
    """The build's lines after ``after_id`` (one page) and whether the build had finished
    before they were read (so a finished build's last page is its last)."""
    with session_scope() as session:
        build = session.get(Build, build_id)
        finished = build is None or BuildStatus(build.status).finished
        lines = session.exec(
            select(BuildLogLine)
            .where(BuildLogLine.build_id == build_id, col(BuildLogLine.id) > after_id)
            .order_by(col(BuildLogLine.id))
            .limit(PAGE_LINES)
        ).all()
    return list(lines), finished and len(lines) < PAGE_LINES


def follow_log(
    build_id: int,
    deadline: float | None = None,
    stop: threading.Event | None = None,
    *,
    resync_seconds: float = RESYNC_SECONDS,
) -> Iterator[str]:
    """Yield a build's log lines, old and new, until the build has finished (or the
    time.monotonic() ``deadline`` passes, or ``stop`` is set: the follower left). Between
    reads it waits on the change feed; ``stop`` is noticed within half a second."""
    changes = feed()
    last_id = 0
    stop = stop or threading.Event()

    def over() -> bool:
        return stop.is_set() or (deadline is not None and time.monotonic() >= deadline)

    while not over():
        seen = changes.count(Channel.BUILD_LOGS)
        lines, finished = read_new(build_id, last_id)
        for line in lines:
            last_id = line.id or last_id
            yield line.line
        if finished:
            return
        if len(lines) == PAGE_LINES:
            continue  # more stored already
        resync = time.monotonic() + resync_seconds
        while changes.count(Channel.BUILD_LOGS) == seen and not over():
            left = min(resync, deadline or resync) - time.monotonic()
            if left <= 0:
                break
            changes.wait(Channel.BUILD_LOGS, seen, min(0.5, left))


async def follow_log_async(
    build_id: int,
    *,
    idle_seconds: float = 15.0,
    resync_seconds: float = RESYNC_SECONDS,
) -> AsyncIterator[str | None]:
    """`follow_log` for asyncio code (the API's SSE), never blocking the event loop: it
    waits on the change feed (`Feed.wait_async`) and reads in a worker thread. Yields each
    line as stored (masked by the worker), and ``None`` after ``idle_seconds`` with no new
    line: the caller sends a heartbeat then (an SSE comment) and learns whether the client
    is still there. Ends when the build has finished; close it (``aclose()``, or leave the
    ``async for``) when the client goes away."""
    entries = follow_entries_async(
        build_id, idle_seconds=idle_seconds, resync_seconds=resync_seconds
    )
    try:
        async for entry in entries:
            yield None if entry is None else entry[0]
    finally:
        await entries.aclose()


def written_at(row: BuildLogLine) -> datetime:
    """When the line was written, as an aware UTC time (SQLite hands it back naive)."""
    moment = row.created_at
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


async def follow_entries_async(
    build_id: int,
    *,
    idle_seconds: float = 15.0,
    resync_seconds: float = RESYNC_SECONDS,
) -> AsyncIterator[tuple[str, datetime] | None]:
    """`follow_log_async` with each line's time of writing: (line, written_at) pairs."""
    changes = feed()
    last_id = 0
    quiet_since = time.monotonic()
    while True:
        seen = changes.count(Channel.BUILD_LOGS)
        lines, finished = await asyncio.to_thread(read_new, build_id, last_id)
        for line in lines:
            last_id = line.id or last_id
            yield line.line, written_at(line)
        if lines:
            quiet_since = time.monotonic()
        if finished:
            return
        if len(lines) == PAGE_LINES:
            continue
        resync = time.monotonic() + resync_seconds
        while changes.count(Channel.BUILD_LOGS) == seen:
            now = time.monotonic()
            if now >= resync:
                break
            if now - quiet_since >= idle_seconds:
                quiet_since = now
                yield None
                continue
            wake = min(resync, quiet_since + idle_seconds)
            await changes.wait_async(Channel.BUILD_LOGS, seen, max(0.01, wake - now))
