"""When a Space sleeps, how deeply, and when it wakes: pure rules, so each has a unit test
(tests/unit/test_sleep_rules.py). The reconciler (orchestrator/controller/reconciler.py)
gathers the facts and carries the verdict out through the backend.

A Space that had no visitor traffic for its sleep time (the owner's, else its tier's
`default_sleep_seconds`; None: it never sleeps) first sleeps lightly: its instance is
frozen (`Backend.freeze`, Docker's cgroup freezer), which gives its CPU back at once and
keeps its memory, so a visit wakes it in milliseconds. After `deep_after` seconds, or at
once when a Space waits for the room it holds (memory pressure), or where the backend
cannot freeze (Kubernetes), it sleeps deeply: its instance is stopped, and a visit starts
it again from its built image. A visit after it fell asleep (the gateway's activity row
moving past `since`) or an owner's change of its spec wakes it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta

from orchestrator.core.models import Stage


class Depth(enum.StrEnum):
    LIGHT = "light"  # frozen: CPU given back, memory kept; wakes in milliseconds
    DEEP = "deep"  # stopped: everything given back; wakes by starting again


@dataclass(frozen=True)
class SleepFacts:
    now: datetime
    sleep_seconds: int | None  # `sleep_seconds_of`; None: never sleeps
    serving: bool  # the desired revision answers (only a serving Space falls asleep)
    last_active: datetime | None  # the latest of: last traffic, start, last wake
    last_seen: datetime | None = None  # the last traffic a gateway wrote down
    depth: Depth | None = None  # how it sleeps now (status)
    since: datetime | None = None  # since when it sleeps (status)
    spec_changed: bool = False  # the owner changed something since it was last looked at
    deep_after: float = 900.0  # SPACEPORT_DEEP_SLEEP_AFTER_SECONDS
    pressure: bool = False  # a Space waits for room that its deep sleep would free
    can_freeze: bool = True  # the backend can freeze an instance (Docker: yes)


@dataclass(frozen=True)
class SleepVerdict:
    depth: Depth | None  # None: awake
    since: datetime | None
    due: datetime | None = None  # when to look again (the next step falls due)

    @property
    def asleep(self) -> bool:
        return self.depth is not None


AWAKE = SleepVerdict(None, None)


def sleep_seconds_of(owner_seconds: int | None, tier_default: int | None) -> int | None:
    """The owner's sleep time, else the tier's default (48 h for cpu-basic; None for paid
    tiers, which never sleep unless their owner sets a sleep time)."""
    return owner_seconds if owner_seconds is not None else tier_default


def woken(facts: SleepFacts) -> bool:
    """A visit since it fell asleep, or a change of its spec (a push, a restart, a setting)."""
    if facts.depth is None:
        return False
    if facts.spec_changed:
        return True
    return facts.last_seen is not None and facts.since is not None and facts.last_seen > facts.since


def decide(facts: SleepFacts) -> SleepVerdict:
    """Awake, light or deep sleep, and when the next step falls due."""
    if facts.sleep_seconds is None:
        return AWAKE  # never sleeps (and a sleeper whose sleep time was taken off wakes)
    if woken(facts):
        return SleepVerdict(None, None, facts.now + timedelta(seconds=facts.sleep_seconds))
    if facts.depth == Depth.DEEP:
        return SleepVerdict(Depth.DEEP, facts.since)  # until a visit: nothing to time
    if facts.depth == Depth.LIGHT:
        since = facts.since or facts.now
        deep_at = since + timedelta(seconds=facts.deep_after)
        if not facts.can_freeze or facts.pressure or facts.now >= deep_at:
            return SleepVerdict(Depth.DEEP, since)
        return SleepVerdict(Depth.LIGHT, since, deep_at)
    if not facts.serving:
        return AWAKE  # starting, building, failed: its idle time counts once it serves
    last = facts.last_active or facts.now
    due = last + timedelta(seconds=facts.sleep_seconds)
    if facts.now < due:
        return SleepVerdict(None, None, due)
    light = facts.can_freeze and facts.deep_after > 0 and not facts.pressure
    return SleepVerdict(Depth.LIGHT if light else Depth.DEEP, facts.now)


def sleep_stage(depth: Depth, custom_sleep_time: bool) -> Stage:
    """SLEEPING, except a deep sleeper whose owner set its sleep time: STOPPED, as on the
    Hub (a light sleeper is SLEEPING either way: it wakes as fast as a running one)."""
    if depth == Depth.DEEP and custom_sleep_time:
        return Stage.STOPPED
    return Stage.SLEEPING


def idle_seconds(facts: SleepFacts) -> float:
    """How long it had no traffic when it fell asleep (for the space.slept event)."""
    if facts.last_active is None:
        return 0.0
    return max((facts.now - facts.last_active).total_seconds(), 0.0)
