"""The event log through the API (docs/events.md): a Space's history, a page at a time or
live as Server-Sent Events, and the whole installation's for admins (an audit).

* `GET /api/spaces/{owner}/{name}/events?after=&limit=&kind=`: events oldest first, and
  a `cursor` to pass as `after` for the next page. Whoever may see the Space may read
  them; anyone else gets the same 404 as for a missing Space.
* `GET /api/spaces/{owner}/{name}/events/stream`: replays from `?after=` (or the
  `Last-Event-ID` a reconnecting EventSource sends), then follows: it waits on the change
  feed (never polling the database), reads new events in a thread, sends a heartbeat
  comment while nothing happens and stops when the client leaves.
* `GET /api/events` and `/api/events/stream`: every Space's events, for admin tokens.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import StreamingResponse
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from orchestrator.api import followers, sse, wire
from orchestrator.api.bodies import MAX_INT
from orchestrator.api.deps import current_principal, require_principal, visible_space
from orchestrator.api.errors import ERROR_RESPONSES, HubError
from orchestrator.api.timefmt import hub_time
from orchestrator.core import events
from orchestrator.core.auth import Principal
from orchestrator.core.changes import Channel, feed
from orchestrator.core.db import get_session, session_scope
from orchestrator.core.models import Event

router = APIRouter(prefix="/api", responses=ERROR_RESPONSES)
DEFAULT_LIMIT = 100
# How long a stream waits on the feed before it reads anyway: rings can be missed (a
# restart, a dropped database connection), so it catches up at least this often.
RESYNC_SECONDS = 30.0
START_WINDOW = 1000  # ids before the newest a stream "from now" checks for open gaps


def event_model(entry: Event) -> wire.Event:
    assert entry.id is not None
    return wire.Event(
        id=entry.id,
        at=hub_time(entry.at),
        kind=entry.kind,
        actor=entry.actor,
        space=entry.space_name,
        space_id=entry.space_uid,
        data=json.loads(entry.data),
    )


def _kinds(asked: list[str]) -> list[str]:
    """`kind` repeated or comma-separated; each must be a kind the log has."""
    kinds = [k.strip() for item in asked for k in item.split(",") if k.strip()]
    known = {kind.value for kind in events.EventKind}
    if unknown := [k for k in kinds if k not in known]:
        raise HubError(400, f"unknown event kind {unknown[0]!r}: one of {', '.join(sorted(known))}")
    return kinds


class Scope:
    """Whose events: one Space's (by row and uid: a row number may be reused by a later
    Space, its uid never is) or, for admins, everyone's."""

    def __init__(self, space_id: int | None = None, space_uid: str | None = None) -> None:
        self.space_id = space_id
        self.space_uid = space_uid

    def read(
        self, after: int, kinds: list[str], limit: int
    ) -> tuple[list[Event], int, float | None]:
        with session_scope() as session:
            return self.read_in(session, after, kinds, limit)

    def read_in(
        self, session: Session, after: int, kinds: list[str], limit: int
    ) -> tuple[list[Event], int, float | None]:
        """The events after `after` up to the settled horizon (events.settled: none that
        commits later is skipped), the cursor to go on from, and when to look again
        without a ring (a gap that may be a rolled-back transaction)."""
        horizon, recheck = events.settled(session, after)
        rows = events.after(
            session,
            after,
            space_id=self.space_id,
            space_uid=self.space_uid,
            kinds=kinds,
            through=horizon,
            limit=limit,
        )
        # A full page goes on after its last row; a short one has read all up to the horizon.
        cursor = (rows[-1].id or after) if len(rows) >= limit else horizon
        return rows, cursor, recheck


def _page(
    session: Session, scope: Scope, after: int, kinds: list[str], limit: int
) -> wire.EventPage:
    rows, cursor, _ = scope.read_in(session, after, kinds, limit)
    return wire.EventPage(events=[event_model(e) for e in rows], cursor=cursor)


def _frame(event: wire.Event) -> str:
    data = event.model_dump_json()
    return f"id: {event.id}\nevent: {event.kind}\ndata: {data}\n\n"


