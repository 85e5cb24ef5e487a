"""The reconciler's side of sleep: it gathers a Space's sleep facts (the gateway's activity
row, the status, the backend's freezing), asks `sleep.decide`, and keeps what only this
controller needs to remember: who sleeps lightly (the oldest goes deep first when a Space
waits for room), who is waking (for the space.woke event) and when each woke.

What it decides is carried out by the reconciler (orchestrator/controller/reconciler.py):
the verdict's depth and since are status columns (`sleep_depth`, `sleep_since`), written
with the stage; a light sleeper's instance is frozen, a deep sleeper's stopped.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlmodel import Session

from orchestrator.controller.sleep import (
    Depth,
    SleepFacts,
    SleepVerdict,
    decide,
    idle_seconds,
    sleep_seconds_of,
)
from orchestrator.core.events import EventKind
from orchestrator.core.models import Space, SpaceActivity
from orchestrator.core.settings import get_settings
from sandbox.backend import Backend, Instance
from sandbox.hardware import get_tier

EventData = tuple[EventKind, dict[str, Any]]


def utc(moment: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes for what was written aware: they are UTC."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def last_seen_of(session: Session, space_id: int) -> datetime | None:
    """The last traffic any gateway wrote down for the Space (one primary-key read)."""
    row = session.get(SpaceActivity, space_id)
    return utc(row.last_seen) if row is not None else None


@dataclass(frozen=True)
class Look:
    """One look's sleep facts and verdict, with the events the transition makes."""

    facts: SleepFacts
    verdict: SleepVerdict
    events: list[EventData]


class SleepKeeper:
    def __init__(self, backend: Backend, on_change: Callable[[int], None]) -> None:
        self.backend = backend
        self.on_change = on_change
        self._lock = threading.Lock()
        self._light: dict[int, datetime] = {}  # light sleepers -> since when
        self._pressed: set[int] = set()  # light sleepers asked to go deep for room
        self._waking: dict[int, tuple[str, datetime]] = {}  # id -> (from depth, asked at)
        self._woke_at: dict[int, datetime] = {}  # id -> when it last woke (its idle start)
        self._serving_since: dict[int, datetime] = {}  # id -> first look that saw it serve
        self.clock: Callable[[], datetime] = lambda: datetime.now(UTC)  # tests move it

    def look(
        self,
        session: Session,
        space: Space,
        serving: Instance | None,
        spec_changed: bool,
        *,
        has_instance: bool,
    ) -> Look:
        """`serving`: the desired revision's instance when it answers; `has_instance`: one
        of it is there (frozen or not). Without one a light sleep can only be deep."""
        assert space.id is not None
        now = self.clock()
        seconds = sleep_seconds_of(
            space.sleep_time_seconds, get_tier(space.requested_hardware).default_sleep_seconds
        )
        last_seen = last_seen_of(session, space.id) if seconds is not None else None
        # Its idle time counts from when it began to serve, not from its start: an app
        # slower to start than its sleep time must not fall asleep the moment it answers.
        if serving is not None:
            self._serving_since.setdefault(space.id, now)
        else:
            self._serving_since.pop(space.id, None)
        moments = [last_seen, utc(serving.started_at) if serving else None]
        moments += [self._woke_at.get(space.id), self._serving_since.get(space.id)]
        with self._lock:
            pressed = space.id in self._pressed
        depth = Depth(space.sleep_depth) if space.sleep_depth else None
        facts = SleepFacts(
            now=now,
            sleep_seconds=seconds,
            serving=serving is not None,
            last_active=max((m for m in moments if m is not None), default=None),
            last_seen=last_seen,
            depth=depth,
            since=utc(space.sleep_since),
            spec_changed=spec_changed,
            deep_after=get_settings().deep_sleep_after_seconds,
            pressure=pressed,
            can_freeze=self.backend.can_freeze and has_instance,
        )
        verdict = decide(facts)
        return Look(facts, verdict, self._transition(space, facts, verdict, has_instance))

    def _transition(
        self, space: Space, facts: SleepFacts, verdict: SleepVerdict, has_instance: bool
    ) -> list[EventData]:
        assert space.id is not None
        with self._lock:
            if verdict.depth == Depth.LIGHT and verdict.since is not None:
                self._light[space.id] = verdict.since
            else:
                self._light.pop(space.id, None)
                if verdict.depth is None or not has_instance:  # awake, or its room is free
                    self._pressed.discard(space.id)
        if verdict.depth == facts.depth:
            return []
        if verdict.depth is None:
            assert facts.depth is not None
            asked = facts.last_seen if facts.last_seen and not facts.spec_changed else facts.now
            self._waking[space.id] = (facts.depth.value, max(asked, facts.since or asked))
            self._woke_at[space.id] = facts.now
            return []
        self._waking.pop(space.id, None)
        data = {
            "depth": verdict.depth.value,
            "idle_seconds": round(idle_seconds(facts), 3),
            "sleep_seconds": facts.sleep_seconds,
        }
        if facts.pressure:
            data["reason"] = "a Space waits for the room it held"
        return [(EventKind.SPACE_SLEPT, data)]

    def waking(self, space_id: int) -> bool:
        """Woken, and not serving yet (its stage stays SLEEPING meanwhile)."""
        return space_id in self._waking

    def served(self, space_id: int) -> list[EventData]:
        """The Space serves again: the space.woke event of the wake that led here."""
        waking = self._waking.pop(space_id, None)
        if waking is None:
            return []
        depth, asked = waking
        seconds = max((self.clock() - asked).total_seconds(), 0.0)
        return [(EventKind.SPACE_WOKE, {"from": depth, "seconds": round(seconds, 3)})]

    def press(self) -> None:
        """A Space waits for room: the oldest light sleeper goes deep, one at a time (the
        waiting Space is looked at again once its room is free, and presses again if it
        still does not fit)."""
        with self._lock:
            if self._pressed:
                return  # one is on its way to deep sleep
            candidates = [(since, i) for i, since in self._light.items() if i not in self._pressed]
            if not candidates:
                return
            _, space_id = min(candidates)
            self._pressed.add(space_id)
        self.on_change(space_id)

    def forget(self, space_id: int) -> None:
        with self._lock:
            self._light.pop(space_id, None)
            self._pressed.discard(space_id)
        self._waking.pop(space_id, None)
        self._woke_at.pop(space_id, None)
        self._serving_since.pop(space_id, None)
