"""The sleep rules (orchestrator/controller/sleep.py), one case at a time: when a Space
falls asleep, how deeply, when it goes deeper and what wakes it."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from orchestrator.controller.sleep import (
    Depth,
    SleepFacts,
    decide,
    idle_seconds,
    sleep_seconds_of,
    sleep_stage,
    woken,
)
from orchestrator.core.models import Stage
from sandbox.hardware import get_tier

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
HOUR = 3600


def ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


AWAKE_IDLE = SleepFacts(now=NOW, sleep_seconds=HOUR, serving=True, last_active=ago(HOUR + 1))


def test_free_cpu_sleeps_after_48_hours_and_paid_tiers_never_unless_asked() -> None:
    assert sleep_seconds_of(None, get_tier("cpu-basic").default_sleep_seconds) == 48 * HOUR
    assert sleep_seconds_of(None, get_tier("cpu-upgrade").default_sleep_seconds) is None
    assert sleep_seconds_of(600, get_tier("cpu-upgrade").default_sleep_seconds) == 600
    assert sleep_seconds_of(600, 48 * HOUR) == 600  # the owner's wins


def test_a_space_that_never_sleeps_stays_awake_however_idle() -> None:
    verdict = decide(replace(AWAKE_IDLE, sleep_seconds=None, last_active=ago(10**7)))
    assert not verdict.asleep and verdict.due is None


def test_an_idle_serving_space_falls_into_light_sleep() -> None:
    verdict = decide(AWAKE_IDLE)
    assert verdict.depth == Depth.LIGHT and verdict.since == NOW


def test_a_busy_space_stays_awake_and_is_looked_at_again_when_its_time_is_up() -> None:
    verdict = decide(replace(AWAKE_IDLE, last_active=ago(60)))
    assert not verdict.asleep
    assert verdict.due == ago(60) + timedelta(seconds=HOUR)


def test_a_space_that_does_not_serve_yet_never_falls_asleep() -> None:
    verdict = decide(replace(AWAKE_IDLE, serving=False))
    assert not verdict.asleep and verdict.due is None


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"can_freeze": False}, "a backend that cannot freeze (Kubernetes)"),
        ({"deep_after": 0}, "no light sleep configured"),
        ({"pressure": True}, "a Space waits for its room"),
    ],
)
def test_straight_to_deep_sleep(change: dict[str, object], why: str) -> None:
    verdict = decide(replace(AWAKE_IDLE, **change))  # type: ignore[arg-type]
    assert verdict.depth == Depth.DEEP, why


def test_a_light_sleeper_goes_deep_after_deep_after_seconds() -> None:
    light = replace(AWAKE_IDLE, depth=Depth.LIGHT, since=ago(100), deep_after=900)
    still = decide(light)
    assert still.depth == Depth.LIGHT and still.due == ago(100) + timedelta(seconds=900)
    deep = decide(replace(light, since=ago(900)))
    assert deep.depth == Depth.DEEP and deep.since == ago(900)  # asleep since the start


def test_memory_pressure_sends_a_light_sleeper_deep_at_once() -> None:
    light = replace(AWAKE_IDLE, depth=Depth.LIGHT, since=ago(1), pressure=True)
    assert decide(light).depth == Depth.DEEP


def test_a_deep_sleeper_stays_deep_with_no_timer() -> None:
    deep = replace(AWAKE_IDLE, depth=Depth.DEEP, since=ago(10**6), serving=False)
    verdict = decide(deep)
    assert verdict.depth == Depth.DEEP and verdict.due is None


@pytest.mark.parametrize("depth", [Depth.LIGHT, Depth.DEEP])
def test_a_visit_after_it_fell_asleep_wakes_it(depth: Depth) -> None:
    asleep = replace(AWAKE_IDLE, depth=depth, since=ago(30), last_seen=ago(31))
    assert not woken(asleep) and decide(asleep).depth == depth  # that visit was before
    visited = replace(asleep, last_seen=ago(1))
    assert woken(visited)
    verdict = decide(visited)
    assert not verdict.asleep and verdict.due == NOW + timedelta(seconds=HOUR)


def test_an_owners_change_wakes_it_without_a_visit() -> None:
    asleep = replace(AWAKE_IDLE, depth=Depth.DEEP, since=ago(30), spec_changed=True)
    assert not decide(asleep).asleep


def test_taking_the_sleep_time_off_wakes_a_sleeper() -> None:
    asleep = replace(AWAKE_IDLE, depth=Depth.LIGHT, since=ago(30), sleep_seconds=None)
    assert not decide(asleep).asleep


def test_an_awake_space_is_never_woken() -> None:
    assert not woken(replace(AWAKE_IDLE, last_seen=NOW, spec_changed=True))


def test_stage_of_a_sleeper() -> None:
    assert sleep_stage(Depth.LIGHT, custom_sleep_time=False) == Stage.SLEEPING
    assert sleep_stage(Depth.LIGHT, custom_sleep_time=True) == Stage.SLEEPING
    assert sleep_stage(Depth.DEEP, custom_sleep_time=False) == Stage.SLEEPING
    assert sleep_stage(Depth.DEEP, custom_sleep_time=True) == Stage.STOPPED


def test_idle_seconds_count_from_the_last_activity() -> None:
    assert idle_seconds(AWAKE_IDLE) == HOUR + 1
    assert idle_seconds(replace(AWAKE_IDLE, last_active=None)) == 0
