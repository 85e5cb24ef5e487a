"""Sleep and wake, driven through the controller against the in-memory backend and a real
database (both stacks), with the sleep clock moved by the test instead of waited for: idle
-> light sleep (frozen) -> deep sleep (stopped); a visit to a light sleeper thaws it, to a
deep one starts it again; paid tiers never sleep unless their owner sets a sleep time, and
then go STOPPED when deep; where the backend cannot freeze (Kubernetes) sleep is deep at
once; a Space waiting for room sends the oldest light sleeper deep; a paused Space is never
woken by a visit; and migration 0013 goes down and up."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from alembic import command
from sqlalchemy import inspect

from orchestrator.api.spaces import runtime_json
from orchestrator.controller.loop import Controller
from orchestrator.core import db, events
from orchestrator.core.db import session_scope
from orchestrator.core.models import Space, Stage
from orchestrator.core.status import change_spec
from orchestrator.gateway.activity import request_wake, write_seen
from sandbox.memory_backend import MemoryBackend
from tests.unit.test_controller import (
    kinds,
    new_space,
    row,
    stack,  # noqa: F401 - the fixture
    stage,
    uid,
)

HOURS_48 = 48 * 3600


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> Iterator[MemoryBackend]:
    """The in-memory backend; a test may ask for a subclass (parametrize indirect)."""
    kind = getattr(request, "param", None)
    memory = kind() if kind is not None else MemoryBackend(ready_on_start=True)
    yield memory
    memory.close()


@pytest.fixture
def controller(
    stack: str,  # noqa: F811 - the fixture
    backend: MemoryBackend,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Controller]:
    from orchestrator.core.settings import get_settings

    monkeypatch.setenv("SPACEPORT_DEEP_SLEEP_AFTER_SECONDS", "900")
    get_settings.cache_clear()
    loop = Controller(backend)
    loop.reconciler.sleep.clock = clock
    yield loop
    loop.stop()
    loop.reconciler.close()


def look(controller: Controller) -> None:
    """A full pass (the sleep timers are in the test's clock, not the loop's), then what it
    set off."""
    controller.reconciler.reconcile_once()
    controller.settle()


def running(controller: Controller, name: str, **spec: object) -> int:
    space = new_space(name, **spec)
    look(controller)
    assert stage(space) == Stage.RUNNING
    return space


def visit(clock: Clock, space_id: int) -> None:
    """What the gateway does on a visit to a sleeper (orchestrator/gateway/activity.py)."""
    request_wake(space_id, clock.now)


def set_sleep_time(space_id: int, seconds: int) -> None:
    """What the owner's set_space_sleep_time writes: the spec and its event."""
    with session_scope() as session:
        target = session.get(Space, space_id)
        assert target is not None
        change_spec(session, target, sleep_time_seconds=seconds)
        events.record(session, events.EventKind.SLEEP_TIME_CHANGED, "alice", target)
        session.commit()


def slept(space_id: int) -> list[dict]:
    return [data for kind, data in kinds(space_id) if kind == "space.slept"]


def woke(space_id: int) -> list[dict]:
    return [data for kind, data in kinds(space_id) if kind == "space.woke"]


def test_idle_goes_light_then_deep(
    controller: Controller, backend: MemoryBackend, clock: Clock
) -> None:
    space = running(controller, "idle")
    clock.advance(HOURS_48 - 60)
    look(controller)
    assert stage(space) == Stage.RUNNING  # not yet: 48 h for cpu-basic

    clock.advance(61)
    look(controller)
    asleep = row(space)
    assert (asleep.stage, asleep.sleep_depth) == (Stage.SLEEPING, "light")
    assert asleep.serving_address is None  # the gateway never proxies into a frozen one
    [instance] = backend.of_space(uid(space))
    assert instance.frozen
    assert slept(space)[0]["depth"] == "light" and slept(space)[0]["idle_seconds"] >= HOURS_48
    runtime = runtime_json(asleep)
    assert runtime.sleep is not None and runtime.sleep.depth == "light"

    clock.advance(899)
    look(controller)
    assert row(space).sleep_depth == "light" and backend.of_space(uid(space))

    clock.advance(2)
    look(controller)
    deep = row(space)
    assert (deep.stage, deep.sleep_depth) == (Stage.SLEEPING, "deep")  # free tier: SLEEPING
    assert backend.of_space(uid(space)) == []
    assert [s["depth"] for s in slept(space)] == ["light", "deep"]
    stops = [d for k, d in kinds(space) if k == "instance.stopped"]
    assert stops and stops[-1]["reason"].startswith("deep sleep")


