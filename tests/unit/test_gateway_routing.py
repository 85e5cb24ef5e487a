"""The gateway's routing, without Docker: the real Gateway in front of an upstream served by a
local server, with its route table following the change feed (orchestrator/gateway/routes.py).

Host -> route, aliases that redirect after a rename, private Spaces that need credentials,
the paused and sleeping pages, misses, and routes that change without a full reread, on
SQLite and on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import event, text
from sqlmodel import Session

from orchestrator.core import auth, changes, db, events, status
from orchestrator.core.changes import Channel, Feed
from orchestrator.core.event_cursor import EventCursor
from orchestrator.core.models import Space, Stage, Visibility
from orchestrator.core.settings import get_settings
from orchestrator.gateway.proxy import Gateway
from orchestrator.gateway.routes import RouteTable
from orchestrator.spaces import lifecycle
from orchestrator.spaces import registry as spaces
from tests.unit.databases import empty_every_table
from tests.unit.upstream import Upstream

DOMAIN = "spaces.test:8000"
# What the controller writes once a new instance answers, from its own process.
CONTROLLER = """
import sys
from sqlmodel import Session
from orchestrator.core import db, status
from orchestrator.core.models import Space
with Session(db.get_engine(), expire_on_commit=False) as session:
    space = session.get(Space, int(sys.argv[1]))
    assert status.write_status(session, space, serving_address=sys.argv[2])
    session.commit()
"""
FEED_LATENCY = 5.0  # at most, for a change to reach the table (it is milliseconds)


@pytest.fixture(params=["sqlite", "postgresql"])
def database(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    for key in list(os.environ):
        if key.startswith("SPACEPORT_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("SPACEPORT_HOME", str(tmp_path))
    monkeypatch.setenv("SPACEPORT_SPACES_DOMAIN", DOMAIN)
    if request.param == "postgresql":
        monkeypatch.setenv("SPACEPORT_DATABASE_URL", request.getfixturevalue("postgres_url"))
    get_settings.cache_clear()
    db.get_engine.cache_clear()
    db.migrate()
    if request.param == "postgresql":  # one server for the module: start each test empty
        empty_every_table()
    yield get_settings().sqlalchemy_url
    db.get_engine().dispose()
    get_settings.cache_clear()
    db.get_engine.cache_clear()


@pytest.fixture
def upstreams() -> Iterator[Callable[[str], Upstream]]:
    started: list[Upstream] = []

    def start(name: str) -> Upstream:
        started.append(Upstream(name))
        return started[-1]

    yield start
    for upstream in started:
        upstream.close()


async def control_plane(scope: dict, receive: object, send: Callable[..., Awaitable[None]]) -> None:
    """Stands in for the API: whatever is not a Space's host ends up here."""
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"control plane"})


class Queries:
    """The SQL this process sends while listening."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    def _heard(self, *args: object) -> None:
        self.sent.append(" ".join(str(args[2]).split()))

    def __enter__(self) -> Queries:
        event.listen(db.get_engine(), "before_cursor_execute", self._heard)
        return self

    def __exit__(self, *exc: object) -> None:
        event.remove(db.get_engine(), "before_cursor_execute", self._heard)

    def full_reads(self) -> list[str]:
        """Reads of the whole Space table (the old table reread it every second)."""
        return [q for q in self.sent if "FROM space" in q and "WHERE" not in q]


def _session() -> Session:
    return Session(db.get_engine(), expire_on_commit=False)


def _running(session: Session, space: Space, address: str) -> None:
    """What the controller writes once the Space answers at ``address``."""
    assert status.write_status(session, space, stage=Stage.RUNNING, serving_address=address)
    session.commit()


def _space(session: Session, owner: str, name: str, **spec: object) -> Space:
    user = auth.get_or_create_user(session, owner)
    space = spaces.create_space(session, user, name)
    if spec:
        status.change_spec(session, space, **spec)
        session.commit()
        session.refresh(space)
    return space


class Visitor:
    """A browser at the gateway, which runs on this test's event loop."""

    def __init__(self, table: RouteTable, feed: Feed) -> None:
        self.feed = feed
        self.gateway = Gateway(control_plane)  # type: ignore[arg-type]
        self.gateway.routes = table
        transport = httpx.ASGITransport(app=self.gateway)
        self.client = httpx.AsyncClient(transport=transport, follow_redirects=False)

    async def get(self, host: str, path: str = "/", **kwargs: object) -> httpx.Response:
        url = f"http://{host}.{DOMAIN}{path}"
        return await self.client.get(url, **kwargs)  # type: ignore[arg-type]

    async def until(
        self, host: str, check: Callable[[httpx.Response], bool], **kwargs: object
    ) -> httpx.Response:
        """The first answer that passes ``check``, within the feed's latency."""
        deadline = time.monotonic() + FEED_LATENCY
        while True:
            response = await self.get(host, **kwargs)
            if check(response) or time.monotonic() > deadline:
                return response
            await asyncio.sleep(0.01)

    async def listening(self) -> None:
        """Until the feed hears rings from other processes (its LISTEN or its first look
        at the doorbell files is up): rings sent the way another process sends them."""
        seen = self.feed.count(Channel.EVENTS)
        deadline = time.monotonic() + FEED_LATENCY
        while self.feed.count(Channel.EVENTS) == seen:
            assert time.monotonic() < deadline, "the change feed hears nothing"
            if db.get_engine().dialect.name == "postgresql":
                with db.get_engine().begin() as connection:
                    connection.execute(text("SELECT pg_notify('spaceport', 'events')"))
            else:
                changes._ring_file(Channel.EVENTS)
            await asyncio.sleep(0.02)

    async def close(self) -> None:
        await self.client.aclose()
        await self.gateway.aclose()


