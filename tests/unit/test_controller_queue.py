"""The waiting line for hardware, against the in-memory backend counting GPUs per tier (as
the Kubernetes backend does from its nodes) and a real database: first come, first served
per tier whatever order the loop looks at Spaces in, positions in the runtime and events,
a restarted controller keeps the order, a CPU Space never waits behind GPU ones; an
instance the backend cannot place waits (and never times out), one that cannot run is a
runtime error; a deleted Space is forgotten by the backend once; migration 0011."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from alembic import command
from sqlalchemy import inspect

from orchestrator.api.spaces import runtime_json
from orchestrator.controller.loop import Controller
from orchestrator.core import db, events
from orchestrator.core.db import session_scope
from orchestrator.core.models import Space, Stage
from orchestrator.core.settings import get_settings
from sandbox.admission import gpu_room
from sandbox.hardware import get_tier
from sandbox.memory_backend import MemoryBackend
from tests.unit.test_controller import (
    kinds,
    new_space,
    row,
    stack,  # noqa: F401 - the fixture
    stage,
    uid,
)

T4 = "t4-small"
FULL = "waiting for hardware: all 1 T4 GPUs are in use"


@pytest.fixture
def gpu_backend() -> Iterator[MemoryBackend]:
    memory = MemoryBackend(gpus={"T4": 1}, ready_on_start=True)
    yield memory
    memory.close()


def new_controller(backend: MemoryBackend) -> Controller:
    return Controller(backend)


def close(controller: Controller) -> None:
    controller.stop()
    controller.reconciler.close()


def set_paused(space_id: int, paused: bool) -> None:
    from orchestrator.core.status import change_spec

    with session_scope() as session:
        space = session.get(Space, space_id)
        assert space is not None
        change_spec(session, space, paused=paused)
        kind = events.EventKind.PAUSED if paused else events.EventKind.RESTARTED
        events.record(session, kind, "alice", space)
        session.commit()


def line_events(space_id: int) -> list[tuple[str, dict]]:
    return [(k, d) for k, d in kinds(space_id) if k.startswith("hardware.")]


def waiting(space_id: int) -> tuple[int | None, str | None]:
    space = row(space_id)
    return space.waiting_position, space.error_message


@pytest.mark.usefixtures("stack")
def test_gpu_spaces_wait_in_order_and_start_as_gpus_free(gpu_backend: MemoryBackend) -> None:
    controller = new_controller(gpu_backend)
    try:
        first = new_space("first", requested_hardware=T4)
        controller.settle()
        second = new_space("second", requested_hardware=T4)
        third = new_space("third", requested_hardware=T4)
        controller.settle()
        assert stage(first) == Stage.RUNNING
        assert len(gpu_backend.running) == 1  # never more than the one GPU
        assert stage(second) == stage(third) == Stage.APP_STARTING
        assert waiting(second) == (1, f"{FULL} (position 1 in line)")
        assert waiting(third) == (2, f"{FULL} (position 2 in line)")

        # The runtime as the API sends it: the position, and the reason in words.
        shown = runtime_json(row(third)).model_dump(mode="json")
        assert shown["errorMessage"] == f"{FULL} (position 2 in line)"
        assert shown["queue"]["position"] == 2 and shown["queue"]["hardware"] == T4
        assert shown["queue"]["since"].endswith("Z")
        assert "queue" not in runtime_json(row(first)).model_dump(mode="json")

        # A CPU Space is not held up by the GPU line.
        cpu = new_space("cpu")
        controller.settle()
        assert stage(cpu) == Stage.RUNNING
        assert waiting(second)[0] == 1 and waiting(third)[0] == 2

        set_paused(first, True)
        controller.settle()  # its GPU frees: the first in line takes it
        assert stage(first) == Stage.PAUSED
        assert stage(second) == Stage.RUNNING
        assert row(second).waiting_since is None and row(second).waiting_position is None
        assert waiting(third) == (1, f"{FULL} (position 1 in line)")
        assert "queue" not in runtime_json(row(second)).model_dump(mode="json")

        second_events = line_events(second)
        assert [k for k, _ in second_events] == ["hardware.queued", "hardware.granted"]
        queued = second_events[0][1]
        assert queued["position"] == 1 and queued["hardware"] == T4
        assert queued["reason"] == "all 1 T4 GPUs are in use"
        assert second_events[1][1]["waited_seconds"] >= 0
        third_events = line_events(third)
        assert [k for k, _ in third_events] == ["hardware.queued", "hardware.queue_moved"]
        assert third_events[0][1]["position"] == 2
        assert third_events[1][1] == {"hardware": T4, "from": 2, "to": 1}
        assert line_events(first) == [] and line_events(cpu) == []

        # Looking again at what did not change writes nothing and records no event.
        before = len(kinds(third))
        controller.reconciler.reconcile([third])
        controller.settle()
        assert len(kinds(third)) == before
    finally:
        close(controller)


@pytest.mark.usefixtures("stack")
def test_a_later_space_never_starts_first_whatever_order_it_is_looked_at(
    gpu_backend: MemoryBackend,
) -> None:
    controller = new_controller(gpu_backend)
    try:
        holder = new_space("holder", requested_hardware=T4)
        early = new_space("early", requested_hardware=T4)
        late = new_space("late", requested_hardware=T4)
        controller.settle()
        assert (waiting(early)[0], waiting(late)[0]) == (1, 2)
        set_paused(holder, True)
        reconciler = controller.reconciler
        reconciler.reconcile([holder])
        reconciler.settle_actions()
        assert gpu_backend.running == {}  # the GPU is free now
        reconciler.reconcile([late])  # the later one first: it must leave the GPU
        reconciler.settle_actions()
        assert gpu_backend.of_space(uid(late)) == []
        assert waiting(late)[0] == 2
        reconciler.reconcile([early])
        reconciler.settle_actions()
        assert len(gpu_backend.of_space(uid(early))) == 1
        controller.settle()
        assert stage(early) == Stage.RUNNING
        assert waiting(late) == (1, f"{FULL} (position 1 in line)")
    finally:
        close(controller)


@pytest.mark.usefixtures("stack")
def test_a_restarted_controller_keeps_the_order(gpu_backend: MemoryBackend) -> None:
    controller = new_controller(gpu_backend)
    # The lowest row id joins the line last: the order is when each began waiting.
    joins_last = new_space("joins-last", requested_hardware=T4, paused=True)
    holder = new_space("holder", requested_hardware=T4)
    joins_first = new_space("joins-first", requested_hardware=T4)
    try:
        controller.settle()
        set_paused(joins_last, False)
        controller.settle()
        assert waiting(joins_first)[0] == 1 and waiting(joins_last)[0] == 2
    finally:
        close(controller)

    set_paused(holder, True)
    restarted = new_controller(gpu_backend)  # a new reconciler over the same database
    try:
        restarted.reconciler.reconcile([holder])
        restarted.reconciler.settle_actions()
        restarted.reconciler.reconcile([joins_last])  # looked at first, still second in line
        restarted.reconciler.settle_actions()
        assert gpu_backend.of_space(uid(joins_last)) == []
        restarted.settle()
        assert stage(joins_first) == Stage.RUNNING
        assert waiting(joins_last) == (1, f"{FULL} (position 1 in line)")
    finally:
        close(restarted)


@pytest.mark.usefixtures("stack")
def test_leaving_the_line_moves_those_behind_up(gpu_backend: MemoryBackend) -> None:
    controller = new_controller(gpu_backend)
    try:
        holder = new_space("holder", requested_hardware=T4)
        quits = new_space("quits", requested_hardware=T4)
        stays = new_space("stays", requested_hardware=T4)
        controller.settle()
        set_paused(quits, True)  # paused while it waits: it leaves the line
        controller.settle()
        assert stage(holder) == Stage.RUNNING
        assert row(quits).waiting_position is None
        assert waiting(stays) == (1, f"{FULL} (position 1 in line)")
        left = line_events(quits)[-1]
        assert left[0] == "hardware.queue_left" and left[1]["reason"] == "the Space is paused"
        # Another tier asked while waiting: it leaves this line and starts on the CPU.
        from orchestrator.core.status import change_spec

        with session_scope() as session:
            space = session.get(Space, stays)
            assert space is not None
            change_spec(session, space, requested_hardware="cpu-basic")
            events.record(session, events.EventKind.HARDWARE_REQUESTED, "alice", space)
            session.commit()
        controller.settle()
        assert stage(stays) == Stage.RUNNING and row(stays).waiting_position is None
    finally:
        close(controller)


@pytest.mark.usefixtures("stack")
def test_an_instance_the_backend_cannot_place_waits_and_does_not_time_out() -> None:
    backend = MemoryBackend()  # the host has room: the backend's scheduler has not
    controller = new_controller(backend)
    try:
        space = new_space("gpu", requested_hardware="a10g-small", startup_timeout_seconds=60)
        controller.settle()
        (instance,) = backend.of_space(uid(space))
        detail = "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."
        backend.unplaced(instance.id, "all 4 A10G GPUs are in use", detail)
        # Pending for longer than its startup timeout: still waiting, not failed.
        long_ago = datetime.now(UTC) - timedelta(hours=1)
        backend.running[instance.id] = replace(backend.running[instance.id], started_at=long_ago)
        controller.settle()
        assert stage(space) == Stage.APP_STARTING
        assert row(space).error_message == (
            "waiting for hardware: all 4 A10G GPUs are in use (position 1 in line)"
        )
        assert row(space).waiting_position == 1
        queued = [d for k, d in line_events(space) if k == "hardware.queued"]
        assert queued == [
            {
                "hardware": "a10g-small",
                "position": 1,
                "reason": "all 4 A10G GPUs are in use",
                "detail": detail,
                "since": queued[0]["since"],
            }
        ]
        backend.place(instance.id)  # a node joined: its timeout counts from now
        controller.settle()
        assert stage(space) == Stage.APP_STARTING and row(space).error_message is None
        assert [k for k, _ in line_events(space)][-1] == "hardware.granted"
        backend.make_ready(instance.id)
        controller.settle()
        assert stage(space) == Stage.RUNNING
    finally:
        close(controller)


@pytest.mark.usefixtures("stack")
def test_an_instance_that_cannot_run_is_a_runtime_error() -> None:
    backend = MemoryBackend()
    controller = new_controller(backend)
    try:
        space = new_space("broken")
        controller.settle()
        (instance,) = backend.of_space(uid(space))
        backend.cannot_run(instance.id, "the image img/broken cannot be pulled: not found")
        controller.settle()
        assert stage(space) == Stage.RUNTIME_ERROR
        assert row(space).error_message == (
            "Runtime error: the image img/broken cannot be pulled: not found"
        )
        assert backend.of_space(uid(space)) == []  # stopped: it holds no room
        controller.settle()
        assert backend.started and len(backend.started) == 1  # not retried until a change
    finally:
        close(controller)


@pytest.mark.usefixtures("stack")
def test_a_deleted_space_is_forgotten_by_the_backend_once() -> None:
    backend = MemoryBackend()
    controller = new_controller(backend)
    try:
        running = new_space("running")
        paused = new_space("paused", paused=True)  # nothing runs: its objects stay
        controller.settle()
        uids = {uid(running), uid(paused)}
        with session_scope() as session:
            for space_id in (running, paused):
                target = session.get(Space, space_id)
                assert target is not None
                events.record(session, events.EventKind.SPACE_DELETED, "alice", target)
                session.flush()
                session.delete(target)
            session.commit()
        controller.settle()
        controller.reconciler.reconcile_once()
        controller.reconciler.reconcile([running, paused])
        controller.settle()
        assert sorted(backend.forgotten) == sorted(uids)  # once each
        assert backend.running == {}
    finally:
        close(controller)


@pytest.mark.usefixtures("stack")
def test_a_deleted_gpu_space_gives_its_gpu_to_the_first_in_line(
    gpu_backend: MemoryBackend,
) -> None:
    controller = new_controller(gpu_backend)
    try:
        holder = new_space("holder", requested_hardware=T4)
        controller.settle()
        first = new_space("first", requested_hardware=T4)
        second = new_space("second", requested_hardware=T4)
        controller.settle()
        with session_scope() as session:
            target = session.get(Space, holder)
            assert target is not None
            events.record(session, events.EventKind.SPACE_DELETED, "alice", target)
            session.flush()
            session.delete(target)
            session.commit()
        controller.settle()
        assert stage(first) == Stage.RUNNING
        assert waiting(second) == (1, f"{FULL} (position 1 in line)")
    finally:
        close(controller)


def test_gpu_room_in_plain_words() -> None:
    t4, a10g_x2 = get_tier("t4-small"), get_tier("a10g-largex2")
    assert gpu_room(t4, 1, 1).reason == "all 1 T4 GPUs are in use"
    assert gpu_room(t4, 1, 0) == type(gpu_room(t4, 1, 0))(free=1, total=1, reason=None)
    assert gpu_room(a10g_x2, 4, 0).free == 2
    assert gpu_room(a10g_x2, 4, 3).reason == "a10g-largex2 needs 2 A10G GPUs, 1 of 4 are free"
    assert gpu_room(a10g_x2, 0, 0).reason == "a10g-largex2 needs 2 A10G GPUs, and there are none"


def test_migration_0011_adds_the_line_columns_and_goes_back(database: str) -> None:
    def columns() -> set[str]:
        return {c["name"] for c in inspect(db.get_engine()).get_columns("space")}

    line = {"waiting_hardware", "waiting_since", "waiting_position"}
    assert line <= columns()
    config = db.alembic_config(get_settings().sqlalchemy_url)
    command.downgrade(config, "0010")
    assert not line & columns()
    command.upgrade(config, "head")
    assert line <= columns()
