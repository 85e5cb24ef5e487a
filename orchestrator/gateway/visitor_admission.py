"""The visitor queue at the gateway: who goes in, who waits and what they are told.

`VisitorQueue.admit` is the gateway's one call (orchestrator/gateway/proxy.py), made for
each request to a Space's host once the visitor may see the Space. It answers the request
itself (and returns None) when the visitor waits or the line is full; otherwise it returns
the `send` to answer with: the same one for a Space the queue has nothing to say about (a
paused or broken Space keeps its status page; a sleeping one's API requests are held by the
wake path), or one that holds the visitor's slot while the answer streams and sets their
cookie.

- A Space that serves: up to its concurrency visitors are admitted; the rest wait in line
  (gateway/visitor_queue.py), first come first served.
- A Space that is building, waiting for hardware, starting or waking: browsers get a place
  in line and the waiting page; API clients a 503 with Retry-After (the expected wait).
- `GET /.spaceport/queue` on the Space's host: the visitor's place as JSON
  (wire.VisitorPlace); asking keeps the place, and lets the visitor in when it is their
  turn. With `?wait=<seconds>` (at most MAX_WAIT_SECONDS) it is a long-poll: answered as
  soon as the place differs from the `position` and `doing` the page already shows (let
  in, moved up, the Space started serving), else when the wait ends. The waiting page
  asks so, so a visitor is told within milliseconds that their slot is free.

The long-polls of a Space in this process wait on one `_Waiters`: no polling, no thread.
They are woken (and ask the store again) by its one timer, set at the earliest moment the
line can move by itself (`Place.frees_at`: an admitted visitor's idle time running out),
which wakes the first of them in line; by a visit that moved the line (`Place.moved`:
someone dropped or let in), here or, through the store's subscription
(`listen_for_moves`: Redis pub/sub), at another gateway, which wakes them all; and by a
new route for the Space (`route_changed`: it serves, its concurrency changed). The cost
of a request never depends on how many Spaces have waiters.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from urllib.parse import parse_qs

from starlette.types import Message, Receive, Scope, Send

from orchestrator.api import wire
from orchestrator.api.errors import header_safe
from orchestrator.core.settings import get_settings
from orchestrator.gateway import visitor_cookie, waiting_page
from orchestrator.gateway.routes import Route
from orchestrator.gateway.visitor_queue import (
    Limits,
    Place,
    QueueStore,
    listen_for_moves,
    store_from_settings,
)
from orchestrator.gateway.wait_estimate import WaitEstimates

log = logging.getLogger(__name__)
POLL_SECONDS = 3  # how often the waiting page asks
MAX_CONFIRMED = 10_000  # visitors remembered as just admitted, per gateway, at most
WARN_EVERY_SECONDS = 60.0
FULL_RETRY_SECONDS = 30
MAX_RETRY_SECONDS = 120
# The longest long-poll (what the waiting page asks for): below common proxies' 30-60 s
# idle timeouts.
MAX_WAIT_SECONDS = float(waiting_page.MAX_WAIT_SECONDS)
# A timer rings this long after the expiry it is for, so the store sees it expired.
RING_AFTER_SECONDS = 0.005
WAITS_FULL = "QueueWaitsFull"
# What a Space that does not serve is doing, by stage; stages not here (paused, failed,
# stopped) have no line to wait in: their status page says why.
DOING = {
    "BUILDING": "building",
    "RUNNING_BUILDING": "building",
    "APP_STARTING": "starting",
    "RUNNING_APP_STARTING": "starting",
    "SLEEPING": "waking",
    "WAKING": "waking",
}


def servable(route: Route) -> bool:
    """Whether the Space serves visitors now."""
    return route.address is not None


def doing_of(route: Route, serves: bool) -> str | None:
    if serves:
        return "ready"
    if route.sleep is not None:  # SLEEPING, or STOPPED by a deep sleep: the visit wakes it
        return "waking"
    doing = DOING.get(route.stage)
    if doing == "starting" and (route.error_message or "").startswith("waiting for hardware"):
        return "waiting_hardware"
    return doing


class _Waiters:
    """The long-polls of one Space waiting in this process: each a future, with the
    position it was last told, and the Space's one timer."""

    def __init__(self, route: Route) -> None:
        self.futures: dict[asyncio.Future[None], int] = {}
        self.polls = 0  # long-polls of the Space open here (waiting, or asking the store)
        self.route = route  # the newest this process has seen
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = math.inf  # unix seconds, as the store's clock

    def wake(self, everyone: bool) -> None:
        """Everyone, first in line first (so the one let in is told first); or only the
        first in line here and any within the Space's concurrency of them: those whom a
        slot freeing lets in, whose visit then says whether the line moved."""
        waiting = sorted(self.futures.items(), key=lambda item: item[1])
        if not everyone and waiting:
            last = waiting[0][1] + max(1, self.route.concurrency) - 1
            waiting = [(future, position) for future, position in waiting if position <= last]
        for future, _ in waiting:
            if not future.done():
                future.set_result(None)
            del self.futures[future]

    def cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer, self.timer_at = None, math.inf