def _run(test: Callable[[Visitor], Awaitable[None]], **table: object) -> None:
    feed = Feed(get_settings().sqlalchemy_url, poll_seconds=0.01)

    async def main() -> None:
        visitor = Visitor(RouteTable(feed=feed, **table), feed)  # type: ignore[arg-type]
        try:
            await test(visitor)
        finally:
            await visitor.close()

    try:
        asyncio.run(main())
    finally:
        feed.close()


def test_a_space_host_is_proxied_and_other_hosts_reach_the_api(
    database: str, upstreams: Callable[[str], Upstream]
) -> None:
    app = upstreams("hello")
    with _session() as session:
        _running(session, _space(session, "alice", "hello"), app.address)

    async def visit(visitor: Visitor) -> None:
        response = await visitor.get("alice-hello", "/x?y=1")
        assert (response.status_code, response.text) == (200, "app hello /x?y=1")
        assert app.seen[-1]["host"] == f"alice-hello.{DOMAIN}"
        answer = await visitor.client.get(f"http://{DOMAIN}/api/health")
        assert answer.text == "control plane"
        missing = await visitor.get("nobody-here")
        assert missing.status_code == 404 and "no Space here" in missing.text

    _run(visit)


def test_routes_follow_the_change_feed_without_rereading_the_table(
    database: str, upstreams: Callable[[str], Upstream]
) -> None:
    """No full reread happens in this test (an hour apart): a new serving address written by
    another process (as the controller's are), a new Space and a deleted one reach the
    gateway through the event log alone."""
    first, second = upstreams("first"), upstreams("second")
    with _session() as session:
        space = _space(session, "alice", "demo")
        _running(session, space, first.address)

    async def visit(visitor: Visitor) -> None:
        assert (await visitor.get("alice-demo")).text == "app first /"
        with Queries() as queries:
            await changes_arrive(visitor)
        assert queries.full_reads() == []

    async def changes_arrive(visitor: Visitor) -> None:
        await visitor.listening()
        # A new instance answers: the controller, another process, says so.
        subprocess.run(
            [sys.executable, "-c", CONTROLLER, str(space.id), second.address],
            check=True,
            env=dict(os.environ),
        )
        response = await visitor.until("alice-demo", lambda r: "second" in r.text)
        assert response.text == "app second /"

        # A Space created after the first read answers at once (the miss path) ...
        with _session() as session:
            _running(session, _space(session, "bob", "new"), first.address)
        assert (await visitor.get("bob-new")).status_code == 200
        # ... and one deleted goes away with its event.
        with _session() as session:
            gone = session.get(Space, space.id)
            assert gone is not None
            lifecycle.delete(session, gone, actor="alice")
        # This process wrote it: its very next request knows (read-your-writes).
        assert (await visitor.get("alice-demo")).status_code == 404

    _run(visit, resync_seconds=3600)


def test_a_renamed_space_redirects_from_its_old_host_at_once(
    database: str, upstreams: Callable[[str], Upstream]
) -> None:
    app = upstreams("demo")
    with _session() as session:
        space = _space(session, "carol", "demo")
        _running(session, space, app.address)

    async def visit(visitor: Visitor) -> None:
        assert (await visitor.get("carol-demo")).status_code == 200  # in the table now
        with _session() as session:
            mine = session.get(Space, space.id)
            carol = auth.get_or_create_user(session, "carol")
            assert mine is not None
            lifecycle.move(session, mine, carol, "renamed", actor="carol")
        # The very next request is redirected: the API that moved it is this process.
        response = await visitor.get("carol-demo")
        assert response.status_code == 308
        assert response.headers["location"] == f"http://carol-renamed.{DOMAIN}/"
        # The path and query go along; a websocket can't follow a redirect and is closed.
        response = await visitor.get("carol-demo", "/a/b?c=d")
        assert response.headers["location"] == f"http://carol-renamed.{DOMAIN}/a/b?c=d"

    _run(visit, resync_seconds=3600)


