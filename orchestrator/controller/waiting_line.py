"""The waiting line for hardware: Spaces that cannot start for lack of room wait per tier,
first come, first served.

A Space's place is when it began waiting (`Space.waiting_since`, a status column the
controller writes with the rest of its status), so a restarted controller reads the same
order back (`load`). Ties (the same instant) go to the lower row id. Each tier has its own
line: a CPU Space never waits behind a GPU one, and a tier that fits is never held up by
another that does not.

The reconciler asks, for a Space about to start, how many of its tier are ahead of it
(`ahead`); it starts only if the room it sees is enough for them and for it, so a Space
later in line never starts first, whatever order the loop looks at them in. The room
itself (the backend's count for the tier, or the host's CPU and memory) is the
reconciler's business; this module keeps the order (touched only by the loop's thread) and
writes the line's events (`record_line`), in the transaction of the status that says so.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlmodel import Session, col, func, select

from orchestrator.core import events
from orchestrator.core.models import Space


@dataclass(frozen=True)
class Place:
    """Where a Space stands: in the line of `hardware` (a tier's name) since `since`."""

    space_id: int
    hardware: str
    since: datetime

    @property
    def key(self) -> tuple[datetime, int]:
        return (self.since, self.space_id)


@dataclass(frozen=True)
class Wait:
    """A Space waiting for hardware: its place in its tier's line and why it waits."""

    place: Place
    position: int  # 1: next
    reason: str  # in plain words, without the position
    detail: str | None = None  # the backend's raw event behind it (a scheduler's message)


def claimed(hardware: str, ahead: int) -> str:
    """Why a Space waits when there is room, but not for it too."""
    spaces = "Space" if ahead == 1 else "Spaces"
    return f"what is free of {hardware} goes first to the {ahead} {spaces} ahead in line"


def _aware(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes of what was stored in UTC.
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class WaitingLine:
    def __init__(self) -> None:
        self._places: dict[int, Place] = {}
        self._keys: dict[str, list[tuple[datetime, int]]] = defaultdict(list)  # sorted

    def load(self, rows: Iterable[tuple[int, str, datetime]]) -> None:
        """The line as the database holds it: (space id, tier, since) of each waiting Space."""
        self._places.clear()
        self._keys.clear()
        for space_id, hardware, since in rows:
            self.put(Place(space_id, hardware, _aware(since)))

    def place_of(self, space_id: int) -> Place | None:
        return self._places.get(space_id)

    def place_for(self, space_id: int, hardware: str, now: datetime) -> Place:
        """Its place if it waits for this tier already, else a new one at the end."""
        place = self._places.get(space_id)
        if place is not None and place.hardware == hardware:
            return place
        return Place(space_id, hardware, now)

    def ahead(self, place: Place) -> int:
        """How many of its tier wait before it (it may not be in the line yet)."""
        keys = self._keys.get(place.hardware, [])
        return bisect.bisect_left(keys, place.key)

    def behind(self, place: Place) -> list[int]:
        """The Spaces after it in its tier's line, first first."""
        keys = self._keys.get(place.hardware, [])
        return [space_id for _, space_id in keys[bisect.bisect_right(keys, place.key) :]]

    def put(self, place: Place) -> None:
        self.remove(place.space_id)
        self._places[place.space_id] = place
        bisect.insort(self._keys[place.hardware], place.key)

    def remove(self, space_id: int) -> Place | None:
        place = self._places.pop(space_id, None)
        if place is not None:
            keys = self._keys[place.hardware]
            index = bisect.bisect_left(keys, place.key)
            if index < len(keys) and keys[index] == place.key:
                del keys[index]
            if not keys:
                del self._keys[place.hardware]
        return place

    def ids(self) -> set[int]:
        return set(self._places)

    def __len__(self) -> int:
        return len(self._places)


def record_line(
    session: Session,
    space: Space,
    was: tuple[str | None, datetime | None, int | None],
    wait: Wait | None,
    left: str | None,
) -> None:
    """The line's events for one look at a Space that was `was` (its waiting_hardware,
    waiting_since, waiting_position) and now waits as `wait` (None: not at all; `left` says
    why when it did not get its hardware): joined, moved (only when its position changed),
    got its hardware, or left without it."""
    hardware, since, position = was
    same = wait is not None and (wait.place.hardware, wait.place.since) == (hardware, since)
    if hardware is not None and since is not None and not same:
        waited = round((datetime.now(UTC) - _aware(since)).total_seconds(), 3)
        if wait is None and left is None:
            kind, data = events.EventKind.HARDWARE_GRANTED, {}
        else:
            reason = left or f"it now waits for {wait.place.hardware}"  # type: ignore[union-attr]
            kind, data = events.EventKind.HARDWARE_QUEUE_LEFT, {"reason": reason}
        events.record(
            session,
            kind,
            events.ACTOR_CONTROLLER,
            space,
            hardware=hardware,
            waited_seconds=waited,
            since=_aware(since),
            **data,
        )
    if wait is None:
        return
    if not same:
        events.record(
            session,
            events.EventKind.HARDWARE_QUEUED,
            events.ACTOR_CONTROLLER,
            space,
            hardware=wait.place.hardware,
            position=wait.position,
            reason=wait.reason,
            detail=wait.detail,
            since=wait.place.since,
        )
    elif position != wait.position:
        events.record(
            session,
            events.EventKind.HARDWARE_QUEUE_MOVED,
            events.ACTOR_CONTROLLER,
            space,
            hardware=wait.place.hardware,
            **{"from": position, "to": wait.position},
        )


def waiting_by_tier(session: Session) -> dict[str, int]:
    """How many Spaces wait in each tier's line, as the controller last wrote their status
    (one grouped count, for pages that say how long a tier's wait is); a tier with no one
    waiting is left out."""
    rows = session.exec(
        select(Space.waiting_hardware, func.count())
        .where(col(Space.waiting_since).is_not(None), col(Space.waiting_hardware).is_not(None))
        .group_by(Space.waiting_hardware)
    ).all()
    return {hardware: count for hardware, count in rows if hardware}
