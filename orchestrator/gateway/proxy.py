"""The gateway's ASGI layer: Space hosts are proxied, everything else goes to the app.

Streaming both ways, never buffered: request bodies (large uploads) go upstream as they
arrive, responses (Gradio's SSE queue, streamed generators) come back chunk by chunk, and
no read timeout closes a stream that waits a long time for its next event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import websockets
from multidict import CIMultiDict
from starlette.types import ASGIApp, Receive, Scope, Send

from orchestrator.core.settings import get_settings
from orchestrator.gateway import credentials, pages
from orchestrator.gateway.activity import Activity
from orchestrator.gateway.routes import Route, RouteTable, space_subdomain
from orchestrator.gateway.visitor_admission import VisitorQueue
from orchestrator.spaces import tokens as space_tokens

log = logging.getLogger(__name__)
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
}


# Messages buffered per websocket direction, at most: with the message limit, this bounds
# one connection's memory (uvicorn's side is set to the same in cli.py).
WEBSOCKET_QUEUE_FRAMES = 4


class Gateway:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.routes = RouteTable()
        self.queue = VisitorQueue()  # who goes in, who waits (gateway/visitor_admission.py)
        # A Space that starts serving, or lets more in, tells its waiting visitors at once.
        self.routes.listeners.append(lambda route: self.queue.route_changed(route))
        self.domain = get_settings().spaces_domain
        self._session: aiohttp.ClientSession | None = None
        self.activity = Activity()  # visitors' traffic, for sleep (gateway/activity.py)
        self._held = 0  # requests held for Spaces that are waking

    @property
    def session(self) -> aiohttp.ClientSession:
        # aiohttp rather than httpx upstream: httpcore spent 4-7 ms of CPU per proxied
        # request here (bench/run_bench.py), aiohttp a fraction of that.
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=30),
                timeout=aiohttp.ClientTimeout(total=None, connect=10, sock_read=None),
                auto_decompress=False,  # bytes pass through as the app encoded them
                skip_auto_headers=("User-Agent", "Accept-Encoding", "Accept"),
                cookie_jar=aiohttp.DummyCookieJar(),  # visitors' cookies are not ours
            )
        return self._session

    async def aclose(self) -> None:
        """Stop following changes and close the upstream connections (at shutdown)."""
        await self.routes.close()
        await self.activity.aclose()
        await self.queue.aclose()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, self._closing_on_shutdown(receive), send)
            return
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        host = _header(scope, b"host") or ""
        subdomain = space_subdomain(host, self.domain)
        if subdomain is None:
            await self.app(scope, receive, send)
            return
        route = await self.routes.lookup(subdomain)
        if route is None or not await _may_visit(route, scope):
            await _page(scope, receive, send, 404, pages.not_found_page(host))
            return
        if route.host != subdomain:  # a label from before a rename
            await _redirect(scope, receive, send, f"{route.host}.{self.domain}")
            return
        if scope["type"] == "http" and _sign(scope) is not None:
            await _sign_redirect(scope, receive, send, route)
            return
        self.activity.seen(route.space_id)
        if route.sleep is not None:  # before anything answers, the visitor queue's page too
            await self.activity.wake(route.space_id)
        if (send := await self.queue.admit(scope, receive, send, route)) is None:
            return  # the visitor waits in line, or the line is full: answered
        if route.address is None:
            served = await self._not_servable(scope, receive, send, route)
            if served is None:
                return  # answered: a page, or a 503 once the hold is over
            route = served
        assert route.address is not None
        if scope["type"] == "websocket":
            frame = self.activity.seen
            await _proxy_websocket(
                scope, receive, send, route.address, host, lambda: frame(route.space_id)
            )
        else:
            await self._proxy_http(scope, receive, send, route, host)

    async def _not_servable(
        self, scope: Scope, receive: Receive, send: Send, route: Route
    ) -> Route | None:
        """What a visitor of a Space with nothing to serve gets: the one place that decides
        it. A sleeping Space is asked to wake (gateway/activity.py). An API client
        (gradio_client: no text/html in Accept, or a websocket) of a Space that sleeps or
        that this gateway is waking is held until it serves, within
        SPACEPORT_WAKE_HOLD_SECONDS, and the route it serves at is returned, to proxy to;
        a browser gets the status page, which reloads itself. None: answered here."""
        waking = route.sleep is not None or route.stage == "SLEEPING"  # (or waking up)
        waking = waking or self.activity.waking(route.space_id)
        if waking and not _wants_html(scope):
            settings = get_settings()
            if self._held >= settings.wake_hold_max_requests:
                await _hold_refused(scope, send)
                return None
            self._held += 1
            log.debug("holding a request for %s while it wakes", route.full_name)
            try:
                served = await self.routes.wait_servable(route.space_id, settings.wake_hold_seconds)
            finally:
                self._held -= 1
            if served is not None:
                log.debug("%s serves: a held request goes on", route.full_name)
                self.activity.woke(route.space_id)
                return served
            log.info("%s did not wake within the hold: 503", route.full_name)
        page = pages.status_page(route.full_name, route.stage, route.error_message)
        await _page(scope, receive, send, 503, page)
        return None

    def _closing_on_shutdown(self, receive: Receive) -> Receive:
        """The app's lifespan, with the gateway's own start and stop around it."""

        async def wrapped() -> Any:
            message = await receive()
            if message["type"] == "lifespan.startup":
                space_tokens.signing_key()  # read now, not from the loop on a first visit
                await self.routes.start()  # the table is read before the first visitor
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
            return message

        return wrapped

    async def _proxy_http(
        self, scope: Scope, receive: Receive, send: Send, route: Route, host: str
    ) -> None:
        assert route.address is not None
        headers = _forward_headers(scope, host)
        has_body = any(k in ("content-length", "transfer-encoding") for k, _ in _raw(scope))
        try:
            response = await self.session.request(
                scope["method"],
                route.address + _path(scope),
                headers=CIMultiDict(headers),
                data=_request_body(receive) if has_body else None,
                allow_redirects=False,
            )
        except (aiohttp.ClientError, OSError):
            page = pages.status_page(route.full_name, "APP_STARTING", None)
            await _page(scope, receive, send, 502, page)
            return
        try:
            response_headers = [
                (k, v)
                for k, v in response.raw_headers
                if k.decode("latin-1").lower() not in HOP_BY_HOP
                and not (k.lower() == b"set-cookie" and credentials.is_platform_set_cookie(v))
            ]
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status,
                    "headers": response_headers,
                }
            )
            async for chunk in response.content.iter_any():
                self.activity.seen(route.space_id)  # a stream (SSE) is traffic while it flows
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except (aiohttp.ClientError, OSError):
            pass  # the app or the visitor went away mid-stream; nothing left to say
        finally:
            response.release()


def _wants_html(scope: Scope) -> bool:
    """A browser (shown the waking page) rather than an API client (held until it serves)."""
    return scope["type"] == "http" and "text/html" in (_header(scope, b"accept") or "")


async def _hold_refused(scope: Scope, send: Send) -> None:
    """Past SPACEPORT_WAKE_HOLD_MAX_REQUESTS: 503 at once, named, with Retry-After."""
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1013})
        return
    body = b"Too many requests are held for Spaces that are waking: retry shortly.\n"
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
        (b"retry-after", b"3"),
        (b"x-error-code", b"WakeHoldFull"),
        (b"x-error-message", body.strip()),
    ]
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _raw(scope: Scope) -> list[tuple[str, bytes]]:
    return [(k.decode("latin-1").lower(), v) for k, v in scope["headers"]]


async def _may_visit(route: Route, scope: Scope) -> bool:
    if not route.private:
        return True
    headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
    # A platform token is checked against the database: off the event loop that proxies
    # every other Space.
    return await asyncio.to_thread(credentials.may_visit, route, headers, _sign(scope))


def _sign(scope: Scope) -> str | None:
    query = scope.get("query_string", b"").decode("latin-1")
    return credentials.sign_param(query)[0]


async def _sign_redirect(scope: Scope, receive: Receive, send: Send, route: Route) -> None:
    """`?__sign=<jwt>` becomes a host-only cookie, and leaves the URL before the app sees it."""
    path = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
    query = scope.get("query_string", b"").decode("latin-1")
    secure = scope.get("scheme") == "https"
    answer = credentials.sign_redirect(route, path, query, secure, int(time.time()))
    headers = [
        (b"location", answer.location.encode("latin-1")),
        (b"content-length", b"0"),
        (b"cache-control", b"no-store"),
    ]
    if answer.set_cookie:
        headers.append((b"set-cookie", answer.set_cookie.encode("latin-1")))
    await send({"type": "http.response.start", "status": 302, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


def _path(scope: Scope) -> str:
    path = scope.get("raw_path") or scope["path"].encode()
    query = scope.get("query_string", b"")
    return path.decode("latin-1") + ("?" + query.decode("latin-1") if query else "")


def _forward_headers(scope: Scope, host: str) -> list[tuple[str, str]]:
    # Every credential the gateway consumed stays here (gateway/credentials.py).
    headers = credentials.forwardable(
        [
            (k.decode("latin-1"), v.decode("latin-1"))
            for k, v in scope["headers"]
            if k.decode("latin-1").lower() not in HOP_BY_HOP
            and not k.lower().startswith(b"x-forwarded-")
            and not k.lower().startswith(b"sec-websocket")
        ]
    )
    client = scope.get("client")
    headers += [
        ("host", host),
        ("x-forwarded-host", host),
        ("x-forwarded-proto", "https" if scope.get("scheme") in ("https", "wss") else "http"),
        ("x-forwarded-for", client[0] if client else ""),
    ]
    return headers


async def _request_body(receive: Receive) -> AsyncIterator[bytes]:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        if body := message.get("body"):
            yield body
        if not message.get("more_body"):
            return


async def _page(scope: Scope, receive: Receive, send: Send, status: int, html: str) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008 if status == 404 else 1013})
        return
    body = html.encode()
    headers = [
        (b"content-type", b"text/html; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
    ]
    if status in (502, 503):
        headers.append((b"retry-after", b"3"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _redirect(scope: Scope, receive: Receive, send: Send, host: str) -> None:
    """308: same method, body, path and query, at the Space's current host."""
    if scope["type"] == "websocket":  # a handshake can't be redirected
        await send({"type": "websocket.close", "code": 1008})
        return
    scheme = get_settings().public_url.split("://", 1)[0]  # as app_url spells Space URLs
    location = f"{scheme}://{host}{_path(scope)}"
    headers = [(b"location", location.encode("latin-1")), (b"content-length", b"0")]
    await send({"type": "http.response.start", "status": 308, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


async def _proxy_websocket(
    scope: Scope,
    receive: Receive,
    send: Send,
    address: str,
    host: str,
    on_frame: Callable[[], None] = lambda: None,
) -> None:
    """`on_frame` is called for each message either way (visitor traffic, for sleep)."""
    await receive()  # websocket.connect
    path = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
    query = credentials.sign_param(scope.get("query_string", b"").decode("latin-1"))[1]
    url = "ws" + address.removeprefix("http") + path + ("?" + query if query else "")
    forwarded = [(k, v) for k, v in _forward_headers(scope, host) if k.lower() != "host"]
    try:
        upstream = await websockets.connect(
            url,
            subprotocols=scope.get("subprotocols") or None,  # type: ignore[arg-type]
            additional_headers=forwarded,
            # A message from the app past the limit closes with 1009 as soon as its frame
            # header says so; nothing of it is buffered (uvicorn does the same for
            # visitors' messages, with the same limit: cli.py).
            max_size=get_settings().websocket_max_message_bytes,
            # Frames read ahead of a slow visitor: each may be a whole message, so this
            # bounds what one connection can hold (the default, 16, held up to 256 MiB).
            max_queue=WEBSOCKET_QUEUE_FRAMES,
            open_timeout=10,
            ping_interval=None,
            compression=None,
        )
    except (TimeoutError, OSError, websockets.exceptions.WebSocketException):
        await send({"type": "websocket.close", "code": 1011})
        return
    await send({"type": "websocket.accept", "subprotocol": upstream.subprotocol})

    async def client_to_upstream() -> None:
        while True:
            message: dict[str, Any] = await receive()
            if message["type"] == "websocket.disconnect":
                await upstream.close()
                return
            on_frame()
            if message.get("bytes") is not None:
                await upstream.send(message["bytes"])
            elif message.get("text") is not None:
                await upstream.send(message["text"])

    async def upstream_to_client() -> None:
        try:
            async for data in upstream:
                on_frame()
                if isinstance(data, bytes):
                    await send({"type": "websocket.send", "bytes": data})
                else:
                    await send({"type": "websocket.send", "text": data})
        except websockets.exceptions.ConnectionClosed:
            pass  # the app closed, or went past the limit: the close code below says which
        finally:
            with contextlib.suppress(Exception):
                await send({"type": "websocket.close", "code": _close_code(upstream)})

    tasks = [asyncio.create_task(client_to_upstream()), asyncio.create_task(upstream_to_client())]
    _done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    await upstream.close()


def _close_code(upstream: Any) -> int:
    """What the visitor is told when the app's side closed: the code of whoever closed
    first, the app or the gateway (1009 for a message past the limit, whatever the app
    answers to that). 1005, 1006 and 1015 only describe a close and can't be sent."""
    protocol = upstream.protocol
    frames = [protocol.close_rcvd, protocol.close_sent]
    if protocol.close_rcvd_then_sent is False:  # the gateway closed first
        frames.reverse()
    for frame in frames:
        if frame is not None and frame.code not in (1005, 1006, 1015):
            return int(frame.code)
    return 1000
