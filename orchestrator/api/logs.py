"""Build and run logs as Server-Sent Events, in the shape huggingface_hub's
fetch_space_logs reads: `data: {"data": "<line>", "timestamp": "..."}`.

Followed logs never block the event loop and hold no thread of the shared pool: a build's
log waits on the change feed (Channel.BUILD_LOGS, rung when a batch of lines is stored)
and reads the new lines in a short thread call (builds/logs.py: follow_log_async); a run
log is the backend's own async stream (sandbox: Backend.follow_logs). Both send heartbeats
while silent and end when the client leaves (orchestrator/api/sse.py), within the follower
limits (api/followers.py).

Each event's `timestamp` is when the line was written: for a build log the builder's time
(builds/logs.py keeps it per line), for a run log the backend's (Docker's log timestamps).
huggingface_hub's fetch_space_logs(follow=False) relies on it: it stops at the first event
written after the answer's Date, so a line stamped when it is read could end a replay early.
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator, Callable, Iterable
from datetime import datetime

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from sqlmodel import Session, col, select

from orchestrator.api import followers, sse
from orchestrator.api.deps import current_principal, visible_space
from orchestrator.api.errors import ERROR_RESPONSES
from orchestrator.api.timefmt import hub_time
from orchestrator.builds.logs import follow_entries_async
from orchestrator.builds.runner import now
from orchestrator.core import redaction
from orchestrator.core.auth import Principal
from orchestrator.core.db import get_session
from orchestrator.core.models import Build, Space
from orchestrator.core.redaction import Redactor
from sandbox.backend import Backend, Instance
from sandbox.log_stream import split_timestamp

router = APIRouter(prefix="/api/spaces", responses=ERROR_RESPONSES)
STREAMED = {200: {"content": {"text/event-stream": {}}}}


# A line, or a line with the time it was written (a build log's).
LogItem = str | tuple[str, datetime]


def _event(line: str, mask: Redactor, written: datetime | None = None) -> str:
    stamp = hub_time(written or now())
    return "data: " + json.dumps({"data": mask(line), "timestamp": stamp}) + "\n\n"


async def _framed(lines: AsyncIterator[LogItem], mask: Redactor | None) -> AsyncIterator[str]:
    mask = mask or Redactor()  # platform tokens are masked even with no secrets
    try:
        async for item in lines:
            if isinstance(item, tuple):
                yield _event(item[0], mask, item[1])
            else:
                yield _event(item, mask)
    finally:
        close = getattr(lines, "aclose", None)
        if close is not None:
            await close()


async def _listed(lines: Iterable[str]) -> AsyncIterator[str]:
    for line in lines:
        yield line


async def _written(lines: AsyncIterator[str]) -> AsyncIterator[LogItem]:
    """Lines of `logs(timestamps=True)` with the time each was written."""
    try:
        async for line in lines:
            text, written = split_timestamp(line)
            yield text if written is None else (text, written)
    finally:
        await lines.aclose()  # type: ignore[attr-defined]


def _followed(
    request: Request,
    lines: AsyncIterator[LogItem],
    mask: Redactor | None,
    release: Callable[[], None],
) -> StreamingResponse:
    try:
        return sse.response(sse.with_heartbeats(request, _framed(lines, mask), release))
    except BaseException:
        release()
        raise


async def follow_build_log(build_id: int) -> AsyncIterator[tuple[str, datetime]]:
    """A build's log, old lines and new, until the build has finished: the build pipeline's
    follower (orchestrator/builds/logs.py), woken by the change feed as batches are stored.
    Each line comes with the time it was written. Heartbeats are sse.with_heartbeats'
    business, so it never yields its idle markers."""
    lines = follow_entries_async(build_id, idle_seconds=math.inf)
    try:
        async for line in lines:
            if line is not None:
                yield line
    finally:
        await lines.aclose()


@router.get("/{owner}/{name}/logs/build", response_class=StreamingResponse, responses=STREAMED)
def build_log(
    owner: str,
    name: str,
    request: Request,
    session: Session = Depends(get_session),
    principal: Principal | None = Depends(current_principal),
) -> StreamingResponse:
    """The newest build's log, followed until the build ends."""
    space = visible_space(session, principal, owner, name)
    build = session.exec(
        select(Build).where(Build.space_id == space.id).order_by(col(Build.id).desc())
    ).first()
    if build is None or build.id is None:
        return sse.empty()
    release = followers.take_slot(request, space)
    # Stored masked already; masked again for secrets added since the build ran.
    mask = redaction.for_space(session, space.id)
    return _followed(request, follow_build_log(build.id), mask, release)


def run_instance(space: Space, instances: list[Instance]) -> Instance | None:
    """The instance whose log matters: the newest revision's (the one starting or crashed),
    else the one serving."""
    # By uid: a Space that got a deleted one's row number never sees the old one's log.
    mine = [i for i in instances if i.space_id == space.uid]
    newest = [i for i in mine if i.sha == space.built_sha]
    pool = newest or mine
    return max(pool, key=lambda i: i.started_at or now()) if pool else None


def backend() -> Backend:
    """The backend whose instances' logs are shown (the tests put an in-memory one here)."""
    from orchestrator.core.backends import reading_backend

    return reading_backend()


@router.get("/{owner}/{name}/logs/run", response_class=StreamingResponse, responses=STREAMED)
def run_log(
    owner: str,
    name: str,
    request: Request,
    tail: int | None = Query(default=None, ge=0),
    follow: bool = Query(default=True),
    session: Session = Depends(get_session),
    principal: Principal | None = Depends(current_principal),
) -> StreamingResponse:
    """The app's stdout and stderr, followed while it runs."""
    space = visible_space(session, principal, owner, name)
    # A follower's place first: one over the limits costs no call to the backend.
    release = followers.take_slot(request, space) if follow else None
    try:
        engine = backend()
        instance = run_instance(space, engine.instances())
        # An app that prints its secrets, or a token a visitor sent it, must not publish
        # them through its log.
        mask = redaction.for_space(session, space.id)
        if instance is None:
            lines: AsyncIterator[str] = _listed(())
        elif release is None:
            lines = _listed(list(engine.logs(instance.id, tail=tail, timestamps=True)))
        else:
            lines = engine.follow_logs(instance.id, tail=tail, timestamps=True)
        items = _written(lines)
        if release is None:
            return sse.response(_framed(items, mask))
        return _followed(request, items, mask, release)
    except BaseException:
        if release:
            release()
        raise