def test_a_private_space_needs_its_owners_token_which_the_app_never_sees(
    database: str, upstreams: Callable[[str], Upstream]
) -> None:
    app = upstreams("secret")
    with _session() as session:
        space = _space(session, "dana", "vault", visibility=Visibility.PRIVATE)
        _running(session, space, app.address)
        owner_token = auth.create_token(session, auth.get_or_create_user(session, "dana"))
        other_token = auth.create_token(session, auth.get_or_create_user(session, "eve"))

    async def visit(visitor: Visitor) -> None:
        # Without credentials, or someone else's, it is not there at all.
        assert (await visitor.get("dana-vault")).status_code == 404
        stranger = {"authorization": f"Bearer {other_token}"}
        assert (await visitor.get("dana-vault", headers=stranger)).status_code == 404
        owner = {"authorization": f"Bearer {owner_token}"}
        response = await visitor.get("dana-vault", headers=owner)
        assert (response.status_code, response.text) == (200, "app secret /")
        assert "authorization" not in app.seen[-1]  # a platform credential stays here

        # Made public: open to all, as soon as the change is read.
        with _session() as session:
            public = session.get(Space, space.id)
            assert public is not None
            lifecycle.set_visibility(session, public, Visibility.PUBLIC, actor="dana")
        assert (await visitor.get("dana-vault")).status_code == 200

    _run(visit, resync_seconds=3600)


def test_paused_and_sleeping_spaces_get_their_pages(
    database: str, upstreams: Callable[[str], Upstream]
) -> None:
    app = upstreams("nap")
    with _session() as session:
        paused = _space(session, "finn", "paused")
        _running(session, paused, app.address)
        sleeping = _space(session, "finn", "sleepy")
        assert status.write_status(session, sleeping, stage=Stage.SLEEPING)
        session.commit()

    async def visit(visitor: Visitor) -> None:
        assert (await visitor.get("finn-paused")).status_code == 200
        with _session() as session:
            mine = session.get(Space, paused.id)
            assert mine is not None
            lifecycle.pause(session, mine, actor="finn")
        # At once, before the controller has stopped anything: the owner asked.
        response = await visitor.get("finn-paused")
        assert response.status_code == 503 and "is paused by its owner" in response.text
        asleep = await visitor.get("finn-sleepy")
        assert asleep.status_code == 503 and "asleep" in asleep.text
        assert 'http-equiv="refresh"' in asleep.text  # it reloads until the app is up

    _run(visit, resync_seconds=3600)


def test_a_known_host_costs_no_query(database: str) -> None:
    """Routing is a dict lookup: with many Spaces defined, a request for one of them runs
    no query, and an idle table rereads nothing (the old one reread every Space each
    second, in every process)."""
    with _session() as session:
        owner = auth.get_or_create_user(session, "gil")
        for n in range(50):
            spaces.create_space(session, owner, f"s{n}")
    feed = Feed(get_settings().sqlalchemy_url, 0.01)
    table = RouteTable(feed=feed, resync_seconds=3600)

    async def lookups() -> list[str]:
        assert await table.lookup("gil-s0") is not None  # the first read
        try:
            with Queries() as queries:
                for _ in range(2):
                    for n in range(50):
                        route = await table.lookup(f"gil-s{n}")
                        assert route is not None and route.full_name == f"gil/s{n}"
                    # Idle for longer than the old table's refresh period: still no query.
                    await asyncio.sleep(1.2)
            return queries.sent
        finally:
            await table.close()
            feed.close()

    assert asyncio.run(lookups()) == []
    assert len(table) == 50


def test_an_event_that_commits_after_a_newer_one_is_not_skipped(database: str) -> None:
    """PostgreSQL gives ids at insert: a transaction holding id 1 can commit after the one
    holding id 2, which the reader has already read past. The cursor asks for id 1 again
    (a gap) and so still sees its Space; the old `id > last` read lost it for good."""
    with _session() as setup:
        slow_space, fast_space = _space(setup, "hal", "slow"), _space(setup, "hal", "fast")
        cursor = EventCursor(last_id=events.newest_id(setup))
    slow, fast = _session(), _session()
    try:
        events.record(slow, events.EventKind.PAUSED, "hal", slow_space)
        slow.flush()  # id taken, not committed
        if database.startswith("sqlite"):
            # SQLite writers take turns: the first holds the lock until it commits, so
            # commits come in id order and there is nothing to skip.
            slow.commit()
        events.record(fast, events.EventKind.PAUSED, "hal", fast_space)
        fast.commit()
        with _session() as reader:
            first = cursor.touched(reader)
        if not database.startswith("sqlite"):
            assert first == {fast_space.id} and cursor.gaps
            slow.commit()
            with _session() as reader:
                assert cursor.touched(reader) == {slow_space.id}
        else:
            assert first == {fast_space.id, slow_space.id}
        assert not cursor.gaps
        with _session() as reader:
            assert cursor.touched(reader) == set()
    finally:
        slow.close()
        fast.close()
