"""A blocking log iterator (the Docker SDK's is one), read for asyncio code by a thread of
its own, so a followed log never blocks the event loop nor holds a thread of anyio's
shared pool (which every sync route waits on: 40 followers used to hold all 40 of its
threads).

When the async iterator is closed (the client left), the blocking one is closed too, which
ends a read that waits for the next line; the close returns once the thread has ended, so
whoever frees a follower's slot afterwards knows no thread is left behind.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime

QUEUE_LINES = 512  # lines waiting for a slow reader before the thread waits too
JOIN_SECONDS = 5.0  # how long a close waits for a thread stuck in a read


async def in_thread(open_lines: Callable[[], Iterator[str]]) -> AsyncIterator[str]:
    """The lines of `open_lines()`, which is called (it may block: a Docker call) and read
    in a new thread."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[str | None] = asyncio.Queue(maxsize=QUEUE_LINES)
    stop = threading.Event()
    ended: asyncio.Future[None] = loop.create_future()
    opened: list[Iterator[str]] = []

    def put(item: str | None) -> bool:
        try:
            future = asyncio.run_coroutine_threadsafe(queue.put(item), loop)
        except RuntimeError:  # the loop is closed: the server is shutting down
            return False
        while not stop.is_set():
            try:
                future.result(timeout=1)
                return True
            except concurrent.futures.TimeoutError:
                continue
        future.cancel()
        return False

    def finished() -> None:
        if not ended.done():
            ended.set_result(None)

    def pump() -> None:
        try:
            lines = open_lines()
            opened.append(lines)
            if stop.is_set():  # closed while it opened: nobody closed this one
                getattr(lines, "close", lambda: None)()
                return
            for line in lines:
                if stop.is_set() or not put(line):
                    break
        except Exception:  # noqa: BLE001 - a log that fails mid-way just ends
            pass
        finally:
            if not stop.is_set():
                put(None)
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(finished)

    threading.Thread(target=pump, name="log-follower", daemon=True).start()
    try:
        while (line := await queue.get()) is not None:
            yield line
    finally:
        stop.set()
        close = getattr(opened[0], "close", None) if opened else None
        if close is not None:
            # Ends a read that waits for the next line. A generator still running in the
            # thread refuses to close (ValueError); it sees `stop` at its next line instead.
            with contextlib.suppress(ValueError, OSError):
                close()
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(ended), JOIN_SECONDS)


def split_timestamp(line: str) -> tuple[str, datetime | None]:
    """A line of `logs(timestamps=True)` as (text, when it was written); (line, None) when it
    does not start with a timestamp. Docker and Kubernetes print nanoseconds
    (`2026-12-02T07:20:01.123456789Z text`); Python keeps microseconds."""
    stamp, space, text = line.partition(" ")
    if not space or not stamp[:4].isdigit():
        return line, None
    try:
        return text, datetime.fromisoformat(stamp)
    except ValueError:
        return line, None


class ClosableLines:
    """A followed log's lines whose close(), from any thread, ends a read that is waiting
    for the next line, by closing what it reads from (Docker's CancellableStream shuts its
    socket down; a pod log response is closed under the read), so a follower whose client
    left does not hold its thread until the app prints again."""

    def __init__(self, lines: Iterator[str], *closers: Callable[[], object]) -> None:
        self._lines = lines
        self._closers = closers

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        return next(self._lines)

    def close(self) -> None:
        for close in self._closers:
            try:
                close()
            except Exception:  # noqa: BLE001 - already closed, or the socket is gone
                pass
