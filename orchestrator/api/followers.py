"""Followed log streams, bounded: a few per Space, per client address and in all, each
pumped by its own thread (never anyio's shared pool, which every sync route waits on: 40
followers used to hold all 40 of its threads), and each stopped once its client left.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import AsyncIterator, Callable, Iterator

from fastapi import Request

from orchestrator.api.errors import HubError
from orchestrator.core.limits import TOO_MANY, KeyedLimiter, TooMany
from orchestrator.core.models import Space
from orchestrator.core.settings import get_settings

_followers = KeyedLimiter()
QUEUE_LINES = 512  # lines waiting for a slow reader before the pump waits too


def take_slot(request: Request, space: Space) -> Callable[[], None]:
    """A follower's slot, or a 429 that names the limit reached."""
    settings = get_settings()
    client = request.client.host if request.client else "unknown"
    limits = {
        f"space:{space.uid}": settings.max_log_followers_per_space,
        f"client:{client}": settings.max_log_followers_per_client,
        "all": settings.max_log_followers,
    }
    try:
        return _followers.acquire(limits)
    except TooMany as exc:
        what = {
            "space": (f"{space.full_name}'s logs", "MAX_LOG_FOLLOWERS_PER_SPACE"),
            "client": ("logs from your address", "MAX_LOG_FOLLOWERS_PER_CLIENT"),
            "all": ("logs on this server", "MAX_LOG_FOLLOWERS"),
        }[exc.key.partition(":")[0]]
        raise HubError(
            429,
            f"Too many clients are following {what[0]} (at most {exc.limit} at once, "
            f"SPACEPORT_{what[1]}); close another log stream or try again later",
            TOO_MANY,
        ) from exc


def held(key: str) -> int:
    return _followers.held(key)


async def follow(
    lines: Iterator[str], release: Callable[[], None], stop: threading.Event
) -> AsyncIterator[str]:
    """`lines`, read by a thread of its own. When the client leaves (the response is
    cancelled), `stop` is set and `lines` closed, so the thread ends; the slot is released
    only when the thread has, so a client can't pile up threads by reconnecting."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[str | None] = asyncio.Queue(maxsize=QUEUE_LINES)

    def put(item: str | None) -> bool:
        try:
            future = asyncio.run_coroutine_threadsafe(queue.put(item), loop)
        except RuntimeError:  # the server is shutting down
            return False
        while not stop.is_set():
            try:
                future.result(timeout=1)
                return True
            except concurrent.futures.TimeoutError:
                continue
        future.cancel()
        return False

    def pump() -> None:
        try:
            for line in lines:
                if stop.is_set() or not put(line):
                    break
        except Exception:  # noqa: BLE001 - a log that fails mid-way just ends
            pass
        finally:
            release()
            if not stop.is_set():
                put(None)

    threading.Thread(target=pump, name="log-follower", daemon=True).start()
    try:
        while (line := await queue.get()) is not None:
            yield line
    finally:
        stop.set()
        close = getattr(lines, "close", None)
        if close is not None:
            # Ends a read that waits for the next line. A generator still running in the
            # pump refuses to close (ValueError); it sees `stop` at its next line instead.
            with contextlib.suppress(ValueError):
                close()
