"""The gateway's side of sleep, without Docker (the real Gateway, its route table on the
change feed, a local upstream): traffic is noted with no query per request and written in
one batch; a visit to a sleeper asks it to wake once; a browser gets the waking page; an
API client is held until the Space serves, then proxied; past the hold, or past the number
held, a 503 with Retry-After; a paused Space is never asked to wake. SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import pytest
from sqlmodel import select

from orchestrator.core import status
from orchestrator.core.models import Event, Space, SpaceActivity, Stage
from orchestrator.core.settings import get_settings
from tests.unit.test_gateway_routing import (
    Queries,
    Visitor,
    _run,
    _running,
    _session,
    _space,
    database,  # noqa: F401 - the fixture
    upstreams,  # noqa: F401 - the fixture
)
from tests.unit.upstream import Upstream

API_CLIENT = {"accept": "application/json"}  # gradio_client's requests
BROWSER = {"accept": "text/html,application/xhtml+xml"}


def _asleep(owner: str, name: str, depth: str = "light", **spec: object) -> int:
    """A Space the controller has put to sleep (no address: nothing to proxy to); deep with
    the owner's sleep time is STOPPED."""
    stage = Stage.STOPPED if depth == "deep" else Stage.SLEEPING
    with _session() as session:
        space = _space(session, owner, name, **spec)
        assert status.write_status(session, space, stage=stage, sleep_depth=depth)
        session.commit()
        assert space.id is not None
        return space.id


def _waking(space_id: int) -> None:
    """What the controller writes when it wakes the Space, before it serves."""
    with _session() as session:
        space = session.get(Space, space_id)
        assert space is not None
        assert status.write_status(session, space, stage=Stage.SLEEPING, sleep_depth=None)
        session.commit()


def _woken(space_id: int, address: str) -> None:
    """What the controller writes once the thawed instance serves again."""
    with _session() as session:
        space = session.get(Space, space_id)
        assert space is not None
        assert status.write_status(
            session, space, stage=Stage.RUNNING, sleep_depth=None, serving_address=address
        )
        session.commit()


def _wake_requests(space_id: int) -> int:
    with _session() as session:
        rows = session.exec(
            select(Event).where(Event.space_id == space_id, Event.kind == "space.wake_requested")
        ).all()
        return len(rows)


def _last_seen(space_id: int) -> object:
    with _session() as session:
        row = session.get(SpaceActivity, space_id)
        return row.last_seen if row is not None else None


def _settings(monkeypatch: pytest.MonkeyPatch, **values: str) -> None:
    for key, value in values.items():
        monkeypatch.setenv(f"SPACEPORT_{key.upper()}", value)
    get_settings.cache_clear()


def test_traffic_is_noted_without_a_query_per_request_and_written_in_one_batch(
    database: str,  # noqa: F811 - the fixture
    upstreams: Callable[[str], Upstream],  # noqa: F811 - the fixture
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _settings(monkeypatch, activity_flush_seconds="3600")  # only the test's flush writes
    app = upstreams("busy")
    with _session() as session:
        space = _space(session, "alice", "busy")
        _running(session, space, app.address)
        space_id = space.id
    assert space_id is not None

    async def visit(visitor: Visitor) -> None:
        assert (await visitor.get("alice-busy")).status_code == 200  # the table is read
        with Queries() as queries:
            for _ in range(20):
                assert (await visitor.get("alice-busy")).status_code == 200
        assert [q for q in queries.sent if "space_activity" in q] == []
        assert _last_seen(space_id) is None
        with Queries() as queries:
            await visitor.gateway.activity.flush()
        assert len([q for q in queries.sent if "space_activity" in q.lower()]) == 1
        assert _last_seen(space_id) is not None

    _run(visit)


@pytest.mark.parametrize("depth", ["light", "deep"])
def test_a_held_api_request_goes_on_when_the_space_serves_again(
    database: str,  # noqa: F811 - the fixture
    upstreams: Callable[[str], Upstream],  # noqa: F811 - the fixture
    depth: str,
) -> None:
    app = upstreams("sleepy")
    space_id = _asleep("alice", "sleepy", depth)

    async def visit(visitor: Visitor) -> None:
        await visitor.listening()
        held = asyncio.create_task(visitor.get("alice-sleepy", "/info", headers=API_CLIENT))
        while visitor.gateway._held == 0:  # it waits on the route table's event
            assert not held.done(), (await held).text
            await asyncio.sleep(0.01)
        assert _wake_requests(space_id) == 1 and _last_seen(space_id) is not None
        await asyncio.to_thread(_waking, space_id)  # woken, starting: still nothing to serve
        await asyncio.sleep(0.3)
        assert not held.done()
        await asyncio.to_thread(_woken, space_id, app.address)
        response = await held
        assert (response.status_code, response.text) == (200, "app sleepy /info")
        assert visitor.gateway._held == 0

    _run(visit)


def test_a_browser_gets_the_waking_page_and_asks_once(
    database: str,  # noqa: F811 - the fixture
) -> None:
    space_id = _asleep("alice", "nap")

    async def visit(visitor: Visitor) -> None:
        for _ in range(3):
            page = await visitor.get("alice-nap", headers=BROWSER)
            assert page.status_code == 503 and "alice/nap" in page.text  # a waiting page
        assert _wake_requests(space_id) == 1  # one request per Space, not per visit

    _run(visit)


@pytest.mark.parametrize(
    ("setting", "value", "error_code"),
    [
        # Past the hold: the status page (a Space that did not wake in time).
        ("wake_hold_seconds", "0.2", None),
        # Past the number held: refused at once, by name.
        ("wake_hold_max_requests", "0", "WakeHoldFull"),
    ],
)
def test_past_the_hold_or_the_number_held_an_api_client_gets_503_with_retry_after(
    database: str,  # noqa: F811 - the fixture
    monkeypatch: pytest.MonkeyPatch,
    setting: str,
    value: str,
    error_code: str | None,
) -> None:
    _settings(monkeypatch, **{setting: value})
    _asleep("alice", "held")

    async def visit(visitor: Visitor) -> None:
        response = await visitor.get("alice-held", headers=API_CLIENT)
        assert response.status_code == 503
        assert response.headers.get("x-error-code") == error_code
        assert response.headers["retry-after"]

    _run(visit)


def test_a_paused_space_is_not_asked_to_wake(
    database: str,  # noqa: F811 - the fixture
) -> None:
    space_id = _asleep("alice", "off", paused=True)

    async def visit(visitor: Visitor) -> None:
        page = await visitor.get("alice-off", headers=API_CLIENT)
        assert page.status_code == 503
        assert _wake_requests(space_id) == 0

    _run(visit)


def test_the_wake_request_event_is_documented_data_free(
    database: str,  # noqa: F811 - the fixture
) -> None:
    space_id = _asleep("alice", "doc")

    async def visit(visitor: Visitor) -> None:
        await visitor.get("alice-doc", headers=BROWSER)
        with _session() as session:
            event = session.exec(
                select(Event).where(
                    Event.space_id == space_id, Event.kind == "space.wake_requested"
                )
            ).one()
            assert event.actor == "spaceport:gateway" and json.loads(event.data) == {}

    _run(visit)
