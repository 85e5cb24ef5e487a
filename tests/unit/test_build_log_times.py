"""Build-log lines keep the time the builder wrote them, through their batch, the store and
the API's SSE: not the time the batch was stored or the line was read."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import col, select

from orchestrator.api import logs as api_logs
from orchestrator.builds import logs, state
from orchestrator.core import auth, db
from orchestrator.core.models import Build, BuildLogLine
from orchestrator.core.redaction import Redactor
from orchestrator.spaces import registry as spaces


@pytest.fixture
def build_id(database: str) -> Iterator[int]:
    with db.session_scope() as session:
        user = auth.get_or_create_user(session, "tina")
        space = spaces.create_space(session, user, "timed")
        build = Build(space_id=space.id or 0, commit_sha="b" * 40)
        session.add(build)
        session.commit()
        assert build.id is not None
        assert state.claim_build(session, build.id)
        yield build.id


def aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def test_a_batch_keeps_each_lines_own_time(build_id: int) -> None:
    batches: list[int] = []
    log = logs.BuildLog(build_id, [], batch_seconds=30.0, batch_lines=100)
    real_store = log._store
    log._store = lambda lines: (batches.append(len(lines)), real_store(lines))  # type: ignore[method-assign]
    before = datetime.now(UTC)
    log("first")
    time.sleep(0.5)
    log("second")
    time.sleep(0.5)
    stored_from = datetime.now(UTC)
    log.close()  # the one batch is stored only now
    assert batches == [2]
    with db.session_scope() as session:
        rows = session.exec(
            select(BuildLogLine)
            .where(BuildLogLine.build_id == build_id)
            .order_by(col(BuildLogLine.id))
        ).all()
        times = [aware(row.created_at) for row in rows]
    assert [row.line for row in rows] == ["first", "second"]
    assert before <= times[0] < times[1] < stored_from
    assert times[1] - times[0] >= timedelta(seconds=0.4)

    async def followed() -> list[tuple[str, datetime]]:
        got: list[tuple[str, datetime]] = []
        async for entry in logs.follow_entries_async(build_id, idle_seconds=60.0):
            assert entry is not None
            got.append(entry)
            if len(got) == 2:
                break
        return got

    entries = asyncio.run(followed())
    assert [line for line, _ in entries] == ["first", "second"]
    assert [moment for _, moment in entries] == times

    # The SSE event carries that time, in the Hub's format, not the time it is sent.
    event = json.loads(api_logs._event("first", Redactor(), entries[0][1]).removeprefix("data: "))
    assert event == {"data": "first", "timestamp": api_logs.hub_time(times[0])}
    assert event["timestamp"] < api_logs.hub_time(stored_from)
