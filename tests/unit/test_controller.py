"""The controller's state machine, against the in-memory backend and a real database (no
Docker): every stage it derives, the races of the old reconciler (each driven by a hook,
not a sleep), concurrency (a slow Space never delays another), rollback, events, the
resync, and the cost of idle Spaces (statements counted)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import event as sa_event
from sqlmodel import Session, col, select

from orchestrator.controller import reconciler as reconciler_module
from orchestrator.controller.loop import Controller
from orchestrator.core import changes, db, events
from orchestrator.core.db import session_scope
from orchestrator.core.models import Build, BuildStatus, Event, Space, Stage, User
from orchestrator.core.stages import Problem, shown_stage
from orchestrator.core.status import change_spec
from sandbox.memory_backend import MemoryBackend
from tests.unit.databases import empty_every_table


@pytest.fixture(params=["sqlite", "postgresql"])
def stack(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """A migrated, empty database on each stack."""
    import os

    from orchestrator.core import secret_store
    from orchestrator.core.settings import get_settings

    for key in list(os.environ):
        if key.startswith("SPACEPORT_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("SPACEPORT_HOME", str(tmp_path))
    monkeypatch.setenv("SPACEPORT_PLATFORM_RESERVE_CPUS", "0")
    monkeypatch.setenv("SPACEPORT_PLATFORM_RESERVE_MEMORY_GIB", "0")
    if request.param == "postgresql":
        monkeypatch.setenv("SPACEPORT_DATABASE_URL", request.getfixturevalue("postgres_url"))

    def reset() -> None:
        get_settings.cache_clear()
        db.get_engine.cache_clear()
        secret_store._fernet.cache_clear()
        changes.reset_feed()  # a feed of this test's home and database

    reset()
    db.migrate()
    if request.param == "postgresql":
        empty_every_table()
    yield request.param
    db.get_engine().dispose()
    reset()


@pytest.fixture
def backend() -> Iterator[MemoryBackend]:
    memory = MemoryBackend()
    yield memory
    memory.close()


@pytest.fixture
def controller(backend: MemoryBackend) -> Iterator[Controller]:
    loop = Controller(backend)
    yield loop
    loop.stop()
    loop.reconciler.close()


# -- helpers ------------------------------------------------------------------------------

SHA1, SHA2 = "a" * 40, "b" * 40


def new_space(
    name: str, *, built: str | None = SHA1, head: str | None = SHA1, **spec: object
) -> int:
    with session_scope() as session:
        user = session.exec(select(User).where(User.name == "alice")).first()
        if user is None:
            user = User(name="alice")
            session.add(user)
            session.flush()
        assert user.id is not None
        space = Space(
            owner="alice",
            name=name,
            host=f"alice-{name}",
            owner_id=user.id,
            sdk="gradio",
            head_sha=head,
            built_sha=built,
            built_image=f"img/{name}:{built[:7]}" if built else None,
            **spec,
        )
        session.add(space)
        session.flush()
        events.record(session, events.EventKind.SPACE_CREATED, "alice", space)
        session.commit()
        assert space.id is not None
        return space.id


def change(space_id: int, kind: events.EventKind = events.EventKind.PAUSED, **spec: object) -> None:
    """An owner's change of the spec, with its event, in one transaction."""
    with session_scope() as session:
        space = session.get(Space, space_id)
        assert space is not None
        change_spec(session, space, **spec)
        events.record(session, kind, "alice", space)
        session.commit()


def add_build(space_id: int, sha: str, status: BuildStatus, error: str | None = None) -> None:
    with session_scope() as session:
        space = session.get(Space, space_id)
        assert space is not None
        session.add(Build(space_id=space_id, commit_sha=sha, status=status, error_message=error))
        events.record(session, events.EventKind.BUILD_QUEUED, events.ACTOR_WORKER, space)
        session.commit()


def row(space_id: int) -> Space:
    with session_scope() as session:
        space = session.get(Space, space_id)
        assert space is not None
        return space


def stage(space_id: int) -> Stage:
    return Stage(row(space_id).stage)


def kinds(space_id: int) -> list[tuple[str, dict]]:
    import json

    with session_scope() as session:
        rows = session.exec(
            select(Event).where(Event.space_id == space_id).order_by(col(Event.id))
        ).all()
        return [(e.kind, json.loads(e.data)) for e in rows]


