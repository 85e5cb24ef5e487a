"""Build and run logs as Server-Sent Events, in the shape huggingface_hub's
fetch_space_logs reads: `data: {"data": "<line>", "timestamp": "..."}`."""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator, Callable, Iterator

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from sqlmodel import Session, col, select

from orchestrator.api import followers
from orchestrator.api.deps import current_principal, visible_space
from orchestrator.api.timefmt import hub_time
from orchestrator.builds.runner import follow_log, now
from orchestrator.core import redaction
from orchestrator.core.auth import Principal
from orchestrator.core.db import get_session
from orchestrator.core.models import Build, Space
from orchestrator.core.redaction import Redactor
from sandbox.backend import Instance

router = APIRouter(prefix="/api/spaces")


def _event(line: str, mask: Redactor | None) -> str:
    line = (mask or Redactor())(line)  # platform tokens are masked even with no secrets
    return "data: " + json.dumps({"data": line, "timestamp": hub_time(now())}) + "\n\n"


def _sse(lines: Iterator[str], mask: Redactor | None = None) -> Iterator[str]:
    for line in lines:
        yield _event(line, mask)


def _followed(
    request: Request,
    space: Space,
    lines: Callable[[threading.Event], Iterator[str]],
    release: Callable[[], None] | None = None,
) -> AsyncIterator[str]:
    """A followed log, within the follower limits (429 here, before the stream starts;
    `release` when the caller took the place already)."""
    release = release or followers.take_slot(request, space)
    stop = threading.Event()
    try:
        return followers.follow(lines(stop), release, stop)
    except BaseException:
        release()
        raise


async def _events(lines: AsyncIterator[str], mask: Redactor | None) -> AsyncIterator[str]:
    async for line in lines:
        yield _event(line, mask)


def _stream(
    lines: Iterator[str] | AsyncIterator[str], mask: Redactor | None = None
) -> StreamingResponse:
    return StreamingResponse(
        _sse(lines, mask) if isinstance(lines, Iterator) else _events(lines, mask),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.get("/{owner}/{name}/logs/build")
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
        return _stream(iter(()))
    build_id = build.id
    lines = _followed(request, space, lambda stop: follow_log(build_id, stop=stop))
    # Stored masked already; masked again for secrets added since the build ran.
    return _stream(lines, redaction.for_space(session, space.id))


def run_instance(space: Space, instances: list[Instance]) -> Instance | None:
    """The instance whose log matters: the newest revision's (the one starting or crashed),
    else the one serving."""
    # By uid: a Space that got a deleted one's row number never sees the old one's log.
    mine = [i for i in instances if i.space_id == space.uid]
    newest = [i for i in mine if i.sha == space.built_sha]
    pool = newest or mine
    return max(pool, key=lambda i: i.started_at or now()) if pool else None


@router.get("/{owner}/{name}/logs/run")
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
    from orchestrator.core.installation import instance_name
    from sandbox.docker_backend import DockerBackend

    space = visible_space(session, principal, owner, name)
    # A follower's place first: one over the limits costs no call to the Docker Engine.
    release = followers.take_slot(request, space) if follow else None
    try:
        backend = DockerBackend(instance_name())
        instance = run_instance(space, backend.instances())
        if instance is None:
            if release:
                release()
            return _stream(iter(()))
        # An app that prints its secrets, or a token a visitor sent it, must not publish
        # them through its log.
        mask = redaction.for_space(session, space.id)
        if release is None:
            return _stream(backend.logs(instance.id, tail=tail), mask)
        instance_id = instance.id
        lines = _followed(
            request, space, lambda _: backend.logs(instance_id, tail=tail, follow=True), release
        )
        return _stream(lines, mask)
    except BaseException:
        if release:
            release()
        raise
