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

Prints req/s of each (median over rounds) and its ratio to **off**.

Then, in the same command, **500 waiting visitors** (`--waiting`) on one Space of
concurrency 1, over real HTTP on loopback: the Gateway under uvicorn in a child process
(`--serve`, so it has a CPU of its own beside the clients'), one child per configuration
(off, memory, redis), an aiohttp upstream in it. Measured:

* **admission latency**: the time the gateway takes to answer a waiting visitor, p50/p99
  and answers per second, with 50 clients at once: a newcomer's page (the waiting page,
  503, with its cookie), the same visitor's reload (keeps the place) and its
  `/.spaceport/queue` JSON. The reference is the same page request with the queue off
  (proxied to the upstream), whose ratio is printed;
* **told**: all of them long-poll (`?wait=25`, as the waiting page does); the admitted
  visitor leaves; the time from its slot freeing (its last request's send plus the idle
  time, SPACEPORT_VISITOR_IDLE_SECONDS=`--idle`: an upper bound of the true moment, so the
  figure errs long) until the next visitor's long-poll says admitted; that one loads the
  page once (past the slack, so the store sees it) and leaves in turn: `--frees` times.
  Meanwhile the other waiters are told their new places: those answers per second too.

Nothing is asserted: timings on a shared machine are read, not tested (bench/README.md).
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
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported where used: the settings are set first
    from orchestrator.gateway.routes import Route

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


def _bench_route(address: str, concurrency: int) -> Route:
    """The one public, running Space every gateway here serves, at the upstream `address`."""
    from orchestrator.gateway.routes import Route

    return Route(
        space_id=1,
        owner_id=1,
        full_name="bench/demo",
        private=False,
        stage="RUNNING",
        error_message=None,
        address=address,
        host="bench-demo",
        uid="0123456789abcdef01234567",
        concurrency=concurrency,
    )


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
    from orchestrator.gateway.visitor_admission import VisitorQueue
    from orchestrator.gateway.visitor_queue import MemoryQueueStore

    runner, address = await _upstream()
    route = _bench_route(address, concurrency=clients * 2)
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


# -- 500 waiting visitors, over HTTP -------------------------------------------------------

BROWSER_ACCEPT = "text/html,application/xhtml+xml,*/*;q=0.8"
AT_ONCE = 50  # clients at once for the latency rounds
PHASE_SECONDS = 120.0  # each phase ends by then at the latest (bounded time)


def _percentile(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


async def _serve(mode: str, port: int, redis_url: str | None) -> None:
    """The child: the real Gateway under uvicorn, one Space of concurrency 1."""
    import uvicorn

    from orchestrator.gateway.proxy import Gateway
    from orchestrator.gateway.visitor_admission import VisitorQueue
    from orchestrator.gateway.visitor_queue import MemoryQueueStore

    runner, address = await _upstream()
    route = _bench_route(address, concurrency=1)
    gateway = Gateway(None)  # type: ignore[arg-type]
    gateway.routes = _Routes(route)  # type: ignore[assignment]
    if mode == "off":

        async def passthrough(_scope: Any, _receive: Any, send: Any, _route: Any) -> Any:
            return send

        gateway.queue.admit = passthrough  # type: ignore[method-assign]
    elif mode == "memory":
        gateway.queue = VisitorQueue(MemoryQueueStore())
    else:
        from orchestrator.gateway.visitor_queue_redis import RedisQueueStore

        gateway.queue = VisitorQueue(RedisQueueStore(redis_url or ""))
    config = uvicorn.Config(
        gateway, host="127.0.0.1", port=port, log_level="warning", lifespan="off", backlog=2048
    )
    try:
        await uvicorn.Server(config).serve()
    finally:
        await gateway.aclose()
        await runner.cleanup()


class _Child:
    def __init__(self, mode: str, redis_url: str | None, idle: float) -> None:
        import subprocess
        import sys

        from tests.services import free_port

        self.port = free_port()
        env = {
            **os.environ,
            "SPACEPORT_VISITOR_IDLE_SECONDS": str(idle),
            "SPACEPORT_VISITOR_QUEUE_DEPTH": "5000",
        }
        command = [sys.executable, "-m", "bench.queue_bench", "--serve", mode]
        command += ["--port", str(self.port), "--redis-url", redis_url or ""]
        self.process = subprocess.Popen(command, env=env)
        self.url = f"http://127.0.0.1:{self.port}"

    async def ready(self) -> None:
        for _ in range(300):
            try:
                _reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
            except OSError:
                await asyncio.sleep(0.1)
                continue
            writer.close()
            return
        raise RuntimeError("the gateway did not start")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


class _Visitor:
    def __init__(self) -> None:
        self.cookie: str | None = None
        self.position: int | None = None

    def headers(self, accept: str = BROWSER_ACCEPT) -> dict[str, str]:
        headers = {"host": HOST.decode(), "accept": accept}
        if self.cookie is not None:
            headers["cookie"] = self.cookie
        return headers

    def keep_cookie(self, answer: Any) -> None:
        from orchestrator.gateway import visitor_cookie

        for value in answer.headers.getall("set-cookie", []):
            if value.startswith(visitor_cookie.COOKIE + "="):
                self.cookie = value.split(";", 1)[0]


async def _timed_round(
    session: Any, url: str, visitors: list[_Visitor], path: str, accept: str, expect: int
) -> tuple[list[float], float]:
    """Each visitor asks once, AT_ONCE at a time: (latencies in ms, answers per second)."""
    latencies: list[float] = []
    pending = list(visitors)

    async def client() -> None:
        while pending:
            visitor = pending.pop()
            started = time.perf_counter()
            async with session.get(url + path, headers=visitor.headers(accept)) as answer:
                body = await answer.read()
                latencies.append((time.perf_counter() - started) * 1000)
                assert answer.status == expect, (answer.status, body[:200])
                visitor.keep_cookie(answer)
                if path.startswith("/.spaceport/queue"):
                    visitor.position = (await answer.json(content_type=None))["position"]

    started = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(client() for _ in range(AT_ONCE))), PHASE_SECONDS)
    return latencies, len(visitors) / (time.perf_counter() - started)