def uid(space_id: int) -> str:
    return row(space_id).uid


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait for a condition (polling it: each is cheap), never a fixed sleep."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.01)


def stepping_until(controller: Controller, predicate: Callable[[], bool]) -> None:
    """Run the loop's steps (each waits for its next change or timer) until `predicate`."""

    def step_then_check() -> bool:
        controller.step(timeout=0.05)
        return predicate()

    wait_until(step_then_check)


def ready_all(backend: MemoryBackend, space_id: int) -> None:
    for instance in backend.of_space(uid(space_id)):
        backend.make_ready(instance.id)


# -- every stage ---------------------------------------------------------------------------


def test_a_space_without_a_commit_has_no_app_file(
    stack: str, backend: MemoryBackend, controller: Controller
) -> None:
    space = new_space("empty", built=None, head=None)
    controller.settle()
    assert stage(space) == Stage.NO_APP_FILE
    assert backend.started == []


def test_a_readme_problem_is_shown_as_its_stage(
    stack: str, backend: MemoryBackend, controller: Controller
) -> None:
    space = new_space("broken", built=None, head=SHA1)
    change(space, head_problem=Problem(Stage.CONFIG_ERROR, "bad sdk").dump())
    controller.settle()
    assert (stage(space), row(space).error_message) == (Stage.CONFIG_ERROR, "bad sdk")


def test_build_stages_then_starting_then_running(
    stack: str, backend: MemoryBackend, controller: Controller
) -> None:
    space = new_space("app", built=None, head=SHA1)
    add_build(space, SHA1, BuildStatus.RUNNING)
    controller.settle()
    assert stage(space) == Stage.BUILDING
    with session_scope() as session:
        build = session.exec(select(Build).where(Build.space_id == space)).one()
        build.status = BuildStatus.SUCCEEDED
        session.add(build)
        target = session.get(Space, space)
        assert target is not None
        change_spec(session, target, built_sha=SHA1, built_image="img/app:1")
        events.record(session, events.EventKind.BUILD_ENDED, events.ACTOR_WORKER, target)
        session.commit()
    controller.settle()
    assert stage(space) == Stage.APP_STARTING
    assert len(backend.running) == 1
    ready_all(backend, space)
    controller.settle()
    done = row(space)
    assert (done.stage, done.error_message) == (Stage.RUNNING, None)
    assert done.serving_address == backend.of_space(done.uid)[0].address
    assert done.current_hardware == "cpu-basic"
    assert shown_stage(done) == Stage.RUNNING  # observed the newest spec


