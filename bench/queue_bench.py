"""What the visitor queue costs the gateway per proxied request: queue off vs on, in one run.

    .venv/bin/python -m bench.queue_bench                  # memory store, and Redis if found
    .venv/bin/python -m bench.queue_bench --requests 5000 --clients 16

The real `Gateway` (orchestrator/gateway/proxy.py) in this process, called as an ASGI app
(no HTTP client in front of it, so the gateway's own work is what is timed), in front of an
aiohttp upstream on the same loop that answers "ok". One public running Space; each client
is one visitor with its cookie, all admitted (the Space's concurrency is above the number
of clients), so what is measured is the admitted visitor's path: the cookie's HMAC, one
`visit` and the slot's refresh at the end. Configurations, interleaved over several rounds:

* **off**: `VisitorQueue.admit` replaced by a pass-through (the gateway before the queue);
  **off again** is a second such gateway: its ratio to **off** is the run's noise floor;
* **memory**: the embedded default;
* **redis**: a throwaway redis-server (tests/services.py), one Lua script per request plus
  the refresh.

Prints req/s of each (median over rounds) and its ratio to **off**. Nothing is asserted:
timings on a shared machine are read, not tested (bench/README.md).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

DOMAIN = "spaces.bench"
HOST = f"bench-demo.{DOMAIN}".encode()


async def _upstream() -> tuple[Any, str]:
    from aiohttp import web

    async def ok(_request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", ok)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


class _Routes:
    def __init__(self, route: Any) -> None:
        self.route = route

    async def lookup(self, subdomain: str) -> Any:
        return self.route

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass


async def _request(gateway: Callable[..., Awaitable[None]], cookie: bytes) -> int:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/",
        "raw_path": b"/",
        "query_string": b"",
        "headers": [(b"host", HOST), (b"accept", b"*/*"), (b"cookie", cookie)],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
    }
    status = 0

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await gateway(scope, receive, send)
    return status


async def _measure(gateway: Any, cookies: list[bytes], requests: int) -> float:
    per_client = requests // len(cookies)

    async def client(cookie: bytes) -> None:
        for _ in range(per_client):
            assert await _request(gateway, cookie) == 200

    started = time.perf_counter()
    await asyncio.gather(*(client(c) for c in cookies))
    return per_client * len(cookies) / (time.perf_counter() - started)


async def _main(requests: int, clients: int, rounds: int, redis_url: str | None) -> None:
    from orchestrator.gateway import visitor_cookie
    from orchestrator.gateway.proxy import Gateway
    from orchestrator.gateway.routes import Route
    from orchestrator.gateway.visitor_admission import VisitorQueue
    from orchestrator.gateway.visitor_queue import MemoryQueueStore

    runner, address = await _upstream()
    route = Route(
        space_id=1,
        owner_id=1,
        full_name="bench/demo",
        private=False,
        stage="RUNNING",
        error_message=None,
        address=address,
        host="bench-demo",
        uid="0123456789abcdef01234567",
        concurrency=clients * 2,
    )
    values = [
        visitor_cookie.cookie_value(route.uid, visitor_cookie.new_id()) for _ in range(clients)
    ]
    cookies = [f"{visitor_cookie.COOKIE}={value}".encode() for value in values]

    async def passthrough(_scope: Any, _receive: Any, send: Any, _route: Any) -> Any:
        return send

    gateways: dict[str, Any] = {}
    # "off again": a second pass-through gateway, whose ratio to "off" is the noise floor.
    for name in ["off", "off again", "memory"] + (["redis"] if redis_url else []):
        gateway = Gateway(None)  # type: ignore[arg-type]
        gateway.routes = _Routes(route)  # type: ignore[assignment]
        if name.startswith("off"):
            gateway.queue.admit = passthrough  # type: ignore[method-assign]
        elif name == "memory":
            gateway.queue = VisitorQueue(MemoryQueueStore())
        else:
            from orchestrator.gateway.visitor_queue_redis import RedisQueueStore

            gateway.queue = VisitorQueue(RedisQueueStore(redis_url or ""))
        await _measure(gateway, cookies, max(clients, requests // 10))  # warm up
        gateways[name] = gateway
    figures: dict[str, list[float]] = {name: [] for name in gateways}
    names = list(gateways)
    for round_number in range(rounds):
        # Each round in another order: the first measured of a round runs faster or
        # slower (the upstream's and the collector's state), which must not favour one.
        turn = round_number % len(names)
        for name in names[turn:] + names[:turn]:
            gc.collect()
            figures[name].append(await _measure(gateways[name], cookies, requests))
    off = statistics.median(figures["off"])
    print(f"{requests} requests x {rounds} rounds, {clients} visitors at once, all admitted")
    print(f"{'queue':<10} {'req/s':>8} {'vs off':>7}")
    for name, values in figures.items():
        median = statistics.median(values)
        print(f"{name:<10} {median:>8.0f} {median / off:>7.2f}")
    print("\nadmit() alone, microseconds per call (a visitor admitted a moment ago, and one")
    print("whose visit goes to the store):")
    scope = {"type": "http", "path": "/", "headers": [(b"accept", b"*/*"), (b"cookie", cookies[0])]}
    for name, gateway in gateways.items():
        if name.startswith("off"):
            continue
        print(f"{name:<10} {await _admit_micros(gateway.queue, scope, route, False):>8.1f}", end="")
        print(f" {await _admit_micros(gateway.queue, scope, route, True):>8.1f}")
    for gateway in gateways.values():
        await gateway.aclose()
    await runner.cleanup()


async def _admit_micros(queue: Any, scope: dict, route: Any, to_store: bool) -> float:
    async def send(_message: dict) -> None:
        pass

    calls = 5000
    started = time.perf_counter()
    for _ in range(calls):
        if to_store:
            queue._confirmed.clear()
        await queue.admit(scope, None, send, route)
    return (time.perf_counter() - started) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="queue-bench-"))
    for key in list(os.environ):
        if key.startswith("SPACEPORT_"):
            del os.environ[key]
    os.environ["SPACEPORT_HOME"] = str(home)
    os.environ["SPACEPORT_SPACES_DOMAIN"] = DOMAIN
    stop = None
    redis_url = None
    if shutil.which("redis-server"):
        from tests.services import start_redis

        redis_url, stop = start_redis(home / "redis")
    from orchestrator.core import db

    db.migrate()  # the gateway writes visitors' activity (gateway/activity.py)
    try:
        asyncio.run(_main(args.requests, args.clients, args.rounds, redis_url))
    finally:
        if stop is not None:
            stop()
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