class VisitorQueue:
    def __init__(
        self, store: QueueStore | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        self._store = store
        self._clock = clock
        self.estimates = WaitEstimates()
        self._pending: set[asyncio.Task[None]] = set()  # "seen" writes on their way
        # (Space, visitor) -> when the store last admitted them: within the slack, their
        # next request goes in without asking the store (one Redis round trip saved).
        self._confirmed: dict[tuple[str, str], float] = {}
        self._warned_at = float("-inf")
        self._waiters: dict[str, _Waiters] = {}  # Space uid -> its long-polls here
        self._waits = 0  # long-polls open in this process (SPACEPORT_VISITOR_QUEUE_MAX_WAITS)
        self._listening: QueueStore | None = None  # the store whose moves are followed

    @property
    def store(self) -> QueueStore:
        if self._store is None:
            self._store = store_from_settings()
        return self._store

    @property
    def waits(self) -> int:
        """Long-polls open now."""
        return self._waits

    def route_changed(self, route: Route) -> None:
        """The route table applied a new route (RouteTable's listener): the Space's
        long-polls here ask again with it (it may serve now, or let more in). O(1)."""
        waiters = self._waiters.get(route.uid)
        if waiters is not None and waiters.route != route:
            waiters.route = route
            waiters.wake(everyone=True)

    def _moved(self, space: str) -> None:
        """A line moved (here, or at another gateway: the store's subscription)."""
        if (waiters := self._waiters.get(space)) is not None:
            waiters.wake(everyone=True)

    async def aclose(self) -> None:
        for waiters in self._waiters.values():
            waiters.cancel_timer()
            waiters.wake(everyone=True)  # each answers what it has
        await asyncio.gather(*self._pending, return_exceptions=True)
        await self.estimates.aclose()
        if self._store is not None:
            await self._store.aclose()
            self._store = None

    async def admit(self, scope: Scope, receive: Receive, send: Send, route: Route) -> Send | None:
        serves = servable(route)
        doing = doing_of(route, serves)
        status_asked = scope["type"] == "http" and scope["path"] == waiting_page.STATUS_PATH
        if doing is None:
            if not status_asked:
                return send  # nothing to wait for: the gateway's status page says why
            await self._stopped(send, route)  # the waiting page reloads to show that page
            return None
        browser = scope["type"] == "http" and "text/html" in (_header(scope, b"accept") or "")
        if not serves and not browser and not status_asked:
            if doing == "waking":
                return send  # held until the Space is up, by the wake path
            await self._refuse(scope, send, route, doing)
            return None
        visitor, new_cookie = _visitor(scope, route, browser)
        settings = get_settings()
        limits = Limits(
            route.concurrency, settings.visitor_queue_depth, settings.visitor_idle_seconds
        )
        now = self._clock()
        key = (route.uid, visitor)
        if serves and not status_asked and now - self._confirmed.get(key, -1e18) < limits.slack:
            return self._holding(send, route.uid, visitor, limits, None)  # admitted just now
        try:
            place = await self.store.visit(route.uid, visitor, now=now, limits=limits, open=serves)
        except Exception:  # noqa: BLE001 - a queue that can't be reached lets visitors in
            self._warn("the store failed; letting visitors in")
            return send
        self._visited(route.uid, visitor, place, serves, now)
        cookie = (
            visitor_cookie.set_cookie(route.uid, visitor, _secure(scope)) if new_cookie else None
        )
        if status_asked:
            answer = self._place(route, place, serves, doing)
            wait, known = _long_poll_of(scope, answer)
            if wait > 0 and not _news(answer, known):
                if self._waits >= settings.visitor_queue_max_waits:
                    await _waits_full(send, cookie)
                    return None
                answer = await self._wait(receive, route, visitor, place, wait, known)
                if answer is None:
                    return None  # the visitor went away, or the Space stopped (answered)
            await _json(send, 200, answer.model_dump_json().encode(), cookie, answer.retry_after)
            return None
        if place.admitted and serves:
            return self._holding(send, route.uid, visitor, limits, cookie)
        answer = self._place(route, place, serves, doing)
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1013})  # try again later
        elif browser:
            page = waiting_page.render(route.full_name, answer).encode()
            await _respond(send, 503, page, b"text/html; charset=utf-8", cookie, answer.retry_after)
        else:
            await _error(send, answer.message, answer.retry_after, cookie)
        return None

    def _visited(self, space: str, visitor: str, place: Place, serves: bool, now: float) -> None:
        if place.admitted and serves:
            if len(self._confirmed) >= MAX_CONFIRMED:
                self._confirmed.clear()
            self._confirmed[(space, visitor)] = now
        if place.moved:
            self._moved(space)

    async def _wait(
        self,
        receive: Receive,
        route: Route,
        visitor: str,
        place: Place,
        wait: float,
        known: tuple[int | None, str],
    ) -> wire.VisitorPlace | None:
        """A long-poll: the visitor's answer once it differs from `known` (position,
        doing), or the last one when `wait` ends; None when the visitor went away. Its
        place is kept (asked again) every third of the idle time meanwhile."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        self._waits += 1
        if self._listening is not self.store:
            self._listening = self.store
            listen_for_moves(self.store, self._moved)
        waiters = self._waiters.get(route.uid)
        if waiters is None:
            waiters = self._waiters[route.uid] = _Waiters(route)
        waiters.polls += 1
        route = waiters.route  # the newest
        gone = loop.create_task(_disconnected(receive))
        answer: wire.VisitorPlace | None = None
        try:
            while True:
                self._arm(route.uid, waiters, place.frees_at)
                future: asyncio.Future[None] = loop.create_future()
                waiters.futures[future] = place.position
                settings = get_settings()
                left = min(deadline - loop.time(), settings.visitor_idle_seconds / 3)
                await asyncio.wait(
                    {future, gone}, timeout=max(0.0, left), return_when=asyncio.FIRST_COMPLETED
                )
                waiters.futures.pop(future, None)
                if gone.done():
                    return None
                route = waiters.route
                serves = servable(route)
                doing = doing_of(route, serves)
                if doing is None:
                    return self._stopped_place(route)  # paused, failed: the page reloads
                limits = Limits(
                    route.concurrency, settings.visitor_queue_depth, settings.visitor_idle_seconds
                )
                now = self._clock()
                try:
                    place = await self.store.visit(
                        route.uid, visitor, now=now, limits=limits, open=serves
                    )
                except Exception:  # noqa: BLE001 - answered as it was; the page asks again
                    self._warn("the store failed during a long-poll")
                    return self._place(route, place, serves, doing)
                self._visited(route.uid, visitor, place, serves, now)
                answer = self._place(route, place, serves, doing)
                if _news(answer, known) or loop.time() >= deadline:
                    return answer
        finally:
            self._waits -= 1
            gone.cancel()
            waiters.polls -= 1
            if not waiters.polls and self._waiters.get(route.uid) is waiters:
                waiters.cancel_timer()
                del self._waiters[route.uid]

    def _arm(self, space: str, waiters: _Waiters, at: float | None) -> None:
        """The Space's timer at `at` (store clock), unless it rings earlier already."""
        if at is None or at >= waiters.timer_at:
            return
        waiters.cancel_timer()
        delay = max(0.0, at - self._clock()) + RING_AFTER_SECONDS

        def ring() -> None:
            waiters.timer, waiters.timer_at = None, math.inf
            waiters.wake(everyone=False)

        waiters.timer = asyncio.get_running_loop().call_later(delay, ring)
        waiters.timer_at = at

    async def _stopped(self, send: Send, route: Route) -> None:
        answer = self._stopped_place(route)
        await _json(send, 200, answer.model_dump_json().encode(), None, answer.retry_after)

    def _stopped_place(self, route: Route) -> wire.VisitorPlace:
        return wire.VisitorPlace(
            admitted=False,
            ready=False,
            full=False,
            position=None,
            waiting=0,
            doing="stopped",
            message=f"It is not running ({route.stage}).",
            estimated_wait_seconds=None,
            retry_after=POLL_SECONDS,
            place_text="",
            place_label="",
            wait_text="",
        )

    async def _refuse(self, scope: Scope, send: Send, route: Route, doing: str) -> None:
        """An API client's request to a Space that is not up: 503, and when to try again."""
        wait = self.estimates.current().wait_seconds(doing, route.hardware, route.sleep)
        retry = min(MAX_RETRY_SECONDS, max(POLL_SECONDS, round(wait or POLL_SECONDS)))
        words = _message(route, doing)
        message = f"{route.full_name}: {words[0].lower()}{words[1:]}"  # alice/x: it is starting.
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1013})
        else:
            await _error(send, message, retry, None)

    def _place(self, route: Route, place: Place, serves: bool, doing: str) -> wire.VisitorPlace:
        if place.full:
            doing = "full"
        elif serves and not place.admitted:
            doing = "busy"
        wait = self.estimates.current().wait_seconds(doing, route.hardware, route.sleep)
        if place.full:
            text, label = "Full", "this Space is full: try again later"
        elif place.admitted:
            text, label = "You're in", "the Space opens for you as soon as it is ready"
        else:
            text, label = str(place.position), f"your place in line ({place.waiting} waiting)"
        return wire.VisitorPlace(
            admitted=place.admitted,
            ready=serves,
            full=place.full,
            position=place.position or None,
            waiting=place.waiting,
            doing=doing,
            message=_message(route, doing),
            estimated_wait_seconds=wait,
            retry_after=FULL_RETRY_SECONDS if place.full else POLL_SECONDS,
            place_text=text,
            place_label=label,
            wait_text=_wait_text(wait, doing, route),
        )

    def _holding(
        self, send: Send, space: str, visitor: str, limits: Limits, cookie: str | None
    ) -> Send:
        """`send`, which keeps the visitor's slot while the answer is open (a stream, a
        websocket: every half idle time) and marks them active when one that took longer
        than the slack ends (a shorter one's visit was refresh enough); and sets their
        cookie."""
        loop = asyncio.get_running_loop()
        timer: asyncio.TimerHandle | None = None
        idle, started = limits.idle_seconds, loop.time()

        def mark_seen() -> None:
            task = loop.create_task(self._seen(space, visitor))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

        def keep() -> None:
            nonlocal timer
            mark_seen()
            timer = loop.call_later(idle / 2, keep)

        async def holding(message: Message) -> None:
            nonlocal timer
            kind = message["type"]
            if kind == "http.response.start" and cookie is not None:
                headers = [*message.get("headers", []), (b"set-cookie", cookie.encode())]
                message = {**message, "headers": headers}
            if kind in ("http.response.start", "websocket.accept") and timer is None:
                timer = loop.call_later(idle / 2, keep)
            ended = kind == "websocket.close" or (
                kind == "http.response.body" and not message.get("more_body", False)
            )
            try:
                await send(message)
            except BaseException:
                ended = True
                raise
            finally:
                if ended and timer is not None:
                    timer.cancel()
                    timer = None
                    if loop.time() - started > limits.slack:
                        mark_seen()

        return holding

    async def _seen(self, space: str, visitor: str) -> None:
        try:
            await self.store.seen(space, visitor, now=self._clock())
        except Exception:  # noqa: BLE001 - a missed refresh costs the slot at worst
            self._warn("refreshing a slot failed")

    def _warn(self, what: str) -> None:
        """Logged with its cause once a minute at most: a Redis that is down fails every
        request, and must not write a traceback for each."""
        now = time.monotonic()
        if now - self._warned_at >= WARN_EVERY_SECONDS:
            self._warned_at = now
            log.warning("visitor queue: %s", what, exc_info=True)