def test_a_visit_thaws_a_light_sleeper(
    controller: Controller, backend: MemoryBackend, clock: Clock
) -> None:
    space = running(controller, "light")
    [before] = backend.of_space(uid(space))
    clock.advance(HOURS_48 + 1)
    look(controller)
    assert row(space).sleep_depth == "light"

    clock.advance(5)
    visit(clock, space)
    controller.settle()  # the wake request's event rings the controller by itself
    awake = row(space)
    assert (awake.stage, awake.sleep_depth) == (Stage.RUNNING, None)
    [after] = backend.of_space(uid(space))
    assert after.id == before.id and not after.frozen  # the same instance: no start
    assert awake.serving_address == after.address
    assert len(backend.started) == 1 and len(backend.thawed_calls) == 1
    assert woke(space)[0]["from"] == "light"

    clock.advance(3600)  # the visit counts as activity: asleep again only after 48 h
    look(controller)
    assert row(space).sleep_depth is None


def test_a_visit_starts_a_deep_sleeper_again(
    controller: Controller, backend: MemoryBackend, clock: Clock
) -> None:
    space = running(controller, "deep")
    clock.advance(HOURS_48 + 1)
    look(controller)
    clock.advance(901)
    look(controller)
    assert row(space).sleep_depth == "deep" and backend.of_space(uid(space)) == []

    visit(clock, space)
    controller.settle()
    awake = row(space)
    assert (awake.stage, awake.sleep_depth) == (Stage.RUNNING, None)
    assert len(backend.started) == 2  # started again from its image, nothing built
    assert woke(space)[0]["from"] == "deep"


class SlowStop(MemoryBackend):
    """A stop as the Engine does it: the app exits (SIGTERM: 143) a while before its
    container is gone, and the controller may look at the Space in between (the exit's own
    event wakes it); the stop here waits until the test has had that look."""

    def __init__(self) -> None:
        super().__init__(ready_on_start=True)
        self.exiting = threading.Event()
        self.looked = threading.Event()

    def stop(self, instance_id: str) -> None:
        if instance_id in self.running:
            self._change(instance_id, frozen=False)  # docker stop unpauses a frozen one first
            self.exit(instance_id, code=143)
            self.exiting.set()
            self.looked.wait(10)
        super().stop(instance_id)


@pytest.mark.parametrize("backend", [SlowStop], indirect=True)
def test_a_visit_while_it_is_stopped_for_deep_sleep_starts_it_not_a_runtime_error(
    controller: Controller, clock: Clock
) -> None:
    backend = controller.reconciler.backend
    assert isinstance(backend, SlowStop)
    space = running(controller, "racing")
    set_sleep_time(space, 5)  # the owner's sleep time: deep sleep is STOPPED
    look(controller)
    clock.advance(6)
    look(controller)
    clock.advance(901)
    controller.reconciler.resync()  # deep sleep: its stop begins (not waited for)
    assert backend.exiting.wait(10)
    clock.advance(1)
    visit(clock, space)  # a visit lands while the app exits ...
    controller.reconciler.reconcile([space])  # ... and a look sees it exited: ours, not a crash
    backend.looked.set()
    assert stage(space) != Stage.RUNTIME_ERROR
    controller.settle()
    look(controller)
    awake = row(space)
    assert (awake.stage, awake.sleep_depth, awake.failed_revision) == (Stage.RUNNING, None, None)
    changes = [d["to"] for k, d in kinds(space) if k == "stage.changed"]
    assert "RUNTIME_ERROR" not in changes
    stops = [d for k, d in kinds(space) if k == "instance.stopped"]
    assert len(stops) == 1 and stops[0]["reason"].startswith("deep sleep")


def test_a_visit_before_it_fell_asleep_does_not_wake_it(
    controller: Controller, backend: MemoryBackend, clock: Clock
) -> None:
    space = running(controller, "early")
    clock.advance(HOURS_48 + 1)
    look(controller)
    write_seen({space: clock.now - timedelta(seconds=30)})  # a late batch of a replica
    look(controller)
    assert row(space).sleep_depth == "light"