async def follow(scope: Scope, after: int, kinds: list[str]) -> AsyncIterator[str]:
    """Every event of `scope` after `after`, then each new one as the feed rings."""
    changes = feed()
    cursor = after
    while True:
        seen = changes.count(Channel.EVENTS)  # before reading: a ring meanwhile wakes us
        rows, cursor, recheck = await run_in_threadpool(
            scope.read, cursor, kinds, events.PAGE_LIMIT
        )
        for entry in rows:
            yield _frame(event_model(entry))
        if len(rows) == events.PAGE_LIMIT:
            continue  # more are waiting
        wait = RESYNC_SECONDS if recheck is None else min(RESYNC_SECONDS, recheck + 0.1)
        await changes.wait_async(Channel.EVENTS, seen, wait)


def _start(session: Session, after: int | None, last_event_id: str | None) -> int:
    """Where a stream starts: `after`, else the id a reconnecting client last saw, else
    now (only what happens from here on)."""
    if after is not None:
        return after
    if last_event_id and last_event_id.strip().isdigit():
        return min(int(last_event_id), MAX_INT)
    # Now, but not past an event still being committed (a lower id than the newest one:
    # events.settled); the recent window bounds the scan.
    newest = events.newest_id(session)
    return events.settled(session, max(0, newest - START_WINDOW))[0]


def _stream(
    request: Request, scope: Scope, start: int, kinds: list[str], release: Callable[[], None]
) -> StreamingResponse:
    try:
        return sse.response(sse.with_heartbeats(request, follow(scope, start, kinds), release))
    except BaseException:
        release()
        raise


Kinds = Query(default=[], alias="kind", description="Only these kinds (repeat, or commas)")
After = Query(default=None, ge=0, le=MAX_INT, description="Events with an id above this")
Limit = Query(default=DEFAULT_LIMIT, ge=1, le=events.PAGE_LIMIT)


@router.get("/spaces/{owner}/{name}/events", response_model=wire.EventPage)
def space_events(
    owner: str,
    name: str,
    after: int | None = After,
    limit: int = Limit,
    kind: list[str] = Kinds,
    session: Session = Depends(get_session),
    principal: Principal | None = Depends(current_principal),
) -> wire.EventPage:
    """A page of the Space's events, oldest first; page on with `after=<cursor>`."""
    space = visible_space(session, principal, owner, name)
    return _page(session, Scope(space.id, space.uid), after or 0, _kinds(kind), limit)


@router.get(
    "/spaces/{owner}/{name}/events/stream",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
def space_event_stream(
    owner: str,
    name: str,
    request: Request,
    after: int | None = After,
    kind: list[str] = Kinds,
    last_event_id: str | None = Header(default=None, max_length=20),
    session: Session = Depends(get_session),
    principal: Principal | None = Depends(current_principal),
) -> StreamingResponse:
    """The Space's events as Server-Sent Events (`id`, `event`: the kind, `data`: the
    event), live; a reconnecting EventSource resumes after its Last-Event-ID."""
    space = visible_space(session, principal, owner, name)
    kinds = _kinds(kind)
    start = _start(session, after, last_event_id)
    release = followers.take(request, f"space:{space.uid}", f"{space.full_name}'s events")
    return _stream(request, Scope(space.id, space.uid), start, kinds, release)


def _admin(principal: Principal | None) -> Principal:
    caller = require_principal(principal)
    if not caller.is_admin:
        raise HubError(403, "The installation's event log is for admins: use an admin token")
    return caller


@router.get("/events", response_model=wire.EventPage)
def all_events(
    after: int | None = After,
    limit: int = Limit,
    kind: list[str] = Kinds,
    session: Session = Depends(get_session),
    principal: Principal | None = Depends(current_principal),
) -> wire.EventPage:
    """Every Space's events (and the installation's own), for admins: the audit log."""
    _admin(principal)
    return _page(session, Scope(), after or 0, _kinds(kind), limit)


@router.get(
    "/events/stream",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
def all_event_stream(
    request: Request,
    after: int | None = After,
    kind: list[str] = Kinds,
    last_event_id: str | None = Header(default=None, max_length=20),
    session: Session = Depends(get_session),
    principal: Principal | None = Depends(current_principal),
) -> StreamingResponse:
    _admin(principal)
    kinds = _kinds(kind)
    start = _start(session, after, last_event_id)
    release = followers.take(request, "events:all", "the installation's events")
    return _stream(request, Scope(), start, kinds, release)