async def _stay(session: Any, url: str, holder: _Visitor, idle: float) -> None:
    while True:
        await asyncio.sleep(idle / 5)
        async with session.get(url + "/", headers=holder.headers()) as answer:
            await answer.read()
            assert answer.status == 200, answer.status


async def _told(
    session: Any, url: str, holder: _Visitor, waiting: list[_Visitor], frees: int, idle: float
) -> tuple[list[float], list[float]]:
    """The long-polls, and `frees` slots freeing one after another: (told latencies in ms;
    for each free, ms until the last of the others was told their new place)."""
    frees_at = [0.0]
    moments: list[float] = []  # each slot's freeing
    told: list[float] = []
    moved: list[float] = []  # when each position answer came
    done = asyncio.Event()

    async def load_page(visitor: _Visitor) -> None:
        """The reload into the app, past the slack (so the store sees it), then leave."""
        await asyncio.sleep(idle / 10 + 0.05)
        sent = time.time()
        async with session.get(url + "/", headers=visitor.headers()) as answer:
            await answer.read()
            assert answer.status == 200, answer.status
        frees_at[0] = sent + idle
        moments.append(frees_at[0])

    async def long_poll(visitor: _Visitor) -> None:
        while not done.is_set():
            query = f"wait=25&position={visitor.position or ''}&doing=busy"
            headers = visitor.headers("application/json")
            async with session.get(f"{url}/.spaceport/queue?{query}", headers=headers) as answer:
                place = await answer.json(content_type=None)
            if place["admitted"]:
                told.append((time.time() - frees_at[0]) * 1000)
                if len(told) >= frees:
                    done.set()
                    return
                await load_page(visitor)
                return
            moved.append(time.time())
            visitor.position = place["position"]

    await load_page(holder)
    tasks = [asyncio.create_task(long_poll(v)) for v in waiting]
    try:
        await asyncio.wait_for(done.wait(), PHASE_SECONDS)
        await asyncio.sleep(min(1.0, idle / 2))  # the last free's position answers
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    all_told = []
    for start, end in zip(moments, [*moments[1:], float("inf")], strict=True):
        after = [at for at in moved if start <= at < end]
        if after:
            all_told.append((max(after) - start) * 1000)
    return told, all_told


