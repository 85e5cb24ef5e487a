"""How long a waiting visitor should expect to wait, from what the event log says past starts
took: the median of the most recent ones, per tier where the tier matters.

Read off the request path: `WaitEstimates.current()` answers from memory at once and, when
its figures are older than REFRESH_SECONDS, reads the log again in a thread (one bounded,
indexed query: the newest RECENT_EVENTS events of the kinds it pairs).
"""

from __future__ import annotations

import asyncio
import json
import logging
import statistics
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlmodel import col, select

from orchestrator.core.db import session_scope
from orchestrator.core.events import EventKind
from orchestrator.core.models import Event, Stage

log = logging.getLogger(__name__)
REFRESH_SECONDS = 60.0
RECENT_EVENTS = 2000  # events read per refresh, newest first
SAMPLES = 20  # most recent durations a median is taken over
KINDS = (
    EventKind.INSTANCE_STARTED,
    EventKind.STAGE_CHANGED,
    EventKind.BUILD_STARTED,
    EventKind.BUILD_ENDED,
    EventKind.HARDWARE_GRANTED,
    EventKind.SPACE_WOKE,
)


@dataclass(frozen=True)
class Medians:
    """Median seconds of: an instance's start until its Space ran, per tier; a build; a
    wait in the hardware line, per tier; a wake, per sleep depth (light, deep)."""

    start: dict[str, float] = field(default_factory=dict)
    build: float | None = None
    hardware_wait: dict[str, float] = field(default_factory=dict)
    wake: dict[str, float] = field(default_factory=dict)

    def wait_seconds(self, doing: str, tier: str, sleep: str | None = None) -> float | None:
        """The expected wait for a Space that is `doing` (visitor_admission.DOING values),
        asleep at depth `sleep` if it is."""
        start = self.start.get(tier)
        if doing == "waking" and sleep in self.wake:
            return self.wake[sleep]
        if doing == "building":
            return None if self.build is None else self.build + (start or 0)
        if doing == "waiting_hardware":
            hardware = self.hardware_wait.get(tier)
            return None if hardware is None else hardware + (start or 0)
        if doing in ("starting", "waking"):
            return start
        return None


def medians_of(rows: Iterable[tuple[str, int | None, float, dict]]) -> Medians:
    """Pairs each start with what ended it. `rows`: (kind, space id, unix time, data) in
    the log's order."""
    started: dict[int, tuple[float, str]] = {}  # Space -> its last instance start, tier
    build_started: dict[object, float] = {}
    starts: dict[str, list[float]] = {}
    builds: list[float] = []
    waits: dict[str, list[float]] = {}
    wakes: dict[str, list[float]] = {}
    for kind, space_id, at, data in rows:
        if kind == EventKind.INSTANCE_STARTED and space_id is not None:
            started[space_id] = (at, str(data.get("hardware", "")))
        elif kind == EventKind.STAGE_CHANGED and data.get("to") == Stage.RUNNING.value:
            if space_id is not None and (begun := started.pop(space_id, None)) is not None:
                starts.setdefault(begun[1], []).append(at - begun[0])
        elif kind == EventKind.BUILD_STARTED:
            build_started[data.get("build_id")] = at
        elif kind == EventKind.BUILD_ENDED and data.get("status") == "succeeded":
            if (begun_at := build_started.pop(data.get("build_id"), None)) is not None:
                builds.append(at - begun_at)
        elif kind == EventKind.HARDWARE_GRANTED:
            seconds = data.get("waited_seconds")
            if isinstance(seconds, int | float):
                waits.setdefault(str(data.get("hardware", "")), []).append(float(seconds))
        elif kind == EventKind.SPACE_WOKE:
            seconds = data.get("seconds")
            if isinstance(seconds, int | float):
                wakes.setdefault(str(data.get("from", "")), []).append(float(seconds))
    return Medians(
        start={tier: _median(values) for tier, values in starts.items()},
        build=_median(builds) if builds else None,
        hardware_wait={tier: _median(values) for tier, values in waits.items()},
        wake={depth: _median(values) for depth, values in wakes.items()},
    )


def _median(values: list[float]) -> float:
    return statistics.median(values[-SAMPLES:])


def read_medians() -> Medians:
    with session_scope() as session:
        query = (
            select(Event.kind, Event.space_id, Event.at, Event.data)
            .where(col(Event.kind).in_([k.value for k in KINDS]))
            .order_by(col(Event.id).desc())
            .limit(RECENT_EVENTS)
        )
        newest_first = session.exec(query).all()
    rows = []
    for kind, space_id, at, data in reversed(newest_first):
        try:
            facts = json.loads(data)
        except ValueError:
            continue
        rows.append((kind, space_id, at.timestamp(), facts if isinstance(facts, dict) else {}))
    return medians_of(rows)


class WaitEstimates:
    def __init__(self) -> None:
        self._medians = Medians()
        self._read_at = float("-inf")
        self._reading: asyncio.Task[None] | None = None

    def current(self) -> Medians:
        """What is known now, never waiting; a stale answer starts a reread."""
        if time.monotonic() - self._read_at > REFRESH_SECONDS and (
            self._reading is None or self._reading.done()
        ):
            self._reading = asyncio.get_running_loop().create_task(self._read())
        return self._medians

    async def _read(self) -> None:
        self._read_at = time.monotonic()  # a failed read is tried again a period later
        try:
            self._medians = await asyncio.to_thread(read_medians)
        except Exception:  # noqa: BLE001 - an estimate is a nicety; never fail a visit
            log.warning("visitor queue: reading past start times failed", exc_info=True)

    async def aclose(self) -> None:
        if self._reading is not None:
            self._reading.cancel()
            await asyncio.gather(self._reading, return_exceptions=True)
