"""Admission: a Space starts only where the host has room for its tier (sandbox/admission.py),
and the reconciler waits, says why, and starts it by itself when room frees."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlmodel import select

from sandbox.admission import Policy, available, shortfall
from sandbox.backend import Capacity, Instance, InstanceState
from sandbox.hardware import get_tier, sized_tier
from sandbox.memory_backend import MemoryBackend

GIB = 2**30


def instance(cpus: float, memory_gib: float, **changes: object) -> Instance:
    values: dict[str, object] = dict(
        id="c1",
        space_id="s",
        space="a/b",
        revision="r",
        sha="x",
        state=InstanceState.RUNNING,
        address="http://10.0.0.1:7860",
        cpus=cpus,
        memory_gib=memory_gib,
    )
    values.update(changes)
    return Instance(**values)  # type: ignore[arg-type]


def test_a_tier_fits_or_says_what_it_lacks() -> None:
    free = Capacity(cpus=2, memory_gib=23.5, cpus_free=2, memory_gib_free=7.5)
    message = shortfall(free, get_tier("cpu-basic"))
    assert message == "waiting for hardware: cpu-basic needs 16 GiB of memory, 7.5 GiB free"
    small = sized_tier("cpu-basic", {"cpu-basic": {"memory_gib": 4}})
    assert shortfall(free, small) is None
    busy = Capacity(cpus=2, memory_gib=23.5, cpus_free=0.5, memory_gib_free=20)
    assert "needs 2 vCPU, 0.5 vCPU free" in str(shortfall(busy, get_tier("cpu-basic")))


def test_a_tier_bigger_than_the_host_says_so() -> None:
    host = Capacity(cpus=2, memory_gib=21.5, cpus_free=2, memory_gib_free=21.5)
    message = str(shortfall(host, get_tier("a100-large")))
    assert message == (
        "waiting for hardware: a100-large needs 12 vCPU and 142 GiB of memory, more than "
        "this host gives Spaces (2 vCPU, 21.5 GiB): choose a smaller tier"
    )


def test_an_older_revision_of_the_same_space_makes_room() -> None:
    free = Capacity(cpus=2, memory_gib=4, cpus_free=0, memory_gib_free=0)
    tier = sized_tier("cpu-basic", {"cpu-basic": {"cpu": 1, "memory_gib": 2}})
    assert shortfall(free, tier) is not None
    assert shortfall(free, tier, replacing=[instance(1, 2)]) is None


def test_the_reserve_and_the_cpu_ratio() -> None:
    machine = Capacity(cpus=2, memory_gib=24, cpus_free=1, memory_gib_free=16)  # 1/8 taken
    room = available(machine, [], Policy(reserve_cpus=0.5, reserve_memory_gib=2))
    assert (room.cpus, room.cpus_free) == (1.5, 0.5)
    assert (room.memory_gib, room.memory_gib_free) == (22, 14)
    ratio = available(machine, [], Policy(reserve_cpus=0.5, cpu_allocation_ratio=4))
    assert (ratio.cpus, ratio.cpus_free) == (6, 5)
    # Memory is never overcommitted, whatever the ratio.
    assert ratio.memory_gib_free == 16


def test_an_installation_budget_counts_its_own_spaces() -> None:
    machine = Capacity(cpus=16, memory_gib=64, cpus_free=14, memory_gib_free=60)
    room = available(machine, [instance(1, 3)], Policy(spaces_cpus=2, spaces_memory_gib=4))
    assert (room.cpus_free, room.memory_gib_free) == (1, 1)


def test_other_installations_count_unless_the_host_is_partitioned() -> None:
    machine = Capacity(cpus=4, memory_gib=24, cpus_free=2, memory_gib_free=8)  # 2 of 4 mine
    own = [instance(1, 8)]
    shared = available(machine, own, Policy())
    assert (shared.cpus_free, shared.memory_gib_free) == (2, 8)
    partitioned = available(
        machine, own, Policy(spaces_memory_gib=12, count_other_installations=False)
    )
    assert (partitioned.cpus_free, partitioned.memory_gib_free) == (3, 4)


def test_an_overcommitted_host_has_nothing_free() -> None:
    machine = Capacity(cpus=2, memory_gib=24, cpus_free=-30, memory_gib_free=-168)
    room = available(machine, [], Policy(reserve_memory_gib=2))
    assert shortfall(room, sized_tier("cpu-basic", {"cpu-basic": {"cpu": 0.1, "memory_gib": 0.1}}))


# -- the reconciler, with an in-memory backend -------------------------------------------


def memory_backend(cpus: float, memory_gib: float) -> MemoryBackend:
    """A host of `cpus` and `memory_gib` whose instances answer as soon as they start."""
    return MemoryBackend(cpus, memory_gib, ready_on_start=True)


@pytest.fixture
def database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    from orchestrator.core import db
    from orchestrator.core.settings import get_settings

    monkeypatch.setenv("SPACEPORT_HOME", str(tmp_path))
    monkeypatch.setenv("SPACEPORT_PLATFORM_RESERVE_CPUS", "0")
    monkeypatch.setenv("SPACEPORT_PLATFORM_RESERVE_MEMORY_GIB", "1")
    monkeypatch.setenv("SPACEPORT_SPACES_DISK_CHECK_SECONDS", "0")
    monkeypatch.setenv(
        "SPACEPORT_HARDWARE_OVERRIDES",
        '{"cpu-basic": {"cpu": 1, "memory_gib": 2, "disk_gib": 1}}',
    )
    for cached in (get_settings, db.get_engine):
        cached.cache_clear()
    db.migrate()
    yield
    for cached in (get_settings, db.get_engine):
        cached.cache_clear()


def built_space(name: str) -> int:
    from orchestrator.core.db import session_scope
    from orchestrator.core.models import Space, Stage, User

    with session_scope() as session:
        user = session.exec(select(User).where(User.name == "alice")).first()
        if user is None:
            user = User(name="alice")
            session.add(user)
            session.commit()
        assert user.id is not None
        space = Space(
            owner="alice",
            name=name,
            host=f"alice-{name}",
            owner_id=user.id,
            sdk="gradio",
            stage=Stage.APP_STARTING,
            head_sha="a" * 40,
            built_sha="a" * 40,
            built_image=f"img/{name}",
        )
        session.add(space)
        session.commit()
        assert space.id is not None
        return space.id


def runtime(space_id: int) -> tuple[str, str | None]:
    from orchestrator.core.db import session_scope
    from orchestrator.core.models import Space

    with session_scope() as session:
        space = session.get(Space, space_id)
        assert space is not None
        return space.stage, space.error_message


def test_a_space_waits_for_hardware_and_starts_when_room_frees(database: None) -> None:
    from orchestrator.controller.loop import Controller
    from orchestrator.core import events
    from orchestrator.core.db import session_scope
    from orchestrator.core.models import Space
    from orchestrator.core.status import change_spec

    backend = memory_backend(cpus=4, memory_gib=5)  # 4 GiB after the reserve: two Spaces
    controller = Controller(backend)
    first, second, third = built_space("one"), built_space("two"), built_space("three")
    controller.settle()
    assert runtime(first)[0] == runtime(second)[0] == "RUNNING"
    stage, message = runtime(third)
    assert stage == "APP_STARTING"
    assert message == (
        "waiting for hardware: cpu-basic needs 2 GiB of memory, 0 GiB free (position 1 in line)"
    )
    assert len(backend.running) == 2  # never more than the host holds

    with session_scope() as session:
        space = session.get(Space, first)
        assert space is not None
        change_spec(session, space, paused=True)  # the owner's pause: spec, not stage
        events.record(session, events.EventKind.PAUSED, "alice", space)
        session.commit()
    controller.settle()  # stops the paused one; the waiting one takes its room
    assert runtime(third) == ("RUNNING", None)
    assert len(backend.running) == 2
    controller.stop()
    controller.reconciler.close()


def test_a_space_over_its_disk_quota_is_stopped(database: None) -> None:
    from orchestrator.controller.reconciler import Reconciler

    backend = memory_backend(cpus=2, memory_gib=8)
    reconciler = Reconciler(backend)
    space = built_space("writer")
    reconciler.reconcile_once()
    reconciler.reconcile_once()
    assert runtime(space)[0] == "RUNNING"
    (running,) = backend.running
    backend.written[running] = int(1.5 * GIB)
    reconciler.reconcile_once()
    stage, message = runtime(space)
    assert stage == "RUNTIME_ERROR"
    assert "wrote 1.50 GiB to its disk, over the 1 GiB quota of cpu-basic" in str(message)
    assert backend.running == {}
    reconciler.reconcile_once()
    assert backend.running == {}  # not restarted until something changes


def test_the_gateway_page_says_a_space_waits_for_hardware() -> None:
    from orchestrator.gateway.pages import status_page

    page = status_page("alice/big", "APP_STARTING", "waiting for hardware: cpu-basic needs …")
    assert "alice/big is waiting for hardware" in page
    assert "needs" not in page  # the host's figures are not for every visitor
    assert "alice/big is starting" in status_page("alice/big", "APP_STARTING", None)
