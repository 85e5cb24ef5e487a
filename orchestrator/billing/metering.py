"""The meter: what a Space's events say it used, as a pure function (no database, no
clock), so every case is a unit test and the charger only moves it along.

A Space is billable while the controller's stage is APP_STARTING, RUNNING,
RUNNING_APP_STARTING or RUNNING_BUILDING on a paid tier, except while it waits in the line
for hardware (hardware.queued ... hardware.granted / queue_left): nothing runs for it then.
Building from nothing, sleeping, paused, stopped and every error cost nothing. The tier is
the one the owner asked for (space.created, hardware.requested): the controller starts the
new revision on it at once, so billing follows the request; the old tier's instance that
keeps serving while the new one starts is not charged on top.

The owner's pause counts from the `paused` event, not from the controller's stage.changed a
moment later: the owner stopped paying when they asked to.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

BILLABLE_STAGES = frozenset({"APP_STARTING", "RUNNING", "RUNNING_APP_STARTING", "RUNNING_BUILDING"})
DEFAULT_TIER = "cpu-basic"


@dataclass(frozen=True)
class MeterState:
    """What the Space was doing at the meter's last reading."""

    stage: str | None = None  # the controller's stage (None: not known yet)
    tier: str = DEFAULT_TIER  # the tier asked for
    waiting: bool = False  # in the line for hardware
    gone: bool = False  # deleted

    def billable(self, paid: Callable[[str], bool]) -> bool:
        return (
            not self.gone and not self.waiting and self.stage in BILLABLE_STAGES and paid(self.tier)
        )

    def to_json(self) -> dict[str, Any]:
        return {"stage": self.stage, "tier": self.tier, "waiting": self.waiting, "gone": self.gone}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MeterState:
        return cls(
            stage=data.get("stage"),
            tier=data.get("tier") or DEFAULT_TIER,
            waiting=bool(data.get("waiting")),
            gone=bool(data.get("gone")),
        )


@dataclass(frozen=True)
class Happening:
    """One event as the meter reads it: when, what kind, its data."""

    at: datetime
    kind: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Reading:
    """The seconds billable per paid tier within the window, when each tier's billable time
    first began and last ended in it (the window's end while it still runs), and the state
    at the end."""

    seconds: dict[str, float]
    state: MeterState
    began: dict[str, datetime] = field(default_factory=dict)
    until: dict[str, datetime] = field(default_factory=dict)


def apply(state: MeterState, happening: Happening) -> MeterState:
    """The state after one event (kinds the meter does not read leave it as it was)."""
    kind, data = happening.kind, happening.data
    if kind == "space.created":
        return replace(state, stage="NO_APP_FILE", tier=data.get("hardware") or DEFAULT_TIER)
    if kind == "stage.changed":
        stage = data.get("to")
        # RUNNING has the desired revision answering: nothing of it waits any more.
        return replace(state, stage=stage, waiting=state.waiting and stage != "RUNNING")
    if kind == "hardware.requested":
        return replace(state, tier=data.get("to") or state.tier)
    if kind == "hardware.queued":
        return replace(state, waiting=True)
    if kind in ("hardware.granted", "hardware.queue_left"):
        return replace(state, waiting=False)
    if kind == "paused":
        return replace(state, stage="PAUSED")
    if kind == "space.deleted":
        return replace(state, gone=True)
    return state


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def meter(
    state: MeterState,
    happenings: Iterable[Happening],
    start: datetime,
    end: datetime,
    paid: Callable[[str], bool],
) -> Reading:
    """Billable seconds per paid tier in [start, end), from the state at `start` and the
    Space's events since, oldest first. An event stamped before `start` (one that committed
    late) counts from `start`; one after `end` from `end`: a window is never charged twice
    and never goes back."""
    start, end = _utc(start), _utc(end)
    seconds: dict[str, float] = {}
    began: dict[str, datetime] = {}
    until: dict[str, datetime] = {}

    def bill(state: MeterState, since: datetime, to: datetime) -> None:
        if state.billable(paid) and to > since:
            seconds[state.tier] = seconds.get(state.tier, 0.0) + (to - since).total_seconds()
            began.setdefault(state.tier, since)
            until[state.tier] = to

    since = start
    for happening in happenings:
        at = min(max(_utc(happening.at), since), end)
        bill(state, since, at)
        state, since = apply(state, happening), at
    bill(state, since, end)
    return Reading(seconds=seconds, state=state, began=began, until=until)