def test_traffic_keeps_it_awake(controller: Controller, clock: Clock) -> None:
    space = running(controller, "busy")
    for _ in range(3):
        clock.advance(HOURS_48 - 10)
        write_seen({space: clock.now})
        look(controller)
        assert row(space).sleep_depth is None


def test_paid_tiers_never_sleep_unless_the_owner_sets_a_sleep_time(
    controller: Controller, backend: MemoryBackend, clock: Clock
) -> None:
    space = running(controller, "paid", requested_hardware="cpu-upgrade")
    clock.advance(1000 * 24 * 3600)
    look(controller)
    assert stage(space) == Stage.RUNNING

    set_sleep_time(space, 600)
    look(controller)
    clock.advance(601)
    look(controller)
    assert (stage(space), row(space).sleep_depth) == (Stage.SLEEPING, "light")
    clock.advance(901)
    look(controller)
    assert (stage(space), row(space).sleep_depth) == (Stage.STOPPED, "deep")  # custom time
    assert backend.of_space(uid(space)) == []


def test_without_freezing_sleep_is_deep_at_once(
    controller: Controller, backend: MemoryBackend, clock: Clock
) -> None:
    backend.freezable = False  # as on Kubernetes: the Deployment scales to 0
    space = running(controller, "kube")
    clock.advance(HOURS_48 + 1)
    look(controller)
    assert row(space).sleep_depth == "deep" and backend.of_space(uid(space)) == []
    assert backend.frozen_calls == []
    clock.advance(1)
    visit(clock, space)
    controller.settle()
    assert stage(space) == Stage.RUNNING


def test_a_space_waiting_for_room_sends_the_oldest_light_sleeper_deep(
    stack: str,  # noqa: F811 - the fixture
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from orchestrator.core.settings import get_settings

    monkeypatch.setenv("SPACEPORT_DEEP_SLEEP_AFTER_SECONDS", "900")
    get_settings.cache_clear()
    small = MemoryBackend(cpus=64, memory_gib=32, ready_on_start=True)  # two cpu-basic
    controller = Controller(small)
    controller.reconciler.sleep.clock = clock
    try:
        older = running(controller, "older")
        clock.advance(10)
        newer = running(controller, "newer")
        clock.advance(HOURS_48 + 1)
        look(controller)
        assert row(older).sleep_depth == row(newer).sleep_depth == "light"  # memory kept

        third = new_space("third")
        write_seen({third: clock.now})  # its visitor (the test's clock is 48 h ahead)
        look(controller)
        assert stage(third) == Stage.RUNNING
        assert row(older).sleep_depth == "deep" and row(newer).sleep_depth == "light"
        assert slept(older)[-1].get("reason") == "a Space waits for the room it held"
    finally:
        controller.stop()
        controller.reconciler.close()
        small.close()


def test_a_paused_space_is_never_woken_by_a_visit(
    controller: Controller, backend: MemoryBackend, clock: Clock
) -> None:
    space = running(controller, "paused")
    clock.advance(HOURS_48 + 1)
    look(controller)
    clock.advance(1)
    with session_scope() as session:
        target = session.get(Space, space)
        assert target is not None
        change_spec(session, target, paused=True)
        events.record(session, events.EventKind.PAUSED, "alice", target)
        session.commit()
    controller.settle()
    assert (stage(space), row(space).sleep_depth) == (Stage.PAUSED, None)
    visit(clock, space)
    controller.settle()
    assert stage(space) == Stage.PAUSED and backend.of_space(uid(space)) == []


def test_migration_0013_adds_sleep_and_activity_and_goes_back(
    stack: str,  # noqa: F811 - the fixture
) -> None:
    from orchestrator.core.settings import get_settings

    config = db.alembic_config(get_settings().sqlalchemy_url)
    command.downgrade(config, "0012")
    inspector = inspect(db.get_engine())
    assert "space_activity" not in inspector.get_table_names()
    assert "sleep_depth" not in {c["name"] for c in inspector.get_columns("space")}
    command.upgrade(config, "head")
    inspector = inspect(db.get_engine())
    assert "space_activity" in inspector.get_table_names()
    assert {"sleep_depth", "sleep_since"} <= {c["name"] for c in inspector.get_columns("space")}
