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
  (wire.VisitorPlace), which the waiting page asks for every few seconds; asking keeps the
  place, and lets the visitor in when it is their turn.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from starlette.types import Message, Receive, Scope, Send

from orchestrator.api import wire
from orchestrator.api.errors import header_safe
from orchestrator.core.settings import get_settings
from orchestrator.gateway import visitor_cookie, waiting_page
from orchestrator.gateway.routes import Route
from orchestrator.gateway.visitor_queue import Limits, Place, QueueStore, store_from_settings
from orchestrator.gateway.wait_estimate import WaitEstimates

log = logging.getLogger(__name__)
POLL_SECONDS = 3  # how often the waiting page asks
MAX_CONFIRMED = 10_000  # visitors remembered as just admitted, per gateway, at most
WARN_EVERY_SECONDS = 60.0
FULL_RETRY_SECONDS = 30
MAX_RETRY_SECONDS = 120
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

    @property
    def store(self) -> QueueStore:
        if self._store is None:
            self._store = store_from_settings()
        return self._store

    async def aclose(self) -> None:
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
        if place.admitted and serves:
            if len(self._confirmed) >= MAX_CONFIRMED:
                self._confirmed.clear()
            self._confirmed[key] = now
        cookie = (
            visitor_cookie.set_cookie(route.uid, visitor, _secure(scope)) if new_cookie else None
        )
        if status_asked:
            answer = self._place(route, place, serves, doing)
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

    async def _stopped(self, send: Send, route: Route) -> None:
        answer = wire.VisitorPlace(
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
        await _json(send, 200, answer.model_dump_json().encode(), None, answer.retry_after)

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


def _visitor(scope: Scope, route: Route, browser: bool) -> tuple[str, bool]:
    """The visitor's id, and whether it is new (its cookie is to be set)."""
    for value in _cookies(scope, visitor_cookie.COOKIE):
        if (visitor := visitor_cookie.verified_id(route.uid, value)) is not None:
            return visitor, False
    if browser:  # a browser keeps cookies: a place of its own
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