def _long_poll_of(scope: Scope, answer: wire.VisitorPlace) -> tuple[float, tuple[int | None, str]]:
    """`?wait=<seconds>&position=<n>&doing=<what>`: how long to wait at most, and what
    the page shows (without them: the answer as it is now)."""
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    try:
        wait = float(query.get("wait", ["0"])[0])
    except ValueError:
        wait = 0.0
    wait = min(MAX_WAIT_SECONDS, wait) if math.isfinite(wait) and wait > 0 else 0.0
    position: int | None = answer.position
    if "position" in query:
        try:
            position = int(query["position"][0])
        except ValueError:
            position = None
    doing = query["doing"][0] if "doing" in query else answer.doing
    return wait, (position, doing)


def _news(answer: wire.VisitorPlace, known: tuple[int | None, str]) -> bool:
    """Whether the answer tells the page something: it may go in, the line is full, its
    place or what the Space is doing changed."""
    return (
        (answer.admitted and answer.ready)
        or answer.full
        or (answer.position, answer.doing) != known
    )


async def _disconnected(receive: Receive) -> None:
    """Returns when the visitor has gone away (an ASGI server says so through `receive`
    once the request's body is read)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        if not message.get("more_body", False):
            break
    while (await receive())["type"] != "http.disconnect":
        pass


async def _waits_full(send: Send, cookie: str | None) -> None:
    """Past SPACEPORT_VISITOR_QUEUE_MAX_WAITS: 503 at once, named, with Retry-After; the
    visit was made, so the place is kept."""
    message = "Too many visitors are waiting on this gateway: asking again shortly."
    body = wire.ErrorBody(error=message).model_dump_json().encode()
    headers: list[tuple[bytes, bytes]] = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
        (b"retry-after", str(POLL_SECONDS).encode()),
        (b"x-error-code", WAITS_FULL.encode()),
        (b"x-error-message", message.encode()),
    ]
    if cookie is not None:
        headers.append((b"set-cookie", cookie.encode()))
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _visitor(scope: Scope, route: Route, browser: bool) -> tuple[str, bool]:
    """The visitor's id, and whether it is new (its cookie is to be set).

    A browser gets a place of its own under a new cookie, except in a frame over plain
    HTTP: a Space's page embeds the app from the Space's own host, a site of its own, and
    there a browser neither keeps nor sends a SameSite=Lax cookie (and SameSite=None needs
    Secure). A new id for each of its requests would put each reload of the waiting page at
    the back of the line while its long-poll, sent without the cookie, holds the slot; so
    such a frame is named by its address, as a client without cookies is. Over HTTPS the
    cookie is partitioned SameSite=None (visitor_cookie.set_cookie) and comes back."""
    for value in _cookies(scope, visitor_cookie.COOKIE):
        if (visitor := visitor_cookie.verified_id(route.uid, value)) is not None:
            return visitor, False
    framed = _header(scope, b"sec-fetch-dest") == "iframe"
    if browser and not (framed and not _secure(scope)):  # a browser keeps cookies
        return visitor_cookie.new_id(), True
    client = scope.get("client")
    address = client[0] if client else ""
    return visitor_cookie.cookieless_id(route.uid, address), False


def _message(route: Route, doing: str) -> str:
    if doing == "building":
        return "It is being built."
    if doing == "waiting_hardware":
        what = "a GPU" if route.gpu else "hardware"
        place = route.hardware_position
        line = f" (place {place} in the line for {route.hardware})" if place else ""
        return f"It is waiting for {what}{line}."
    if doing == "starting":
        return "It is starting."
    if doing == "waking":
        return "It is waking up."
    if doing == "busy":
        some = "1 visitor" if route.concurrency == 1 else f"{route.concurrency} visitors"
        return (
            f"It lets in {some} at a time, and they are all here: you go in as soon as one leaves."
        )
    if doing == "full":
        return "Its line is full. Please try again later."
    return "It is ready."


def _wait_text(wait: float | None, doing: str, route: Route) -> str:
    if doing in ("busy", "full"):
        return "The wait depends on when the visitors ahead of you leave."
    if wait is None:
        return "No estimate yet: this tier has no recent starts to go by."
    minutes = round(wait / 60)
    about = f"about {minutes} minute{'s' if minutes != 1 else ''}" if minutes else "under a minute"
    return f"Expected wait: {about} (from recent starts on {route.hardware})."


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


def _cookies(scope: Scope, name: str) -> list[str]:
    values = []
    for key, value in scope["headers"]:
        if key != b"cookie":
            continue
        for part in value.decode("latin-1").split(";"):
            cookie_name, sep, cookie_value = part.strip().partition("=")
            if sep and cookie_name.strip() == name:
                values.append(cookie_value.strip())
    return values


def _secure(scope: Scope) -> bool:
    return scope.get("scheme") in ("https", "wss")


async def _respond(
    send: Send, status: int, body: bytes, content_type: bytes, cookie: str | None, retry: int
) -> None:
    headers: list[tuple[bytes, bytes]] = [
        (b"content-type", content_type),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
        (b"retry-after", str(retry).encode()),
    ]
    if cookie is not None:
        headers.append((b"set-cookie", cookie.encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _json(send: Send, status: int, body: bytes, cookie: str | None, retry: int) -> None:
    await _respond(send, status, body, b"application/json", cookie, retry)


async def _error(send: Send, message: str, retry: int, cookie: str | None) -> None:
    """503 in the API's one error shape (orchestrator/api/errors.py), with Retry-After."""
    body = wire.ErrorBody(error=message).model_dump_json().encode()
    headers: list[tuple[bytes, bytes]] = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
        (b"retry-after", str(retry).encode()),
        (b"x-error-message", header_safe(message).encode()),
    ]
    if cookie is not None:
        headers.append((b"set-cookie", cookie.encode()))
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": body})