def test_a_new_build_while_serving_is_running_building_then_replaces_it(
    stack: str,
    backend: MemoryBackend,
    controller: Controller,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(reconciler_module, "DRAIN_SECONDS", 0.0)
    space = new_space("serving")
    controller.settle()
    ready_all(backend, space)
    controller.settle()
    (old,) = backend.of_space(uid(space))
    change(space, events.EventKind.BUILD_QUEUED, head_sha=SHA2)
    add_build(space, SHA2, BuildStatus.QUEUED)
    controller.settle()
    assert stage(space) == Stage.RUNNING_BUILDING
    add_build(space, SHA2, BuildStatus.FAILED, "Build failed: boom")
    controller.settle()
    assert (stage(space), row(space).error_message) == (Stage.BUILD_ERROR, "Build failed: boom")
    assert row(space).serving_address == old.address  # the old commit still serves
    add_build(space, SHA2, BuildStatus.SUCCEEDED)
    change(space, events.EventKind.BUILD_ENDED, built_sha=SHA2, built_image="img/serving:2")
    controller.settle()
    assert stage(space) == Stage.RUNNING_APP_STARTING
    assert row(space).serving_address == old.address
    new = [i for i in backend.of_space(uid(space)) if i.id != old.id]
    backend.make_ready(new[0].id)
    controller.settle()
    assert stage(space) == Stage.RUNNING
    assert [i.id for i in backend.of_space(uid(space))] == [new[0].id]  # old one drained
    assert row(space).serving_sha == SHA2


def test_an_app_that_exits_is_a_runtime_error_until_restarted(
    stack: str, backend: MemoryBackend, controller: Controller
) -> None:
    space = new_space("crashy")
    controller.settle()
    (instance,) = backend.of_space(uid(space))
    backend.exit(instance.id, code=3, last_lines=["Traceback: boom"])
    controller.settle()
    crashed = row(space)
    assert crashed.stage == Stage.RUNTIME_ERROR
    assert "exited with code 3" in str(crashed.error_message)
    assert "Traceback: boom" in str(crashed.error_message)
    assert len(backend.started) == 1  # not retried by itself
    ended = [d for kind, d in kinds(space) if kind == "instance.stopped"]
    assert [(d["instance"], d["exit_code"]) for d in ended] == [(instance.id, 3)]
    change(space, events.EventKind.RESTARTED, restart_count=1)
    controller.settle()
    assert len(backend.started) == 2
    assert stage(space) == Stage.APP_STARTING
    ready_all(backend, space)
    controller.settle()
    assert stage(space) == Stage.RUNNING
    assert [i.state for i in backend.instances()] == ["running"]  # the exited one removed
    assert len([k for k, _ in kinds(space) if k == "instance.stopped"]) == 1  # once only


def test_an_app_that_never_answers_times_out(
    stack: str, backend: MemoryBackend, controller: Controller
) -> None:
    space = new_space("silent", startup_timeout_seconds=0)
    controller.settle()
    stepping_until(controller, lambda: stage(space) == Stage.RUNTIME_ERROR)
    assert "did not answer on port 7860 within 0 s" in str(row(space).error_message)
    assert backend.running == {}


def test_a_start_the_backend_refuses_is_a_runtime_error(
    stack: str, backend: MemoryBackend, controller: Controller
) -> None:
    backend.fail_next_start = "no GPU on this host"
    space = new_space("gpu")
    controller.settle()
    assert (stage(space), row(space).error_message) == (
        Stage.RUNTIME_ERROR,
        "Runtime error: no GPU on this host",
    )


def test_pause_stops_it_and_restart_starts_it_again(
    stack: str, backend: MemoryBackend, controller: Controller
) -> None:
    space = new_space("pausable")
    controller.settle()
    ready_all(backend, space)
    controller.settle()
    change(space, paused=True)
    controller.settle()
    paused = row(space)
    assert (paused.stage, paused.serving_address) == (Stage.PAUSED, None)
    assert backend.running == {}
    change(space, events.EventKind.RESTARTED, paused=False, restart_count=1)
    controller.settle()
    assert stage(space) == Stage.APP_STARTING
    assert len(backend.running) == 1


def test_instances_started_and_stopped_are_events(
    stack: str, backend: MemoryBackend, controller: Controller
) -> None:
    space = new_space("billed")
    controller.settle()
    ready_all(backend, space)
    controller.settle()
    change(space, paused=True)
    controller.settle()
    log = kinds(space)
    started = [data for kind, data in log if kind == "instance.started"]
    stopped = [data for kind, data in log if kind == "instance.stopped"]
    assert len(started) == len(stopped) == 1
    assert started[0]["hardware"] == "cpu-basic" and started[0]["commit"] == SHA1
    assert started[0]["started_at"] and started[0]["revision"]
    assert stopped[0]["reason"] == "the Space is paused"
    assert stopped[0]["instance"] == started[0]["instance"]
    assert stopped[0]["hardware"] == "cpu-basic" and stopped[0]["started_at"]
    stages = [(d["from"], d["to"]) for kind, d in log if kind == "stage.changed"]
    assert stages == [
        ("NO_APP_FILE", "APP_STARTING"),
        ("APP_STARTING", "RUNNING"),
        ("RUNNING", "PAUSED"),
    ]


# -- the races -------------------------------------------------------------------------------


def test_a_pause_during_app_starting_never_comes_back_as_running(
    stack: str, backend: MemoryBackend, controller: Controller
) -> None:
    """The old reconciler wrote RUNNING from a Space read before the owner's pause."""
    space = new_space("racy")
    controller.settle()
    ready_all(backend, space)
    paused_once = []

    def pause_meanwhile(space_id: int) -> None:
        if not paused_once:  # after the facts are read (ready), before the write
            paused_once.append(space_id)
            change(space_id, paused=True)

    controller.reconciler.before_write = pause_meanwhile
    controller.settle()
    assert paused_once == [space]
    assert stage(space) == Stage.PAUSED
    assert backend.running == {}
    assert ("APP_STARTING", "RUNNING") not in [
        (d["from"], d["to"]) for kind, d in kinds(space) if kind == "stage.changed"
    ]


def test_after_a_rename_it_is_not_running_until_the_new_host_answers(
    stack: str, backend: MemoryBackend, controller: Controller
) -> None:
    space = new_space("old-name")
    controller.settle()
    ready_all(backend, space)
    controller.settle()
    with session_scope() as session:  # what lifecycle.move does to the row
        target = session.get(Space, space)
        assert target is not None
        target.name, target.host = "new-name", "alice-new-name"
        change_spec(session, target)
        events.record(session, events.EventKind.SPACE_MOVED, "alice", target)
        session.commit()
    assert shown_stage(row(space)) == Stage.RUNNING_APP_STARTING  # before the controller
    controller.settle()
    moved = row(space)
    assert shown_stage(moved) == moved.stage == Stage.RUNNING_APP_STARTING
    fresh = [i for i in backend.of_space(moved.uid) if i.space == "alice/new-name"]
    assert len(fresh) == 1 and not fresh[0].ready
    backend.make_ready(fresh[0].id)
    controller.settle()
    assert shown_stage(row(space)) == Stage.RUNNING
    assert row(space).serving_address == fresh[0].address


def test_a_stale_listing_never_starts_a_revision_twice(
    stack: str, backend: MemoryBackend, controller: Controller
) -> None:
    """A start that ends after the instances were listed: the list is stale for it."""
    space = new_space("twice")
    hold = threading.Event()
    backend.holds["alice/twice"] = hold
    controller.reconciler.reconcile([space])  # submits the start, which waits on `hold`
    listing_taken = threading.Event()
    original = backend.instances

    def list_then_let_the_start_finish() -> list:
        listed = original()
        if not listing_taken.is_set():
            listing_taken.set()
            hold.set()
            controller.reconciler.settle_actions()
        return listed

    backend.instances = list_then_let_the_start_finish  # type: ignore[method-assign]
    controller.reconciler.reconcile([space])
    backend.instances = original  # type: ignore[method-assign]
    controller.settle()
    assert len(backend.started) == 1
    assert len(backend.running) == 1


# -- concurrency, rollback, resync -----------------------------------------------------------


def test_a_hanging_start_or_probe_never_delays_another_space(stack: str) -> None:
    hang = threading.Event()

    def probe(address: str) -> bool:
        if any(i.address == address and i.space == "alice/slow" for i in backend.instances()):
            hang.wait(10)  # its app never answers (until the test ends)
        return True

    backend = MemoryBackend(probe=probe)
    controller = Controller(backend)
    try:
        backend.holds["alice/stuck"] = hang  # its start hangs
        stuck, slow, quick = new_space("stuck"), new_space("slow"), new_space("quick")
        stepping_until(controller, lambda: stage(quick) == Stage.RUNNING)
        assert stage(stuck) == Stage.APP_STARTING and stage(slow) == Stage.APP_STARTING
    finally:
        hang.set()
        controller.stop()
        controller.reconciler.settle_actions()
        controller.reconciler.close()
        backend.close()


def test_a_failed_space_is_rolled_back_and_the_rest_go_on(
    stack: str,
    backend: MemoryBackend,
    controller: Controller,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    broken, fine = new_space("broken"), new_space("fine")
    before = row(broken)
    real_record = events.record

    def fail_for_broken(session: Session, kind: events.EventKind, actor: str, space=None, **data):  # type: ignore[no-untyped-def]
        if space is not None and space.id == broken and kind == events.EventKind.STAGE_CHANGED:
            raise RuntimeError("disk full")  # after the status UPDATE ran
        return real_record(session, kind, actor, space, **data)

    monkeypatch.setattr(events, "record", fail_for_broken)
    controller.reconciler.resync()
    after = row(broken)
    assert (after.stage, after.status_version) == (before.stage, before.status_version)
    assert stage(fine) == Stage.APP_STARTING
    assert not backend.of_space(before.uid)  # nothing started for a write that didn't land
    monkeypatch.setattr(events, "record", real_record)
    monkeypatch.setattr(reconciler_module, "RETRY_SECONDS", 0.0)
    controller.reconciler._at(0.0, broken)  # its retry timer, due now
    controller.settle()
    assert stage(broken) == Stage.APP_STARTING


def test_the_resync_heals_a_missed_change(
    stack: str, backend: MemoryBackend, controller: Controller
) -> None:
    space = new_space("healed")
    controller.settle()
    (instance,) = backend.of_space(uid(space))
    backend.vanish(instance.id)  # no event: the loop does not know
    assert controller.step(timeout=0.05) is False
    assert backend.running == {}
    controller._next_resync = 0.0  # the slow resync comes
    controller.settle()
    assert len(backend.running) == 1


def test_a_deleted_spaces_instance_is_stopped(
    stack: str, backend: MemoryBackend, controller: Controller
) -> None:
    space = new_space("gone")
    controller.settle()
    assert len(backend.running) == 1
    with session_scope() as session:
        target = session.get(Space, space)
        assert target is not None
        events.record(session, events.EventKind.SPACE_DELETED, "alice", target)
        session.flush()
        session.delete(target)
        session.commit()
    controller.settle()
    assert backend.running == {}


def test_idle_spaces_cost_no_queries(
    stack: str, backend: MemoryBackend, controller: Controller
) -> None:
    """200 Spaces defined, 20 running: waiting costs no statement and no backend list; a
    change to one Space costs statements for that one, not for the 200."""
    ids = [new_space(f"s{n}", paused=n >= 20) for n in range(200)]
    controller.settle()
    for space in ids[:20]:
        ready_all(backend, space)
    controller.settle()
    assert len(backend.running) == 20
    statements: list[str] = []

    def count(*args: object) -> None:
        # The controller's own statements only: a build's heartbeat thread left behind by
        # an earlier test in this process writes to the same (cached) engine.
        me = threading.current_thread()
        if me is main or me.name.startswith(("controller-", "change-feed")):
            statements.append(str(args[2]))

    main = threading.current_thread()

    engine = db.get_engine()
    sa_event.listen(engine, "before_cursor_execute", count)
    try:
        controller.disk_seconds = 3600.0  # only the change feed and timers
        calls = backend.calls
        assert controller.step(timeout=0.2) is False
        assert statements == [] and backend.calls == calls
        change(ids[5], paused=True)
        statements.clear()
        controller.settle()
        assert 0 < len(statements) < 40, statements
    finally:
        sa_event.remove(engine, "before_cursor_execute", count)
    assert stage(ids[5]) == Stage.PAUSED


def test_the_running_loop_wakes_on_the_change_feed(
    stack: str, backend: MemoryBackend, controller: Controller
) -> None:
    space = new_space("live")
    runner = threading.Thread(target=controller.run, daemon=True)
    runner.start()
    try:
        wait_until(lambda: len(backend.of_space(uid(space))) == 1)
        ready_all(backend, space)  # a backend event
        wait_until(lambda: stage(space) == Stage.RUNNING)
        change(space, paused=True)  # a ring on the feed
        wait_until(lambda: backend.running == {} and stage(space) == Stage.PAUSED)
    finally:
        controller.stop()
        runner.join(10)


def test_a_restarted_controller_adopts_what_runs_and_records_what_it_never_saw_start(
    stack: str, backend: MemoryBackend, controller: Controller
) -> None:
    """Killed between a start and its event: the next controller starts no duplicate, and
    the instance gets its instance.started once."""
    space = new_space("adopted")
    controller.settle()
    (instance,) = backend.of_space(uid(space))
    with session_scope() as session:  # as if the event had never been written
        for entry in session.exec(select(Event).where(Event.kind == "instance.started")):
            session.delete(entry)
        session.commit()
    successor = Controller(backend)
    try:
        successor.settle()
        successor.settle()
        assert [i.id for i in backend.of_space(uid(space))] == [instance.id]
        started = [d for kind, d in kinds(space) if kind == "instance.started"]
        assert [(d["instance"], d.get("adopted")) for d in started] == [(instance.id, True)]
    finally:
        successor.stop()
        successor.reconciler.close()