async def _waiting_main(waiting_count: int, frees: int, idle: float, redis_url: str | None) -> None:
    import aiohttp

    modes = ["off", "memory"] + (["redis"] if redis_url else [])
    print(
        f"\n{waiting_count} waiting visitors on one Space of concurrency 1, over HTTP on "
        f"loopback ({AT_ONCE} at once; idle time {idle:g} s)"
    )
    rows: dict[str, dict[str, tuple[float, float, float]]] = {}
    told_rows: dict[str, tuple[list[float], list[float]]] = {}
    for mode in modes:
        child = _Child(mode, redis_url, idle)
        connector = aiohttp.TCPConnector(limit=0, force_close=False)
        timeout = aiohttp.ClientTimeout(total=60)
        async with aiohttp.ClientSession(
            connector=connector, timeout=timeout, cookie_jar=aiohttp.DummyCookieJar()
        ) as session:
            try:
                await child.ready()
                visitors = [_Visitor() for _ in range(waiting_count)]
                if mode == "off":  # the reference: the same page, proxied to the app
                    await _timed_round(
                        session, child.url, visitors[:AT_ONCE], "/", BROWSER_ACCEPT, 200
                    )
                    lat, rate = await _timed_round(
                        session, child.url, visitors, "/", BROWSER_ACCEPT, 200
                    )
                    rows[mode] = {
                        "page (proxied)": (_percentile(lat, 50), _percentile(lat, 99), rate)
                    }
                    continue
                holder = _Visitor()
                await _timed_round(session, child.url, [holder], "/", BROWSER_ACCEPT, 200)
                # The holder stays active while the rounds run (they may take longer than
                # the idle time on a slow machine); it leaves when the long-polls start.
                staying = asyncio.create_task(_stay(session, child.url, holder, idle))
                # The first AT_ONCE newcomers warm the connections (and the store's script)
                # up, not counted; they wait in line with the others.
                url = child.url
                await _timed_round(session, url, visitors[:AT_ONCE], "/", BROWSER_ACCEPT, 503)
                figures: dict[str, tuple[float, float, float]] = {}
                rounds = [
                    ("newcomer's page", visitors[AT_ONCE:], "/", BROWSER_ACCEPT, 503),
                    ("reload (its place)", visitors, "/", BROWSER_ACCEPT, 503),
                    ("queue JSON", visitors, "/.spaceport/queue", "application/json", 200),
                ]
                for what, who, path, accept, status in rounds:
                    lat, rate = await _timed_round(session, url, who, path, accept, status)
                    figures[what] = (_percentile(lat, 50), _percentile(lat, 99), rate)
                rows[mode] = figures
                visitors.sort(key=lambda v: v.position or 0)
                staying.cancel()
                await asyncio.gather(staying, return_exceptions=True)
                told_rows[mode] = await _told(session, child.url, holder, visitors, frees, idle)
            finally:
                child.stop()
    off_p50, off_p99, off_rate = rows["off"]["page (proxied)"]
    print(
        f"{'store':<8} {'request':<20} {'p50 ms':>7} {'p99 ms':>7} {'/s':>7} "
        f"{'p50/off':>8} {'p99/off':>8}"
    )
    for mode, figures in rows.items():
        for what, (p50, p99, rate) in figures.items():
            print(
                f"{mode:<8} {what:<20} {p50:>7.1f} {p99:>7.1f} {rate:>7.0f} "
                f"{p50 / off_p50:>8.2f} {p99 / off_p99:>8.2f}"
            )
    print("(goal: p99 <= 50 ms)")
    print(f"\ntold: a slot frees -> the next visitor's long-poll says admitted ({frees} frees)")
    print("and until the last of the others is told their new place (p50 and max over frees)")
    print(f"{'store':<8} {'p50 ms':>7} {'max ms':>7} {'all told p50':>13} {'max':>7}")
    for mode, (told, all_told) in told_rows.items():
        print(
            f"{mode:<8} {statistics.median(told):>7.1f} {max(told):>7.1f} "
            f"{statistics.median(all_told or [0]):>13.0f} {max(all_told or [0]):>7.0f}"
        )
    print("(goal: <= 200 ms; a waiting page polling every 3 s: 1500 ms on average)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.queue_bench", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--waiting", type=int, default=500, help="waiting visitors (0: skip)")
    parser.add_argument("--frees", type=int, default=5, help="slots freed, one after another")
    parser.add_argument("--idle", type=float, default=5.0, help="the idle time in that part")
    parser.add_argument("--serve", help=argparse.SUPPRESS)  # the child: off, memory, redis
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--redis-url", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        asyncio.run(_serve(args.serve, args.port, args.redis_url or None))
        return
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
        if args.waiting > 0:
            asyncio.run(_waiting_main(args.waiting, args.frees, args.idle, redis_url))
    finally:
        if stop is not None:
            stop()
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
