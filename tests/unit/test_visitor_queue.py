"""The visitor queue (orchestrator/gateway/visitor_queue.py and visitor_admission.py).

The rules against both stores (in memory, and Redis on a real redis-server: under CI=true a
missing Redis fails), the visitor's signed cookie, and the queue at a real Gateway in
process: the waiting page and its JSON, a reload that keeps the place, FIFO admission as
slots free, inactivity freeing a slot, the depth's 'full' with Retry-After, API clients'
503s, and two gateways sharing one queue through one Redis. Time is a test clock, so no
test waits for a timeout; except the long-polls' (`?wait=`), whose point is how soon they
are told: those run on the real clock with a short idle time, with loose bounds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import pytest

from orchestrator.gateway import visitor_cookie
from orchestrator.gateway.proxy import Gateway
from orchestrator.gateway.routes import Route
from orchestrator.gateway.visitor_admission import VisitorQueue
from orchestrator.gateway.visitor_queue import Limits, MemoryQueueStore, QueueStore
from orchestrator.gateway.visitor_queue_redis import RedisQueueStore
from tests import services
from tests.unit.upstream import Upstream

DOMAIN = "spaces.test:8000"
HOST = f"alice-demo.{DOMAIN}"
IDLE = 60.0
BROWSER = {"accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
API = {"accept": "application/json", "user-agent": "python-httpx/0.28"}


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    services.require_redis()
    url, stop = services.start_redis(tmp_path_factory.mktemp("redis"))
    yield url
    stop()


def _flush(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()


@pytest.fixture(params=["memory", "redis"])
def make_store(request: pytest.FixtureRequest) -> Callable[[], QueueStore]:
    """Makes stores over one shared state: several made in a test are several gateways."""
    if request.param == "memory":
        shared = MemoryQueueStore()
        return lambda: shared
    url = request.getfixturevalue("redis_url")
    _flush(url)
    return lambda: RedisQueueStore(url)


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(test())


# -- the rules, on each store ----------------------------------------------------------


def test_slots_go_first_come_first_served_as_they_free(make_store: Callable) -> None:
    limits = Limits(concurrency=1, depth=10, idle_seconds=IDLE)

    async def test() -> None:
        store = make_store()
        visit = lambda who, now: store.visit("s", who, now=now, limits=limits, open=True)  # noqa: E731
        assert (await visit("a", 0)).admitted
        assert (await visit("b", 1)).position == 1
        assert (await visit("c", 2)).position == 2
        # a keeps its slot while active; b and c keep asking (their waiting pages).
        for now in (30, 60, 90):
            assert (await visit("a", now)).admitted
            assert (await visit("b", now)).position == 1
            assert (await visit("c", now)).position == 2
        # a stops; once idle its slot goes to b, the first in line, even if c asks first.
        for now in (120, 150):
            await visit("b", now)
            await visit("c", now)
        assert (await visit("c", 151)).position == 2
        assert (await visit("b", 152)).admitted
        assert (await visit("c", 153)).position == 1
        await store.aclose()

    run(test)


def test_a_request_in_flight_keeps_the_slot(make_store: Callable) -> None:
    limits = Limits(concurrency=1, depth=10, idle_seconds=IDLE)

    async def test() -> None:
        store = make_store()
        assert (await store.visit("s", "a", now=0, limits=limits, open=True)).admitted
        await store.seen("s", "a", now=50)  # a long stream still open at 50
        place = await store.visit("s", "b", now=100, limits=limits, open=True)
        assert place.position == 1
        await store.seen("s", "b", now=100)  # not admitted: seen changes nothing for b
        place = await store.visit("s", "b", now=111, limits=limits, open=True)
        assert place.admitted
        await store.aclose()

    run(test)


def test_a_waiting_visitor_who_stops_asking_loses_the_place(make_store: Callable) -> None:
    limits = Limits(concurrency=1, depth=10, idle_seconds=IDLE)

    async def test() -> None:
        store = make_store()
        visit = lambda who, now: store.visit("s", who, now=now, limits=limits, open=True)  # noqa: E731
        assert (await visit("a", 0)).admitted
        assert (await visit("b", 0)).position == 1
        assert (await visit("c", 0)).position == 2
        await visit("a", 50)
        await visit("c", 50)
        # b's page closed at 0: by 61 its place is gone and c moves up.
        await visit("a", 61)
        assert (await visit("c", 61)).position == 1
        await store.aclose()

    run(test)


def test_past_the_depth_the_line_is_full(make_store: Callable) -> None:
    limits = Limits(concurrency=1, depth=2, idle_seconds=IDLE)

    async def test() -> None:
        store = make_store()
        visit = lambda who: store.visit("s", who, now=0, limits=limits, open=True)  # noqa: E731
        assert (await visit("a")).admitted
        assert (await visit("b")).position == 1
        assert (await visit("c")).position == 2
        full = await visit("d")
        assert full.full and not full.admitted and full.waiting == 2
        assert (await visit("b")).position == 1  # those in line keep their places
        other = await store.visit("t", "d", now=0, limits=limits, open=True)
        assert other.admitted  # another Space's line is its own
        await store.aclose()

    run(test)


def test_nobody_new_is_let_in_until_the_space_serves(make_store: Callable) -> None:
    limits = Limits(concurrency=2, depth=10, idle_seconds=IDLE)

    async def test() -> None:
        store = make_store()
        closed = lambda who, now: store.visit("s", who, now=now, limits=limits, open=False)  # noqa: E731
        opened = lambda who, now: store.visit("s", who, now=now, limits=limits, open=True)  # noqa: E731
        assert [(await closed(v, 0)).position for v in "abc"] == [1, 2, 3]
        assert (await closed("a", 1)).position == 1  # still starting: still waiting
        # It serves: the first two in line are let in, the third waits, a newcomer queues.
        assert (await opened("c", 2)).position == 3
        assert (await opened("a", 3)).admitted
        assert (await opened("b", 4)).admitted
        assert (await opened("c", 5)).position == 1
        assert (await opened("d", 6)).position == 2
        await store.aclose()

    run(test)


# -- the visitor's cookie ------------------------------------------------------------------


def test_a_place_belongs_to_the_signed_cookie_and_a_forged_one_is_a_stranger(
    migrated_home: Path,
) -> None:
    visitor = visitor_cookie.new_id()
    value = visitor_cookie.cookie_value("uid-1", visitor)
    assert visitor_cookie.verified_id("uid-1", value) == visitor
    assert visitor_cookie.verified_id("uid-2", value) is None  # another Space's cookie
    forged = f"{visitor_cookie.new_id()}.{value.split('.')[1]}"
    assert visitor_cookie.verified_id("uid-1", forged) is None
    assert visitor_cookie.verified_id("uid-1", visitor) is None  # unsigned
    assert visitor_cookie.verified_id("uid-1", "x" * 1000) is None
    header = visitor_cookie.set_cookie("uid-1", visitor, secure=True)
    assert "HttpOnly" in header and "Secure" in header and "Domain" not in header
    assert "SameSite=Lax" in visitor_cookie.set_cookie("uid-1", visitor, secure=False)
    # A client without cookies is one visitor for all its requests, not one per request.
    one = visitor_cookie.cookieless_id("uid-1", "10.0.0.1")
    assert one == visitor_cookie.cookieless_id("uid-1", "10.0.0.1")
    assert one != visitor_cookie.cookieless_id("uid-1", "10.0.0.2")
    assert one != visitor_cookie.cookieless_id("uid-2", "10.0.0.1")


# -- at the gateway ------------------------------------------------------------------------


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    app = Upstream()
    yield app
    app.close()


class Routes:
    """A route table of one Space, set by the test."""

    def __init__(self, route: Route) -> None:
        self.route = route

    async def lookup(self, subdomain: str) -> Route | None:
        return self.route if subdomain == self.route.host else None

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _route(address: str | None, stage: str = "RUNNING", **fields: object) -> Route:
    values: dict = {
        "space_id": 1,
        "owner_id": 1,
        "full_name": "alice/demo",
        "private": False,
        "stage": stage,
        "error_message": None,
        "address": address,
        "host": "alice-demo",
        "uid": "0123456789abcdef01234567",
        "concurrency": 1,
    }
    return Route(**(values | fields))  # type: ignore[arg-type]


async def control_plane(scope: dict, receive: object, send: Callable[..., Awaitable[None]]) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"control plane"})


class Visitor:
    """One browser (or API client): its own cookie jar, at one of the gateways."""

    def __init__(
        self, gateway: Gateway, headers: dict[str, str], client: tuple[str, int] = ("127.0.0.1", 1)
    ) -> None:
        transport = httpx.ASGITransport(app=gateway, client=client)
        self.client = httpx.AsyncClient(transport=transport, headers=headers)

    async def get(self, path: str = "/") -> httpx.Response:
        return await self.client.get(f"http://{HOST}{path}")

    async def place(self) -> dict:
        answer = await self.client.get(f"http://{HOST}/.spaceport/queue")
        assert answer.status_code == 200
        return answer.json()


def _gateway(route: Route, store: QueueStore, clock: Clock) -> Gateway:
    gateway = Gateway(control_plane)  # type: ignore[arg-type]
    gateway.routes = Routes(route)  # type: ignore[assignment]
    gateway.queue = VisitorQueue(store, clock=clock)
    return gateway


@pytest.fixture
def domain(migrated_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestrator.core.settings import get_settings

    monkeypatch.setenv("SPACEPORT_SPACES_DOMAIN", DOMAIN)
    monkeypatch.setenv("SPACEPORT_VISITOR_IDLE_SECONDS", str(IDLE))
    get_settings.cache_clear()


def test_a_second_browser_waits_keeps_its_place_on_reload_and_gets_in_when_the_first_leaves(
    domain: None, upstream: Upstream, make_store: Callable
) -> None:
    clock = Clock()

    async def test() -> None:
        gateway = _gateway(_route(upstream.address), make_store(), clock)
        first, second, third = (Visitor(gateway, BROWSER) for _ in range(3))
        answer = await first.get()
        assert answer.status_code == 200 and answer.text == "app"
        assert visitor_cookie.COOKIE in answer.headers["set-cookie"]
        assert (await first.get("/assets/app.js")).text == "app"  # same visitor, same slot

        waiting = await second.get()
        assert waiting.status_code == 503 and int(waiting.headers["retry-after"]) > 0
        assert "text/html" in waiting.headers["content-type"]
        assert 'id="place">1<' in waiting.text and "/.spaceport/queue" in waiting.text
        assert '<meta http-equiv="refresh"' in waiting.text  # without JavaScript too
        clock.now += 10
        assert 'id="place">1<' in (await second.get()).text  # a reload keeps the place
        assert 'id="place">2<' in (await third.get()).text
        place = await second.place()
        assert place["position"] == 1 and place["doing"] == "busy" and not place["admitted"]

        # The first visitor goes idle; the waiting pages keep asking; the second gets in.
        clock.now += IDLE - 15
        assert (await second.place())["position"] == 1
        assert (await third.place())["position"] == 2
        clock.now += 20  # the first visitor's last request was IDLE + 5 ago
        place = await second.place()
        assert place["admitted"] and place["ready"]
        assert (await second.get()).text == "app"
        assert (await third.place())["position"] == 1
        assert (await first.get()).status_code == 503  # back of the line, behind the third
        assert (await first.place())["position"] == 2
        # The app never saw the platform's cookie.
        assert upstream.cookies and not any(visitor_cookie.COOKIE in c for c in upstream.cookies)
        await gateway.aclose()

    run(test)


FRAMED = BROWSER | {"sec-fetch-dest": "iframe"}


def test_a_framed_browser_over_http_keeps_its_place_by_address(
    domain: None, upstream: Upstream, make_store: Callable
) -> None:
    """The Space's page embeds the app from another site: over plain HTTP the frame keeps no
    cookie, so each reload must still be the same visitor (not the back of the line), and
    its cookieless long-poll must be that visitor too."""
    clock = Clock()

    async def test() -> None:
        gateway = _gateway(_route(upstream.address), make_store(), clock)
        first = Visitor(gateway, BROWSER)
        framed = Visitor(gateway, FRAMED, client=("10.0.0.7", 2))
        behind = Visitor(gateway, FRAMED, client=("10.0.0.8", 3))
        assert (await first.get()).text == "app"
        waiting = await framed.get()
        assert 'id="place">1<' in waiting.text and "set-cookie" not in waiting.headers
        assert 'id="place">2<' in (await behind.get()).text
        clock.now += 10
        again = await framed.get()
        assert 'id="place">1<' in again.text and "set-cookie" not in again.headers
        assert (await framed.place())["position"] == 1  # its poll, without cookies, is it
        clock.now += IDLE + 5  # the first visitor goes idle
        assert (await framed.place())["admitted"]
        assert (await framed.get()).text == "app"
        assert (await behind.place())["position"] == 1
        await gateway.aclose()

    run(test)


def test_over_https_a_framed_browser_gets_a_partitioned_cookie(
    domain: None, upstream: Upstream, make_store: Callable
) -> None:
    async def test() -> None:
        gateway = _gateway(_route(upstream.address), make_store(), Clock())
        transport = httpx.ASGITransport(app=gateway, client=("10.0.0.9", 4))
        async with httpx.AsyncClient(transport=transport, headers=FRAMED) as client:
            answer = await client.get(f"https://{HOST}/")
        assert answer.text == "app"
        cookie = answer.headers["set-cookie"]
        assert visitor_cookie.COOKIE in cookie
        for attribute in ("SameSite=None", "Secure", "Partitioned", "HttpOnly"):
            assert attribute in cookie, attribute
        await gateway.aclose()

    run(test)


def test_a_forged_cookie_is_a_new_visitor_at_the_back(
    domain: None, upstream: Upstream, make_store: Callable
) -> None:
    async def test() -> None:
        gateway = _gateway(_route(upstream.address), make_store(), Clock())
        first, second, forger = (Visitor(gateway, BROWSER) for _ in range(3))
        await first.get()
        await second.get()
        cookie = second.client.cookies[visitor_cookie.COOKIE]
        url = f"http://{HOST}/"
        # The place is the cookie's, whichever connection or client brings it back.
        same = await forger.client.get(url, headers={"cookie": f"{visitor_cookie.COOKIE}={cookie}"})
        assert 'id="place">1<' in same.text and "set-cookie" not in same.headers
        visitor, mac = cookie.split(".")
        forged = f"{visitor_cookie.COOKIE}={visitor}x.{mac}"
        answer = await forger.client.get(url, headers={"cookie": forged})
        assert 'id="place">2<' in answer.text
        assert visitor_cookie.COOKIE in answer.headers["set-cookie"]  # a fresh, signed one
        await gateway.aclose()

    run(test)


def test_past_the_depth_visitors_are_told_it_is_full(
    domain: None, upstream: Upstream, make_store: Callable, monkeypatch: pytest.MonkeyPatch
) -> None:
    from orchestrator.core.settings import get_settings

    monkeypatch.setenv("SPACEPORT_VISITOR_QUEUE_DEPTH", "1")
    get_settings.cache_clear()

    async def test() -> None:
        gateway = _gateway(_route(upstream.address), make_store(), Clock())
        first, second, third = (Visitor(gateway, BROWSER) for _ in range(3))
        await first.get()
        await second.get()
        full = await third.get()
        assert full.status_code == 503 and full.headers["retry-after"] == "30"
        assert "full" in full.text.lower() and "try again later" in full.text.lower()
        api = await Visitor(gateway, API).get()
        assert api.status_code == 503 and api.headers["retry-after"] == "30"
        assert "full" in api.json()["error"]
        await gateway.aclose()

    run(test)


def test_api_clients_get_503_with_retry_after_in_the_error_shape(
    domain: None, upstream: Upstream, make_store: Callable
) -> None:
    async def test() -> None:
        gateway = _gateway(_route(upstream.address), make_store(), Clock())
        client = Visitor(gateway, API)
        assert (await client.get()).text == "app"
        assert (await client.get()).text == "app"  # no cookie, still the one visitor
        other = Visitor(gateway, API, client=("10.0.0.2", 40000))  # another machine
        refused = await other.get()
        assert refused.status_code == 503 and refused.headers["retry-after"] == "3"
        assert refused.json() == {"error": refused.headers["x-error-message"]}
        assert "as soon as one leaves" in refused.json()["error"]
        await gateway.aclose()

    run(test)


def test_a_building_space_shows_what_it_is_doing_and_paused_ones_keep_their_page(
    domain: None, make_store: Callable
) -> None:
    async def test() -> None:
        store = make_store()
        gateway = _gateway(_route(None, "BUILDING"), store, Clock())
        browser = Visitor(gateway, BROWSER)
        page = await browser.get()
        assert page.status_code == 503 and "It is being built." in page.text
        assert 'id="place">1<' in page.text
        api = await Visitor(gateway, API).get()
        assert api.status_code == 503 and "being built" in api.json()["error"]
        assert int(api.headers["retry-after"]) >= 3

        waiting = "waiting for hardware: no GPU free"
        hardware = {"gpu": True, "hardware": "t4-small", "hardware_position": 2}
        starting = _route(None, "APP_STARTING", error_message=waiting, **hardware)
        gateway.routes = Routes(starting)  # type: ignore[assignment]
        place = await browser.place()
        assert place["doing"] == "waiting_hardware"
        assert "waiting for a GPU (place 2 in the line for t4-small)" in place["message"]

        gateway.routes = Routes(_route(None, "PAUSED"))  # type: ignore[assignment]
        assert (await browser.place())["doing"] == "stopped"  # the page reloads to say why
        paused = await browser.get()
        assert "paused" in paused.text and "/.spaceport/queue" not in paused.text
        await gateway.aclose()

    run(test)


def test_two_gateways_over_one_redis_keep_one_queue(
    domain: None, upstream: Upstream, redis_url: str
) -> None:
    _flush(redis_url)
    clock = Clock()

    async def test() -> None:
        one = _gateway(_route(upstream.address), RedisQueueStore(redis_url), clock)
        two = _gateway(_route(upstream.address), RedisQueueStore(redis_url), clock)
        first = Visitor(one, BROWSER)
        assert (await first.get()).text == "app"
        second = Visitor(two, BROWSER)
        assert 'id="place">1<' in (await second.get()).text  # the other replica's slot counts
        third = Visitor(one, BROWSER)
        assert (await third.place())["position"] == 2
        clock.now += IDLE - 15
        assert (await second.place())["position"] == 1
        assert (await third.place())["position"] == 2
        clock.now += 20  # the first visitor's last request was IDLE + 5 ago
        # The first visitor left: the second gets in through gateway two, the third moves up
        # in gateway one's answer.
        assert (await second.place())["admitted"]
        assert (await second.get()).text == "app"
        assert (await third.place())["position"] == 1
        await one.aclose()
        await two.aclose()

    run(test)


def test_a_queue_that_cannot_be_reached_lets_visitors_in(domain: None, upstream: Upstream) -> None:
    class Broken(MemoryQueueStore):
        async def visit(self, *args: object, **kwargs: object) -> object:  # type: ignore[override]
            raise ConnectionError("redis is down")

    async def test() -> None:
        gateway = _gateway(_route(upstream.address), Broken(), Clock())
        assert (await Visitor(gateway, BROWSER).get()).text == "app"
        assert (await Visitor(gateway, BROWSER).get()).text == "app"
        await gateway.aclose()

    run(test)


def test_an_active_visitor_costs_one_store_call_per_slack(domain: None, upstream: Upstream) -> None:
    class Counting(MemoryQueueStore):
        visits = 0

        async def visit(self, *args: object, **kwargs: object) -> object:  # type: ignore[override]
            Counting.visits += 1
            return await super().visit(*args, **kwargs)  # type: ignore[arg-type]

    clock = Clock()

    async def test() -> None:
        gateway = _gateway(_route(upstream.address), Counting(), clock)
        browser = Visitor(gateway, BROWSER)
        for _ in range(5):  # within the slack (a tenth of the idle time): one visit
            assert (await browser.get()).text == "app"
        assert Counting.visits == 1
        clock.now += IDLE / 10 + 1
        assert (await browser.get()).text == "app"
        assert Counting.visits == 2
        await gateway.aclose()

    run(test)


def test_an_open_stream_or_websocket_keeps_its_slot_until_it_ends(domain: None) -> None:
    """While an answer is open the slot is refreshed every half idle time; once it ends,
    nothing more (a real, short idle time: only the order of the loop's timers matters)."""

    class Counting(MemoryQueueStore):
        seen_calls = 0

        async def seen(self, *args: object, **kwargs: object) -> None:  # type: ignore[override]
            Counting.seen_calls += 1

    async def test() -> None:
        queue = VisitorQueue(Counting())
        limits = Limits(concurrency=1, depth=1, idle_seconds=0.2)
        sent: list[dict] = []

        async def send(message: dict) -> None:
            sent.append(message)

        for start, end in (
            (
                {"type": "http.response.start", "status": 200, "headers": []},
                {"type": "http.response.body", "body": b"", "more_body": False},
            ),
            ({"type": "websocket.accept"}, {"type": "websocket.close", "code": 1000}),
        ):
            Counting.seen_calls = 0
            holding = queue._holding(send, "s", "a", limits, None)  # type: ignore[arg-type]
            await holding(start)
            await asyncio.sleep(0.35)  # past the first refresh, due at 0.1
            assert Counting.seen_calls >= 1
            await holding(end)
            await asyncio.sleep(0)
            after_end = Counting.seen_calls
            await asyncio.sleep(0.35)
            assert Counting.seen_calls == after_end  # the refreshes stopped with the answer
        assert [m["type"] for m in sent][-1] == "websocket.close"
        await queue.aclose()

    run(test)


def test_a_private_spaces_queue_is_404_to_strangers(domain: None, upstream: Upstream) -> None:
    async def test() -> None:
        private = _route(upstream.address, private=True)
        gateway = _gateway(private, MemoryQueueStore(), Clock())
        stranger = Visitor(gateway, BROWSER)
        assert (await stranger.client.get(f"http://{HOST}/.spaceport/queue")).status_code == 404
        assert (await stranger.get()).status_code == 404
        await gateway.aclose()

    run(test)


def test_the_waiting_page_gives_the_expected_wait_from_past_starts(
    domain: None, make_store: Callable
) -> None:
    import time

    from orchestrator.gateway.wait_estimate import Medians

    async def test() -> None:
        gateway = _gateway(_route(None, "BUILDING"), make_store(), Clock())
        estimates = gateway.queue.estimates
        estimates._medians = Medians(start={"cpu-basic": 90.0}, build=200.0)
        estimates._read_at = time.monotonic()  # fresh: no reread of the log
        browser = Visitor(gateway, BROWSER)
        place = await browser.place()
        assert place["estimatedWaitSeconds"] == 290.0
        assert place["waitText"].startswith("Expected wait: about 5 minutes")
        assert "about 5 minutes" in (await browser.get()).text
        api = await Visitor(gateway, API).get()
        assert api.headers["retry-after"] == "120"  # the wait, at most two minutes
        await gateway.aclose()

    run(test)


def test_a_sleeping_space_gives_browsers_a_place_while_it_wakes(
    domain: None, make_store: Callable
) -> None:
    async def test() -> None:
        asleep = _route(None, "STOPPED", sleep="deep")  # a deep sleep: stopped
        gateway = _gateway(asleep, make_store(), Clock())
        browser = Visitor(gateway, BROWSER)
        page = await browser.get()
        assert page.status_code == 503 and "It is waking up." in page.text
        place = await browser.place()
        assert place["doing"] == "waking" and place["position"] == 1
        await gateway.aclose()

    run(test)


# -- the long-poll: a waiting visitor is told at once ------------------------------------
# A real clock and a short idle time: what is tested is that the answer comes well before
# the waiting page's next poll would have (POLL_SECONDS), not a tight timing.

SHORT_IDLE = 3.0  # a long-poll refreshes its place every third of it: 1 s
TOLD_WITHIN = 0.6  # seconds after the slot frees; a poll (POLL_SECONDS) or a refresh misses it


@pytest.fixture
def short_idle(domain: None, monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestrator.core.settings import get_settings

    monkeypatch.setenv("SPACEPORT_VISITOR_IDLE_SECONDS", str(SHORT_IDLE))
    get_settings.cache_clear()


def _live_gateway(route: Route, store: QueueStore) -> Gateway:
    gateway = Gateway(control_plane)  # type: ignore[arg-type]
    gateway.routes = Routes(route)  # type: ignore[assignment]
    gateway.queue = VisitorQueue(store)  # the real clock
    return gateway


async def _long_poll(visitor: Visitor, position: int | None, doing: str, wait: float = 10) -> dict:
    query = f"wait={wait}&position={'' if position is None else position}&doing={doing}"
    answer = await visitor.client.get(f"http://{HOST}/.spaceport/queue?{query}", timeout=30)
    assert answer.status_code == 200
    return answer.json()


def test_a_long_poll_is_told_admitted_as_soon_as_the_slot_frees(
    short_idle: None, upstream: Upstream, make_store: Callable
) -> None:
    import time

    async def test() -> None:
        gateway = _live_gateway(_route(upstream.address), make_store())
        first, second, third = (Visitor(gateway, BROWSER) for _ in range(3))
        before = time.time()
        assert (await first.get()).text == "app"
        after = time.time()  # its slot frees between before + idle and after + idle
        assert 'id="place">1<' in (await second.get()).text
        assert 'id="place">2<' in (await third.get()).text
        told: dict[str, float] = {}

        async def poll(name: str, visitor: Visitor, position: int) -> dict:
            place = await _long_poll(visitor, position, "busy")
            told[name] = time.time()
            return place

        second_place, third_place = await asyncio.gather(
            poll("second", second, 1), poll("third", third, 2)
        )
        assert second_place["admitted"] and second_place["ready"]
        assert third_place["position"] == 1 and not third_place["admitted"]  # moved up
        for name in ("second", "third"):
            # Not before the slot freed (no early admission), and well before a poll.
            assert before + SHORT_IDLE <= told[name] < after + SHORT_IDLE + TOLD_WITHIN, name
        assert (await second.get()).text == "app"
        await gateway.aclose()

    run(test)


def test_a_long_poll_answers_at_once_when_the_page_is_behind(
    short_idle: None, upstream: Upstream, make_store: Callable
) -> None:
    """The page says what it shows: an answer that differs comes back without waiting, and
    one that does not waits for the end of the wait."""
    import time

    async def test() -> None:
        gateway = _live_gateway(_route(upstream.address, concurrency=1), make_store())
        first, second = Visitor(gateway, BROWSER), Visitor(gateway, BROWSER)
        assert (await first.get()).text == "app"
        await second.get()
        started = time.monotonic()
        assert (await _long_poll(second, 3, "busy"))["position"] == 1  # it showed 3
        assert time.monotonic() - started < 0.5
        # Kept active meanwhile, the first visitor holds the slot: nothing changes for the
        # second, whose long-poll ends with its wait (and keeps its place over it).
        keep = asyncio.create_task(_keep_active(first, 1.0))
        started = time.monotonic()
        place = await _long_poll(second, 1, "busy", wait=0.6)
        assert place["position"] == 1 and time.monotonic() - started >= 0.6
        await keep
        await gateway.aclose()

    run(test)


async def _keep_active(visitor: Visitor, seconds: float) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while loop.time() < end:
        assert (await visitor.get()).text == "app"
        await asyncio.sleep(SHORT_IDLE / 5)


def test_a_long_poll_hears_the_space_start_serving(domain: None, make_store: Callable) -> None:
    """A Space that is built and starts: the route table's new route wakes the long-poll,
    which lets the visitor in (no expiry involved: the idle time is a minute)."""
    import time

    async def test() -> None:
        gateway = _live_gateway(_route(None, "BUILDING"), make_store())
        browser = Visitor(gateway, BROWSER)
        assert (await browser.place())["position"] == 1
        polling = asyncio.create_task(_long_poll(browser, 1, "building"))
        await asyncio.sleep(0.2)
        assert not polling.done()
        serving = _route("http://127.0.0.1:9", "RUNNING")
        gateway.routes.route = serving  # type: ignore[attr-defined]
        changed = time.monotonic()
        gateway.queue.route_changed(serving)  # what the RouteTable's listener calls
        place = await polling
        assert place["admitted"] and place["ready"] and time.monotonic() - changed < 1.0
        await gateway.aclose()

    run(test)


def test_the_route_table_tells_its_listeners_each_route_it_applies() -> None:
    from orchestrator.gateway.routes import RouteTable

    table = RouteTable(resync_seconds=60, feed=object())  # type: ignore[arg-type]
    heard: list[Route] = []
    table.listeners.append(heard.append)
    route = _route("http://127.0.0.1:9")
    table._put(route, [route.host])
    table._apply({route.space_id: (_route(None, "PAUSED"), [route.host])})
    assert [r.stage for r in heard] == ["RUNNING", "PAUSED"]


def test_two_gateways_over_one_redis_tell_each_others_long_polls(
    domain: None, upstream: Upstream, redis_url: str
) -> None:
    """A move at one gateway reaches a long-poll at the other through Redis pub/sub, not a
    timer: here nobody's idle time runs out (a minute), the line moves because gateway two
    lets one more in."""
    import time

    _flush(redis_url)

    async def test() -> None:
        one = _live_gateway(_route(upstream.address), RedisQueueStore(redis_url))
        two = _live_gateway(_route(upstream.address), RedisQueueStore(redis_url))
        first, second, third = Visitor(one, BROWSER), Visitor(two, BROWSER), Visitor(one, BROWSER)
        assert (await first.get()).text == "app"
        assert 'id="place">1<' in (await second.get()).text
        assert 'id="place">2<' in (await third.get()).text
        polling = asyncio.create_task(_long_poll(third, 2, "busy"))
        await asyncio.sleep(0.3)  # its subscription is up
        assert not polling.done()
        two.routes.route = _route(upstream.address, concurrency=2)  # type: ignore[attr-defined]
        moved = time.monotonic()
        assert (await second.get()).text == "app"  # let in at gateway two
        place = await polling
        assert place["position"] == 1 and time.monotonic() - moved < 1.0
        await one.aclose()
        await two.aclose()

    run(test)


def test_long_polls_past_the_limit_are_refused_by_name(
    short_idle: None, upstream: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    from orchestrator.core.settings import get_settings

    monkeypatch.setenv("SPACEPORT_VISITOR_QUEUE_MAX_WAITS", "1")
    get_settings.cache_clear()

    async def test() -> None:
        gateway = _live_gateway(_route(upstream.address), MemoryQueueStore())
        first, second, third = (Visitor(gateway, BROWSER) for _ in range(3))
        await first.get()
        await second.get()
        await third.get()
        polling = asyncio.create_task(_long_poll(second, 1, "busy", wait=0.5))
        await asyncio.sleep(0.1)
        assert gateway.queue.waits == 1
        url = f"http://{HOST}/.spaceport/queue?wait=5&position=2&doing=busy"
        refused = await third.client.get(url)
        assert refused.status_code == 503 and refused.headers["x-error-code"] == "QueueWaitsFull"
        assert int(refused.headers["retry-after"]) > 0 and "waiting" in refused.json()["error"]
        await polling
        assert gateway.queue.waits == 0
        assert (await third.place())["position"] == 2  # the refused one kept its place
        await gateway.aclose()

    run(test)
