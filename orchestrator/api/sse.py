"""Server-Sent Events for followed streams (build and run logs, the event log): a heartbeat
comment while the source is silent, and an end as soon as the client has left.

Nothing here blocks the event loop: a source is an async iterator that waits on the change
feed or on a thread of its own. The heartbeat (`SPACEPORT_LOG_HEARTBEAT_SECONDS`) keeps
proxies from closing a quiet stream, and is when a departed client is noticed
(`request.is_disconnected()`, or the write failing): the source is then closed, which
frees its follower slot.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

from fastapi import Request
from fastapi.responses import StreamingResponse

from orchestrator.core.settings import get_settings

HEARTBEAT = ": heartbeat\n\n"
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def response(chunks: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(chunks, media_type="text/event-stream", headers=HEADERS)


async def _nothing() -> AsyncIterator[str]:
    return
    yield  # an async generator that ends at once


def empty() -> StreamingResponse:
    return response(_nothing())


async def with_heartbeats(
    request: Request,
    chunks: AsyncIterator[str],
    release: Callable[[], None] | None = None,
    seconds: float | None = None,
) -> AsyncIterator[str]:
    """`chunks`, with a heartbeat after each `seconds` of silence; ends (closing `chunks`,
    then calling `release`) when `chunks` ends or the client disconnects."""
    seconds = seconds or get_settings().log_heartbeat_seconds
    source = aiter(chunks)
    pending: asyncio.Task[str] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(anext(source))
            done, _ = await asyncio.wait({pending}, timeout=seconds)
            if not done:
                if await request.is_disconnected():
                    return
                yield HEARTBEAT
                continue
            try:
                chunk = pending.result()
            except StopAsyncIteration:
                return
            finally:
                pending = None
            yield chunk
    finally:
        if pending is not None:
            pending.cancel()
            with contextlib.suppress(BaseException):
                await pending
        close = getattr(source, "aclose", None)
        if close is not None:
            with contextlib.suppress(Exception):
                await close()
        if release is not None:
            release()
