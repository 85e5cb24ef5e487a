"""Build logs are stored in batches, with secrets masked, and followers are woken by the
change feed instead of polling the database; on both stacks."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import pytest
from sqlmodel import col, select

from orchestrator.builds import logs, state
from orchestrator.core import auth, changes, db
from orchestrator.core.changes import Channel
from orchestrator.core.models import Build, BuildLogLine, BuildStatus
from orchestrator.spaces import registry as spaces

WAIT = 10.0


@pytest.fixture
def build_id(database: str) -> Iterator[int]:
    # Each test gets a feed of its own database and home (tests/unit/conftest.py).
    with db.session_scope() as session:
        user = auth.get_or_create_user(session, "alice")
        space = spaces.create_space(session, user, "demo")
        build = Build(space_id=space.id or 0, commit_sha="a" * 40)
        session.add(build)
        session.commit()
        assert build.id is not None
        assert state.claim_build(session, build.id)
        yield build.id


def stored(build_id: int) -> list[str]:
    with db.session_scope() as session:
        rows = session.exec(
            select(BuildLogLine)
            .where(BuildLogLine.build_id == build_id)
            .order_by(col(BuildLogLine.id))
        )
        return [row.line for row in rows]


def until(condition, timeout: float = WAIT) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_lines_are_stored_in_batches_masked(build_id: int, monkeypatch: pytest.MonkeyPatch) -> None:
    batches: list[int] = []
    real_store = logs.BuildLog._store

    def counting(self: logs.BuildLog, lines: list[str]) -> None:
        batches.append(len(lines))
        real_store(self, lines)

    monkeypatch.setattr(logs.BuildLog, "_store", counting)
    log = logs.BuildLog(build_id, ["hunter2-secret"], batch_seconds=30.0)
    for n in range(250):
        log(f"line {n} hunter2-secret")
    log.close()
    lines = stored(build_id)
    assert lines == [f"line {n} ***" for n in range(250)]
    # 100 lines a batch, the rest at close: three transactions, not 250.
    assert batches == [100, 100, 50]


def test_a_lone_line_is_stored_within_the_batch_time(build_id: int) -> None:
    log = logs.BuildLog(build_id, [], batch_seconds=0.1)
    try:
        log("Step 1/3 : FROM python")
        until(lambda: stored(build_id) == ["Step 1/3 : FROM python"], timeout=5.0)
    finally:
        log.close()


def test_a_follower_is_woken_by_the_feed_not_by_polling(
    build_id: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[int] = []
    real_read = logs.read_new

    def counting(build: int, after: int):  # type: ignore[no-untyped-def]
        reads.append(after)
        return real_read(build, after)

    monkeypatch.setattr(logs, "read_new", counting)
    feed = changes.feed()
    rung_before = feed.count(Channel.BUILD_LOGS)

    def rings() -> int:  # what woke the follower (here or, on a shared server, elsewhere)
        return feed.count(Channel.BUILD_LOGS) - rung_before

    got: list[str] = []

    def follow() -> None:
        for line in logs.follow_log(build_id, resync_seconds=60.0):
            got.append(line)

    follower = threading.Thread(target=follow)
    follower.start()
    until(lambda: len(reads) >= 1)
    quiet_until = time.monotonic() + 1.0
    until(lambda: time.monotonic() >= quiet_until)
    # A second of silence cost no query but the first (it polled every 0.3 s): every read
    # after the first is one the feed rang for.
    assert len(reads) <= 1 + rings()
    log = logs.BuildLog(build_id, [], batch_seconds=0.05)
    log("first")
    until(lambda: len(got) == 1)
    log("second")
    log.close()
    assert state.finish(build_id, BuildStatus.SUCCEEDED, None, "img")
    follower.join(WAIT)
    assert not follower.is_alive()
    assert got == ["first", "second"]
    assert 1 <= rings() and len(reads) <= 1 + rings()


def test_follow_log_stops_when_the_follower_leaves(build_id: int) -> None:
    stop = threading.Event()
    ended = threading.Event()

    def follow() -> None:
        list(logs.follow_log(build_id, stop=stop, resync_seconds=60.0))
        ended.set()

    threading.Thread(target=follow, daemon=True).start()
    stop.set()
    assert ended.wait(WAIT)


def test_the_async_follower_yields_lines_heartbeats_and_ends(build_id: int) -> None:
    async def scenario() -> list[str | None]:
        got: list[str | None] = []

        async def follow() -> None:
            async for line in logs.follow_log_async(build_id, idle_seconds=0.2):
                got.append(line)

        task = asyncio.create_task(follow())
        while None not in got:  # a heartbeat while nothing happens
            await asyncio.sleep(0.02)

        def write() -> None:
            with logs.BuildLog(build_id, [], batch_seconds=0.05) as log:
                log("hello")
            state.finish(build_id, BuildStatus.FAILED, "Build failed: no")

        await asyncio.to_thread(write)
        await asyncio.wait_for(task, WAIT)
        return got

    got = asyncio.run(scenario())
    assert [line for line in got if line is not None] == ["hello"]
    assert got[0] is None
