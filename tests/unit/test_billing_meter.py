"""The meter (orchestrator/billing/metering.py), a pure function: which seconds of a
Space's history are billable, per tier, for each kind of history."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from orchestrator.billing.metering import Happening, MeterState, meter

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
PAID = {"cpu-upgrade", "t4-small", "a10g-small"}


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def stage(seconds: float, to: str) -> Happening:
    return Happening(at(seconds), "stage.changed", {"to": to})


def tier(seconds: float, to: str) -> Happening:
    return Happening(at(seconds), "hardware.requested", {"to": to})


def paid(name: str) -> bool:
    return name in PAID


ON_UPGRADE = MeterState(stage="NO_APP_FILE", tier="cpu-upgrade")

CASES: dict[str, tuple[MeterState, list[Happening], dict[str, float]]] = {
    "starting and running are billed": (
        ON_UPGRADE,
        [stage(10, "APP_STARTING"), stage(20, "RUNNING")],
        {"cpu-upgrade": 50},
    ),
    "building from nothing is not": (
        ON_UPGRADE,
        [stage(5, "BUILDING"), stage(40, "APP_STARTING")],
        {"cpu-upgrade": 20},
    ),
    "rebuilding while it serves is": (
        MeterState(stage="RUNNING", tier="cpu-upgrade"),
        [stage(10, "RUNNING_BUILDING"), stage(30, "RUNNING_APP_STARTING"), stage(40, "RUNNING")],
        {"cpu-upgrade": 60},
    ),
    "sleeping is not": (
        MeterState(stage="RUNNING", tier="cpu-upgrade"),
        [stage(15, "SLEEPING"), stage(45, "RUNNING")],
        {"cpu-upgrade": 30},
    ),
    "paused counts from the owner's pause, not the controller's stage": (
        MeterState(stage="RUNNING", tier="cpu-upgrade"),
        [Happening(at(10), "paused"), stage(12, "PAUSED")],
        {"cpu-upgrade": 10},
    ),
    "stopped and errors are not": (
        MeterState(stage="RUNNING", tier="cpu-upgrade"),
        [stage(10, "RUNTIME_ERROR"), stage(30, "APP_STARTING"), stage(50, "STOPPED")],
        {"cpu-upgrade": 30},
    ),
    "waiting in the line for hardware is not": (
        MeterState(stage="NO_APP_FILE", tier="t4-small"),
        [
            stage(0, "APP_STARTING"),
            Happening(at(0), "hardware.queued", {"hardware": "t4-small"}),
            Happening(at(40), "hardware.granted", {"hardware": "t4-small"}),
            stage(50, "RUNNING"),
        ],
        {"t4-small": 20},
    ),
    "leaving the line without a start stops nothing that ran": (
        MeterState(stage="APP_STARTING", tier="t4-small", waiting=True),
        [Happening(at(30), "hardware.queue_left", {}), stage(30, "PAUSED")],
        {},
    ),
    "a tier change mid-window splits it": (
        MeterState(stage="RUNNING", tier="cpu-upgrade"),
        [tier(20, "t4-small"), stage(20, "RUNNING_APP_STARTING"), stage(25, "RUNNING")],
        {"cpu-upgrade": 20, "t4-small": 40},
    ),
    "a free tier costs nothing": (
        MeterState(stage="RUNNING", tier="cpu-basic"),
        [tier(30, "cpu-upgrade")],
        {"cpu-upgrade": 30},
    ),
    "a deleted Space is billed until it goes": (
        MeterState(stage="RUNNING", tier="cpu-upgrade"),
        [Happening(at(25), "space.deleted")],
        {"cpu-upgrade": 25},
    ),
    "a new Space starts on the tier it was created with": (
        MeterState(),
        [
            Happening(at(0), "space.created", {"hardware": "a10g-small"}),
            stage(30, "APP_STARTING"),
        ],
        {"a10g-small": 30},
    ),
    "events the meter does not read change nothing": (
        MeterState(stage="RUNNING", tier="cpu-upgrade"),
        [Happening(at(10), "secret.set", {"key": "K"}), Happening(at(20), "space.liked")],
        {"cpu-upgrade": 60},
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_billable_seconds(name: str) -> None:
    state, happenings, expected = CASES[name]
    reading = meter(state, happenings, T0, at(60), paid)
    assert reading.seconds == pytest.approx(expected)


def test_the_state_at_the_end_carries_into_the_next_window() -> None:
    first = meter(ON_UPGRADE, [stage(30, "RUNNING")], T0, at(60), paid)
    assert first.state == MeterState(stage="RUNNING", tier="cpu-upgrade")
    second = meter(first.state, [], at(60), at(120), paid)
    assert second.seconds == {"cpu-upgrade": 60}
    assert MeterState.from_json(second.state.to_json()) == second.state


def test_an_event_that_committed_late_counts_from_the_window_start() -> None:
    # Stamped before the window (its transaction committed after the last period was
    # charged): it changes the state from the start, and nothing is charged twice.
    late = meter(
        MeterState(stage="RUNNING", tier="cpu-upgrade"), [stage(-5, "PAUSED")], T0, at(60), paid
    )
    assert late.seconds == {}
    assert late.state.stage == "PAUSED"


def test_naive_times_are_utc() -> None:
    naive = Happening(at(30).replace(tzinfo=None), "stage.changed", {"to": "RUNNING"})
    reading = meter(ON_UPGRADE, [naive], T0.replace(tzinfo=None), at(60), paid)
    assert reading.seconds == {"cpu-upgrade": 30}


def test_the_reading_says_when_billing_began_and_ended_per_tier() -> None:
    reading = meter(
        MeterState(stage="NO_APP_FILE", tier="cpu-upgrade"),
        [stage(10, "RUNNING"), tier(20, "t4-small"), stage(50, "PAUSED")],
        T0,
        at(60),
        paid,
    )
    assert reading.began == {"cpu-upgrade": at(10), "t4-small": at(20)}
    assert reading.until == {"cpu-upgrade": at(20), "t4-small": at(50)}
