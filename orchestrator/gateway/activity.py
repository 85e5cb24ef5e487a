"""What the gateway tells the controller about visitors: when each Space last had traffic
(its sleep clock), and that a sleeping Space was visited (wake it).

On the request path this is a dict write per request, response chunk or websocket frame
(`Activity.seen`): no query, whatever the number of Spaces. A background task writes what
was seen every SPACEPORT_ACTIVITY_FLUSH_SECONDS in one batched upsert, in a thread, into
`space_activity` (one row per Space; each gateway replica writes its own view and the
newest time wins). A visit to a sleeping Space writes its row at once and appends a
`space.wake_requested` event in the same transaction: the event rings the change feed, so
the controller looks at that Space at once and finds the visit past its `sleep_since`.
Both are observations, never spec: the gateway writes no column of the Space row.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime

from sqlalchemy import case
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session

from orchestrator.core import events
from orchestrator.core.db import session_scope
from orchestrator.core.models import Space, SpaceActivity
from orchestrator.core.settings import get_settings

log = logging.getLogger(__name__)
ROWS_PER_UPSERT = 500  # Spaces in one INSERT ... ON CONFLICT statement
# A wake asked this long ago without the Space serving yet is asked again (a lost ring, a
# controller that was restarting).
WAKE_AGAIN_SECONDS = 10.0


def write_seen(seen: dict[int, datetime]) -> None:
    """Upsert each Space's last traffic, never moving it back (another replica, or an
    earlier batch of this one, may have written a later time)."""
    with session_scope() as session:
        _upsert(session, seen)
        session.commit()


def request_wake(space_id: int, at: datetime) -> None:
    """A visit to a sleeping Space: its activity now, and the event that rings the
    controller, in one transaction."""
    with session_scope() as session:
        space = session.get(Space, space_id)
        if space is None:
            return
        _upsert(session, {space_id: at})
        events.record(session, events.EventKind.SPACE_WAKE_REQUESTED, events.ACTOR_GATEWAY, space)
        session.commit()


def _upsert(session: Session, seen: dict[int, datetime]) -> None:
    table = SpaceActivity.__table__  # type: ignore[attr-defined]
    dialect = session.get_bind().dialect.name
    insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    items = sorted(seen.items())  # one lock order for every writer (PostgreSQL deadlocks)
    for start in range(0, len(items), ROWS_PER_UPSERT):
        rows = [{"space_id": k, "last_seen": v} for k, v in items[start : start + ROWS_PER_UPSERT]]
        statement = insert(table).values(rows)
        newer = statement.excluded.last_seen > table.c.last_seen
        session.execute(
            statement.on_conflict_do_update(
                index_elements=["space_id"],
                set_={
                    "last_seen": case(
                        (newer, statement.excluded.last_seen), else_=table.c.last_seen
                    )
                },
            )
        )


class Activity:
    """One per gateway: the traffic it saw since its last flush, and the wakes it asked."""

    def __init__(self, flush_seconds: float | None = None) -> None:
        self.flush_seconds = flush_seconds or get_settings().activity_flush_seconds
        self._seen: dict[int, float] = {}  # Space id -> time.time() of its last traffic
        self._wakes: dict[int, float] = {}  # Space id -> time.monotonic() a wake was asked
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def seen(self, space_id: int) -> None:
        """Traffic for this Space now (O(1); the flusher writes it down)."""
        self._seen[space_id] = time.time()
        loop = asyncio.get_running_loop()
        if self._task is None or self._loop is not loop:  # a test's asyncio.run: a new loop
            self._loop = loop
            self._task = loop.create_task(self._flushing(), name="gateway-activity")

    def waking(self, space_id: int) -> bool:
        """This gateway asked the Space to wake a moment ago (it may be starting now)."""
        asked = self._wakes.get(space_id)
        return asked is not None and time.monotonic() - asked < get_settings().wake_hold_seconds

    def woke(self, space_id: int) -> None:
        self._wakes.pop(space_id, None)

    async def wake(self, space_id: int) -> None:
        """Ask the controller to wake the Space, once (again only after WAKE_AGAIN_SECONDS)."""
        now = time.monotonic()
        asked = self._wakes.get(space_id)
        if asked is not None and now - asked < WAKE_AGAIN_SECONDS:
            return
        self._wakes[space_id] = now
        self._seen.pop(space_id, None)  # written with the request
        try:
            await asyncio.to_thread(request_wake, space_id, datetime.now(UTC))
        except Exception:  # noqa: BLE001 - the next visit asks again
            log.warning("asking Space %s to wake failed", space_id, exc_info=True)
            self._wakes.pop(space_id, None)

    async def flush(self) -> None:
        batch, self._seen = self._seen, {}
        if not batch:
            return
        seen = {k: datetime.fromtimestamp(v, UTC) for k, v in batch.items()}
        try:
            await asyncio.to_thread(write_seen, seen)
        except Exception:  # noqa: BLE001 - kept for the next flush (the database restarting)
            log.warning("writing visitor activity failed", exc_info=True)
            for space_id, at in batch.items():
                self._seen[space_id] = max(at, self._seen.get(space_id, 0.0))

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        await self.flush()

    async def _flushing(self) -> None:
        while True:
            await asyncio.sleep(self.flush_seconds)
            await self.flush()
