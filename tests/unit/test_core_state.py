"""The core of spec and status, on both databases: conditional status writes, spec versions
that count every concurrent bump, the event log written in the writer's transaction, and the
change feed that rings only what was committed (orchestrator/core/status.py, events.py,
changes.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from sqlmodel import Session, select

from orchestrator.core import auth, db, events, status
from orchestrator.core.changes import Channel, Feed
from orchestrator.core.event_cursor import EventCursor
from orchestrator.core.models import Event, Space, Stage
from orchestrator.core.settings import get_settings
from orchestrator.spaces import registry as spaces


def _open() -> Session:
    # As the controller's sessions: what was read stays as read after a commit.
    return Session(db.get_engine(), expire_on_commit=False)


def _space(session: Session, name: str = "demo") -> Space:
    owner = auth.get_or_create_user(session, "alice")
    space = spaces.create_space(session, owner, name)
    session.commit()
    return space


def test_a_status_write_from_a_stale_read_is_dropped(database: str) -> None:
    with _open() as controller, _open() as owner:
        seen = _space(controller)
        mine = owner.get(Space, seen.id)
        assert mine is not None
        status.change_spec(owner, mine, paused=True)  # the owner pauses meanwhile
        owner.commit()
        assert not status.write_status(controller, seen, stage=Stage.RUNNING)
        controller.commit()
    with _open() as fresh:
        row = fresh.get(Space, seen.id)
        assert row is not None and row.paused and row.stage != Stage.RUNNING
        assert row.spec_version == 1 and row.status_version == 0


def test_a_fresh_status_write_lands_with_its_event(database: str) -> None:
    with _open() as session:
        space = _space(session)
        created = events.newest_id(session)  # space.created
        assert status.write_status(session, space, stage=Stage.BUILDING)
        assert status.write_status(session, space, serving_address="http://127.0.0.1:1")
        session.commit()
        kinds = [e.kind for e in events.after(session, created, space_id=space.id)]
        assert kinds == ["stage.changed", "status.changed"]
        row = session.exec(select(Space).where(Space.id == space.id)).one()
        assert row.status_version == 2 and row.observed_spec_version == 0


def test_status_fields_and_spec_fields_do_not_mix(database: str) -> None:
    with _open() as session:
        space = _space(session)
        with pytest.raises(status.SpecFieldError):
            status.change_spec(session, space, stage=Stage.RUNNING)
        with pytest.raises(status.SpecFieldError):
            status.write_status(session, space, paused=True)


def test_concurrent_spec_bumps_both_count(database: str) -> None:
    with _open() as one, _open() as two:
        space = _space(one)
        other = two.get(Space, space.id)
        assert other is not None
        status.change_spec(one, space, requested_hardware="cpu-upgrade")
        one.commit()
        status.change_spec(two, other, sleep_time_seconds=600)  # read before one's commit
        two.commit()
    with _open() as fresh:
        row = fresh.get(Space, space.id)
        assert row is not None
        assert (row.requested_hardware, row.sleep_time_seconds) == ("cpu-upgrade", 600)
        assert row.spec_version == 2


def test_a_rolled_back_change_leaves_no_event(database: str) -> None:
    with _open() as session:
        space = _space(session)
        created = events.newest_id(session)  # space.created
        events.record(session, events.EventKind.PAUSED, "alice", space)
        session.rollback()
        assert events.newest_id(session) == created
        events.record(session, events.EventKind.PAUSED, "alice", space)
        session.commit()
        assert [e.kind for e in events.after(session, created)] == ["paused"]


def test_events_page_and_touched_spaces(database: str) -> None:
    with _open() as session:
        a, b = _space(session, "a"), _space(session, "b")
        created = events.newest_id(session)  # their space.created
        for space in (a, b, a):
            events.record(session, events.EventKind.RESTARTED, "alice", space)
        events.record(session, events.EventKind.SECRET_SET, "alice", b, key="TOKEN")
        session.commit()
        first = events.after(session, created, limit=2)
        rest = events.after(session, first[-1].id or 0)
        assert [e.id for e in first + rest] == sorted(e.id for e in first + rest)
        assert len(first + rest) == 4
        assert [e.kind for e in events.after(session, created, space_id=b.id)] == [
            "restarted",
            "secret.set",
        ]
        cursor = EventCursor()
        assert cursor.touched(session) == {a.id, b.id}
        assert cursor.last_id == events.newest_id(session)
        assert cursor.touched(session) == set()
        entry = session.exec(select(Event).where(Event.kind == "secret.set")).one()
        assert events.as_dict(entry)["data"] == {"key": "TOKEN"}


def test_the_feed_rings_only_after_commit(database: str) -> None:
    settings = get_settings()
    feed = Feed(settings.sqlalchemy_url, poll_seconds=0.02)
    time.sleep(0.3)  # the listener is connected (PostgreSQL) or has read the doorbells
    seen = feed.count(Channel.EVENTS)
    with _open() as session:
        events.record(session, events.EventKind.PAUSED, "alice")
        session.flush()
        assert feed.wait(Channel.EVENTS, seen, timeout=0.5) == seen  # not committed yet
        session.rollback()
        assert feed.wait(Channel.EVENTS, seen, timeout=0.5) == seen  # and never will be
        events.record(session, events.EventKind.PAUSED, "alice")
        session.commit()
    assert feed.wait(Channel.EVENTS, seen, timeout=5.0) > seen
    assert feed.count(Channel.BUILD_LOGS) == 0


def test_the_feed_hears_another_process(database: str) -> None:
    feed = Feed(get_settings().sqlalchemy_url, poll_seconds=0.02)
    time.sleep(0.3)
    seen = feed.count(Channel.EVENTS)
    writer = (
        "from orchestrator.core import db, events\n"
        "from sqlmodel import Session\n"
        "with Session(db.get_engine()) as s:\n"
        "    events.record(s, events.EventKind.PAUSED, 'bob'); s.commit()\n"
    )
    subprocess.run([sys.executable, "-c", writer], check=True, env=dict(os.environ))
    assert feed.wait(Channel.EVENTS, seen, timeout=5.0) > seen


def test_wait_async_never_blocks_the_loop(database: str) -> None:
    import asyncio

    feed = Feed(get_settings().sqlalchemy_url, poll_seconds=0.02)

    async def scenario() -> tuple[int, int]:
        seen = feed.count(Channel.EVENTS)
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        task = asyncio.create_task(ticker())
        waiting = asyncio.create_task(feed.wait_async(Channel.EVENTS, seen, timeout=5.0))
        await asyncio.sleep(0.2)

        def write() -> None:
            with _open() as session:
                events.record(session, events.EventKind.PAUSED, "alice")
                session.commit()

        await asyncio.to_thread(write)
        heard = await waiting
        task.cancel()
        return heard - seen, ticks

    heard, ticks = asyncio.run(scenario())
    assert heard >= 1 and ticks >= 10  # the loop kept running while it waited


def test_migration_0006_keeps_pauses_and_readme_problems(database: str) -> None:
    from alembic import command
    from sqlalchemy import text

    url = get_settings().sqlalchemy_url
    config = db.alembic_config(url)
    command.downgrade(config, "0005")
    with db.get_engine().begin() as connection:
        connection.execute(text("DELETE FROM space"))
        connection.execute(text('DELETE FROM "user"'))
        connection.execute(
            text("INSERT INTO \"user\" (id, name, created_at) VALUES (1, 'al', :t)"),
            {"t": "2026-01-01"},
        )
        for uid, name, stage, message in (
            ("a" * 24, "paused", "PAUSED", None),
            ("b" * 24, "broken", "CONFIG_ERROR", 'line 3: "sdk" must be\none of gradio'),
            ("c" * 24, "fine", "RUNNING", None),
        ):
            connection.execute(
                text(
                    "INSERT INTO space (uid, host, owner, name, owner_id, visibility, "
                    "requested_hardware, stage, error_message, head_sha, app_port, "
                    "startup_timeout_seconds, restart_count, created_at, updated_at) VALUES "
                    "(:uid, :name, 'al', :name, 1, 'public', 'cpu-basic', :stage, :message, "
                    "'abc', 7860, 1800, 0, :t, :t)"
                ),
                {"uid": uid, "name": name, "stage": stage, "message": message, "t": "2026-01-01"},
            )
    command.upgrade(config, "head")
    from orchestrator.core.stages import Problem

    with _open() as session:
        rows = {s.name: s for s in session.exec(select(Space))}
        assert rows["paused"].paused and not rows["fine"].paused
        problem = Problem.load(rows["broken"].head_problem)
        assert problem == Problem(Stage.CONFIG_ERROR, 'line 3: "sdk" must be\none of gradio')
        assert rows["fine"].head_problem is None


def test_a_feed_whose_database_is_down_does_not_wake_its_waiters(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Every retry used to wake every waiter (and log a traceback): a PostgreSQL down for a
    minute woke each log follower once a second. Now one warning per outage, no wakes."""
    import socket

    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    feed = Feed(f"postgresql+psycopg://nobody@127.0.0.1:{port}/none", poll_seconds=0.05)
    try:
        with caplog.at_level("WARNING", logger="orchestrator.core.changes"):
            assert feed.wait(Channel.EVENTS, 0, timeout=2.5) == 0
        lost = [r for r in caplog.records if "lost its connection" in r.getMessage()]
        assert len(lost) == 1 and lost[0].exc_info is None
    finally:
        feed.close()


def test_a_spec_change_without_an_event_of_its_own_still_reaches_the_feed(database: str) -> None:
    """A pushed commit whose README can't be built changed only the spec, with no event: the
    controller never looked (its stage stayed NO_APP_FILE at the gateway until the resync).
    Every spec change now comes with an event, its writer's or `spec.changed`."""
    with _open() as session:
        space = _space(session)
        first = events.newest_id(session)
        status.change_spec(session, space, head_sha="a" * 40)
        session.commit()
        added = events.after(session, first)
        assert [(e.kind, e.space_id) for e in added] == [("spec.changed", space.id)]
        assert events.as_dict(added[0])["data"] == {"fields": ["head_sha"]}
        cursor = EventCursor(last_id=first)
        assert cursor.touched(session) == {space.id}

        # A writer that records its own event gets no second one.
        second = events.newest_id(session)
        status.change_spec(session, space, paused=True)
        events.record(session, events.EventKind.PAUSED, "alice", space)
        session.commit()
        assert [e.kind for e in events.after(session, second)] == ["paused"]

        # A rolled-back change announces nothing, and leaves nothing for the next one.
        third = events.newest_id(session)
        status.change_spec(session, space, paused=False)
        session.rollback()
        session.commit()
        assert events.after(session, third) == []
