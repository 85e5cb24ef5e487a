"""The control plane at scale, this tree beside the code before issue 8, in one run.

    .venv/bin/python -m bench.scale_bench                    # everything, both trees
    .venv/bin/python -m bench.scale_bench --only controller  # controller CPU + change latency
    .venv/bin/python -m bench.scale_bench --only gateway --requests 5000

Prints three tables, each with the old tree's figure, the new one's and their ratio:

* **controller CPU** (CPU seconds per minute of the controller process) with 5, 200 and
  1,000 Spaces defined: 20 running (all of them when fewer are defined), the rest paused;
* **change latency**: a build ending (its Space's new revision reaches the backend's
  `start()`) and a pause (the owner's write until the backend's `stop()`), median of N;
* **gateway**: req/s and p99 of one running public Space through `spaceport serve`, with
  5 and with 1,000 Spaces defined, and the 1,000-Space figure as a share of the 5-Space one.

"Old" is a git worktree of `--old-ref` (default 9d70f59, the commit before issue 8) made
under /tmp; each measurement runs in a child process with that tree (or this one) first
on `sys.path` and its own temporary SPACEPORT_HOME (SQLite, migrated by the tree's own
Alembic revisions). The Spaces run on an in-memory backend (no Docker): this tree's
`sandbox.memory_backend` when there is one, else the `FakeBackend` below, which speaks the
`sandbox.backend.Backend` interface of both trees; its instances answer at once (the
controller's HTTP probe is stubbed on the old side, readiness is reported ready on the
new one), so what is measured is the controller's own work, not Docker's or an app's.

Nothing is asserted: timings on a shared machine are read, not tested (bench/README.md).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import importlib.util
import inspect
import json
import os
import secrets
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
NEW_TREE = HERE.parent.parent
OLD_REF = "9d70f59"
RUNNING = 20  # Spaces running in every controller scenario (all of them when fewer exist)
OWNER = "bench"
DOMAIN = "spaces.bench"  # SPACEPORT_SPACES_DOMAIN: only ever sent as a Host header


# ---------------------------------------------------------------------------------------
# Child side: runs inside one tree (old or new); imports only that tree's orchestrator.
# ---------------------------------------------------------------------------------------


def _module(*names: str) -> Any:
    """The first of `names` that imports: the old tree was flat (orchestrator.models), the
    new one has subpackages (orchestrator.core.models)."""
    error: Exception | None = None
    for name in names:
        try:
            return importlib.import_module(name)
        except ModuleNotFoundError as exc:
            error = exc
    raise RuntimeError(f"none of {names} imports: {error}")


def models() -> Any:
    return _module("orchestrator.core.models", "orchestrator.models")


def db() -> Any:
    return _module("orchestrator.core.db", "orchestrator.db")


def is_new_tree() -> bool:
    try:
        importlib.import_module("orchestrator.core.status")
        return True
    except ModuleNotFoundError:
        return False


def emit(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


def space_name(i: int) -> str:
    return f"s{i:04d}"


def populate(count: int, running: int, serving: str | None) -> None:
    """A migrated database with `count` built Spaces: the first `running` wanted running,
    the rest paused. With `serving`, Space 0 is RUNNING and served at that address (the
    gateway's case: no controller runs)."""
    m, d = models(), db()
    d.migrate()
    new = is_new_tree()
    with d.session_scope() as session:
        user = m.User(name=OWNER)
        session.add(user)
        session.commit()
        for i in range(count):
            sha = secrets.token_hex(20)
            wanted = i < running
            fields: dict[str, Any] = {
                "host": f"{OWNER}-{space_name(i)}",
                "owner": OWNER,
                "name": space_name(i),
                "owner_id": user.id,
                "sdk": "docker",
                "head_sha": sha,
                "built_sha": sha,
                "built_image": f"spaceport-bench/{space_name(i)}:{sha[:12]}",
                "stage": m.Stage.APP_STARTING if wanted else m.Stage.PAUSED,
            }
            if new:
                fields["paused"] = not wanted
            if serving and i == 0:
                fields.update(
                    stage=m.Stage.RUNNING,
                    serving_address=serving,
                    serving_sha=sha,
                    serving_image=fields["built_image"],
                    current_hardware="cpu-basic",
                )
            session.add(m.Space(**fields))
            if i % 200 == 199:
                session.commit()
        session.commit()
    emit(op="populated", count=count)


class FakeBackend:
    """A Backend (both trees' interface) that keeps instances in a dict, reports each
    start and stop on stdout with the wall-clock time, and has room for everything."""

    def __init__(self) -> None:
        from sandbox.backend import Capacity, Instance, InstanceState

        self._capacity = Capacity(
            cpus=100_000, memory_gib=1_000_000, cpus_free=100_000, memory_gib_free=1_000_000
        )
        self._instance, self._state = Instance, InstanceState
        self._instances: dict[str, Any] = {}
        self._lock = threading.Lock()

    def start(self, revision: Any) -> Any:
        from datetime import UTC, datetime

        instance = self._instance(
            id=secrets.token_hex(32),
            space_id=revision.space_id,
            space=revision.space,
            revision=revision.key,
            sha=revision.sha,
            state=self._state.RUNNING,
            address=f"http://127.0.0.1:9/{revision.space_id}",
            started_at=datetime.now(UTC),
            cpus=revision.hardware.cpu,
            memory_gib=revision.hardware.memory_gib,
        )
        with self._lock:
            self._instances[instance.id] = instance
        emit(op="start", space=revision.space, t=time.time())
        return instance

    def stop(self, instance_id: str) -> None:
        with self._lock:
            instance = self._instances.pop(instance_id, None)
        if instance is not None:
            emit(op="stop", space=instance.space, t=time.time())

    def instances(self) -> list[Any]:
        with self._lock:
            return list(self._instances.values())

    def logs(
        self, instance_id: str, tail: int | None = None, follow: bool = False
    ) -> Iterator[str]:
        return iter(())

    def capacity(self) -> Any:
        return self._capacity

    def prepare(self) -> None:
        return None

    def disk_usage(self) -> dict[str, int]:
        return {}


def _reporting(base: type) -> type:
    """This tree's own memory backend, reporting starts and stops like FakeBackend."""

    class Reporting(base):  # type: ignore[misc, valid-type]
        def start(self, revision: Any) -> Any:
            instance = super().start(revision)
            emit(op="start", space=revision.space, t=time.time())
            return instance

        def stop(self, instance_id: str) -> None:
            known = {i.id: i.space for i in super().instances()}
            super().stop(instance_id)
            if instance_id in known:
                emit(op="stop", space=known[instance_id], t=time.time())

    return Reporting


def make_backend() -> Any:
    try:
        memory = importlib.import_module("sandbox.memory_backend")
    except ModuleNotFoundError:
        return FakeBackend()
    # Room for everything, and instances that answer at once, like FakeBackend's.
    return _reporting(memory.MemoryBackend)(cpus=100_000, memory_gib=1_000_000, ready_on_start=True)


def run_controller() -> None:
    """This tree's controller loop on the in-memory backend, until killed."""
    backend = make_backend()
    reconciler = _module("orchestrator.controller.reconciler", "orchestrator.reconciler")
    emit(op="controller", backend=type(backend).__mro__[0].__module__, new=is_new_tree())
    if not is_new_tree():
        # Today's loop (run_forever minus its file lock, which this home doesn't share),
        # with the HTTP probe stubbed: the in-memory instances answer.
        worker = reconciler.Reconciler(backend, probe=lambda _address: True)
        while True:
            started = time.monotonic()
            with contextlib.suppress(Exception):
                worker.reconcile_once()
            time.sleep(max(0.0, 1.0 - (time.monotonic() - started)))
    # The loop `spaceport controller` runs, wherever this tree keeps it.
    loop = next(
        module
        for module in (
            _module(name)
            for name in ("orchestrator.controller.loop", "orchestrator.controller.reconciler")
            if importlib.util.find_spec(name) is not None
        )
        if hasattr(module, "run_forever")
    )
    loop.run_forever(backend)


def change(kind: str, indexes: list[int]) -> None:
    """One change per Space index, each after the parent says `next` on stdin: `build`
    finishes a build of a new commit as the build pipeline does, `pause` pauses as the
    API does. Prints the wall-clock time each change was committed."""
    m, d = models(), db()
    runner = _module("orchestrator.builds.runner", "orchestrator.builds")
    lifecycle = _module("orchestrator.spaces.lifecycle", "orchestrator.lifecycle")
    status = _module("orchestrator.core.status") if is_new_tree() else None
    from sqlmodel import select

    for i in indexes:
        sys.stdin.readline()
        with d.session_scope() as session:
            space = session.exec(select(m.Space).where(m.Space.name == space_name(i))).one()
            if kind == "build":
                sha = secrets.token_hex(20)
                if status is not None:
                    status.change_spec(session, space, head_sha=sha)
                else:
                    space.head_sha = sha
                    session.add(space)
                build = m.Build(space_id=space.id, commit_sha=sha, status=m.BuildStatus.RUNNING)
                session.add(build)
                session.commit()
                build_id = build.id
            else:
                # Issue 8's lifecycle says who did it (the event log's actor).
                wants_actor = "actor" in inspect.signature(lifecycle.pause).parameters
                lifecycle.pause(session, space, **({"actor": OWNER} if wants_actor else {}))
                session.commit()
                emit(op="changed", space=f"{OWNER}/{space_name(i)}", t=time.time())
                continue
        image = f"spaceport-bench/{space_name(i)}:{sha[:12]}"
        # The build pipeline's own ending (renamed `finish` by issue 8).
        finish = getattr(runner, "finish", None) or runner._finish
        finish(build_id, m.BuildStatus.SUCCEEDED, None, image)
        emit(op="changed", space=f"{OWNER}/{space_name(i)}", t=time.time())


def serve(port: int) -> None:
    cli = _module("orchestrator.cli")
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - uvicorn's lines are not the bench's
    cli.main(["serve", "--host", "127.0.0.1", "--port", str(port)])


def upstream(port: int) -> None:
    """The Space's app: answers every request with a few bytes."""
    from aiohttp import web

    async def hello(_request: web.Request) -> web.Response:
        return web.Response(text="hello from the Space\n")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", hello)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def child_main(argv: list[str]) -> None:
    role, *rest = argv
    if role == "populate":
        populate(int(rest[0]), int(rest[1]), rest[2] if len(rest) > 2 else None)
    elif role == "controller":
        run_controller()
    elif role == "change":
        change(rest[0], [int(i) for i in rest[1:]])
    elif role == "serve":
        serve(int(rest[0]))
    elif role == "upstream":
        upstream(int(rest[0]))
    else:
        raise SystemExit(f"unknown child role {role}")


# ---------------------------------------------------------------------------------------
# Parent side: drives both trees and prints the tables.
# ---------------------------------------------------------------------------------------


def old_tree(ref: str) -> Path:
    """A worktree of `ref` under /tmp (made once, reused)."""
    path = Path(tempfile.gettempdir()) / f"spaceport-bench-old-{ref}"
    if not (path / "orchestrator").is_dir():
        subprocess.run(
            ["git", "-C", str(NEW_TREE), "worktree", "add", "--detach", str(path), ref],
            check=True,
            capture_output=True,
        )
    return path


class Side:
    """One tree and a fresh home (and, on PostgreSQL, a fresh database) for one scenario."""

    def __init__(self, name: str, tree: Path, server_url: str | None = None) -> None:
        self.name, self.tree = name, tree
        self.home = Path(tempfile.mkdtemp(prefix=f"spaceport-scale-{name}-"))
        self.children: list[subprocess.Popen[str]] = []
        self.database_url: str | None = None
        if server_url:
            database = f"scale_{name}_{secrets.token_hex(4)}"
            self._admin(server_url, f"CREATE DATABASE {database}")
            self.server_url = server_url
            self.database_url = server_url.rsplit("/", 1)[0] + "/" + database

    @staticmethod
    def _admin(url: str, sql: str) -> None:
        import psycopg

        plain = url.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(plain, autocommit=True) as connection:
            connection.execute(sql)

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SPACEPORT_")}
        env.update(
            PYTHONPATH=str(self.tree),
            SPACEPORT_HOME=str(self.home),
            SPACEPORT_SPACES_DOMAIN=DOMAIN,
            SPACEPORT_INSTANCE=f"spaceport-scale-{secrets.token_hex(4)}",
            # Settings read at start-up that must not reach out (no Docker here).
            SPACEPORT_SPACES_DISK_CHECK_SECONDS="3600",
            **extra,
        )
        if self.database_url:
            env["SPACEPORT_DATABASE_URL"] = self.database_url
        return env

    def spawn(self, *args: str, stdin: bool = False, quiet: bool = False) -> subprocess.Popen[str]:
        child = subprocess.Popen(
            [sys.executable, str(HERE), "child", *args],
            cwd=self.tree,
            env=self.env(),
            text=True,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.DEVNULL if quiet else subprocess.PIPE,
            stderr=subprocess.DEVNULL if quiet else None,
            start_new_session=True,
        )
        self.children.append(child)
        return child

    def run(self, *args: str) -> None:
        child = self.spawn(*args)
        out, _ = child.communicate(timeout=300)
        if child.returncode != 0:
            raise RuntimeError(f"{self.name}: child {args} failed ({child.returncode}): {out}")

    def close(self) -> None:
        for child in self.children:
            if child.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.pid, signal.SIGKILL)
                child.wait()
        subprocess.run(["rm", "-rf", str(self.home)], check=False)
        if self.database_url:
            database = self.database_url.rsplit("/", 1)[1]
            self._admin(self.server_url, f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")

    def db_count(self, sql: str) -> int:
        if self.database_url:
            import sqlalchemy

            engine = sqlalchemy.create_engine(self.database_url)
            try:
                with engine.connect() as connection:
                    return int(connection.execute(sqlalchemy.text(sql)).scalar_one())
            finally:
                engine.dispose()
        with contextlib.closing(sqlite3.connect(self.home / "spaceport.db", timeout=30)) as conn:
            return int(conn.execute(sql).fetchone()[0])


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its threads (/proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Lines:
    """A child's JSON lines, read in a thread, waited on by condition (never a fixed sleep)."""

    def __init__(self, child: subprocess.Popen[str]) -> None:
        self.items: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        threading.Thread(target=self._read, args=(child,), daemon=True).start()

    def _read(self, child: subprocess.Popen[str]) -> None:
        assert child.stdout is not None
        for line in child.stdout:
            with contextlib.suppress(ValueError):
                item = json.loads(line)
                with self._cond:
                    self.items.append(item)
                    self._cond.notify_all()

    def wait(self, test: Any, timeout: float, since: int = 0) -> dict[str, Any] | None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for item in self.items[since:]:
                    if test(item):
                        return item
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)


def wait_until(check: Any, timeout: float, every: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(every)
    return False


def controller_scenario(side: Side, count: int, window: float, changes: int) -> dict[str, Any]:
    running = min(RUNNING, count)
    side.run("populate", str(count), str(running))
    controller = side.spawn("controller")
    lines = Lines(controller)
    result: dict[str, Any] = {"cpu": None, "build": [], "pause": []}
    try:
        started = (
            wait_until(
                lambda: (
                    sum(1 for i in lines.items if i.get("op") == "start") >= running
                    or controller.poll() is not None
                ),
                90,
            )
            and controller.poll() is None
        )
        settled = started and wait_until(
            lambda: side.db_count("SELECT count(*) FROM space WHERE stage = 'RUNNING'") >= running,
            60,
        )
        if not settled:
            result["error"] = "the controller never had every wanted Space RUNNING"
            return result
        # Steady state: every wanted Space runs; only the idle cost is left to measure.
        c0, t0 = cpu_seconds(controller.pid), time.monotonic()
        time.sleep(window)  # the measurement window itself, not a wait for a condition
        c1, t1 = cpu_seconds(controller.pid), time.monotonic()
        result["cpu"] = (c1 - c0) / (t1 - t0) * 60
        n = min(changes, running // 2)
        for kind, indexes, op in (
            ("build", list(range(n)), "start"),
            ("pause", list(range(n, 2 * n)), "stop"),
        ):
            changer = side.spawn("change", kind, *map(str, indexes), stdin=True)
            changed = Lines(changer)
            assert changer.stdin is not None
            for i in indexes:
                name = f"{OWNER}/{space_name(i)}"
                seen = len(lines.items)
                try:
                    changer.stdin.write("next\n")
                    changer.stdin.flush()
                except BrokenPipeError:
                    result["error"] = f"the {kind} changer died (its traceback is above)"
                    break
                done = changed.wait(lambda x, name=name: x.get("space") == name, 60)
                # The backend's call comes after "next" was sent: only lines since count.
                reached = done and lines.wait(
                    lambda x, name=name, op=op: x.get("op") == op and x.get("space") == name,
                    30,
                    since=seen,
                )
                if done and reached:
                    result[kind].append(max(0.0, reached["t"] - done["t"]))
            with contextlib.suppress(BrokenPipeError):
                changer.stdin.close()
            changer.wait(timeout=60)
        return result
    finally:
        side.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def drive(port: int, host: str, requests: int, concurrency: int) -> tuple[float, float, int]:
    """req/s and p99 (ms) of `requests` GETs at `concurrency`, after a warm-up, and how
    many requests were sent in all (the warm-up's included)."""
    import aiohttp

    url = f"http://127.0.0.1:{port}/"
    latencies: list[float] = []
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as client:

        async def one(record: bool) -> None:
            began = time.perf_counter()
            async with client.get(url, headers={"Host": host}) as response:
                await response.read()
                if response.status != 200:
                    raise RuntimeError(f"the Space answered {response.status}")
            if record:
                latencies.append(time.perf_counter() - began)

        async def worker(count: int, record: bool) -> None:
            for _ in range(count):
                await one(record)

        await asyncio.gather(*(worker(10, False) for _ in range(concurrency)))  # warm-up
        began = time.perf_counter()
        share = requests // concurrency
        await asyncio.gather(*(worker(share, True) for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    return len(latencies) / elapsed, p99 * 1000, len(latencies) + 10 * concurrency


def gateway_scenario(
    side: Side, count: int, requests: int, concurrency: int
) -> tuple[float, float, float]:
    up_port, api_port = free_port(), free_port()
    try:
        side.spawn("upstream", str(up_port), quiet=True)
        side.run("populate", str(count), "1", f"http://127.0.0.1:{up_port}")
        server = side.spawn("serve", str(api_port), quiet=True)

        def answers() -> bool:
            import httpx

            if server.poll() is not None:
                raise RuntimeError(f"{side.name}: spaceport serve exited ({server.returncode})")
            try:
                return (
                    httpx.get(f"http://127.0.0.1:{api_port}/api/health", timeout=2).status_code
                    == 200
                )
            except httpx.HTTPError:
                return False

        if not wait_until(answers, 60):
            raise RuntimeError(f"{side.name}: spaceport serve did not answer")
        host = f"{OWNER}-{space_name(0)}.{DOMAIN}"
        # The server's own CPU per request: steadier than wall-clock figures on a busy
        # machine, and what grows if routing costs more with more Spaces.
        before = cpu_seconds(server.pid)
        rps, p99, sent = asyncio.run(drive(api_port, host, requests, concurrency))
        return rps, p99, (cpu_seconds(server.pid) - before) / sent * 1000
    finally:
        side.close()


def ratio(new: float | None, old: float | None) -> str:
    if new is None or not old:
        return "-"
    return f"{new / old:.2f}x"


def fmt(value: float | None, unit: str = "") -> str:
    return "-" if value is None else f"{value:.3f}{unit}"


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=["controller", "gateway"], default=None)
    parser.add_argument("--counts", default="5,200,1000", help="Spaces defined (controller)")
    parser.add_argument("--window", type=float, default=20.0, help="CPU window, seconds")
    parser.add_argument("--changes", type=int, default=5, help="changes of each kind")
    parser.add_argument("--gateway-counts", default="5,1000")
    parser.add_argument("--requests", type=int, default=6000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3, help="gateway runs per case (best kept)")
    parser.add_argument("--old-ref", default=OLD_REF)
    parser.add_argument(
        "--database",
        choices=["sqlite", "postgresql"],
        default="sqlite",
        help="postgresql: a throwaway server (tests.services), a fresh database per case",
    )
    args = parser.parse_args()
    with contextlib.ExitStack() as cleanup:
        server_url = None
        if args.database == "postgresql":
            from tests.services import start_postgres

            server_url, stop = start_postgres(Path(tempfile.mkdtemp(prefix="scale-pg-")))
            cleanup.callback(stop)
        report(args, server_url)


def report(args: argparse.Namespace, server_url: str | None) -> None:

    trees = {"old": old_tree(args.old_ref), "new": NEW_TREE}
    print(f"old: {args.old_ref} ({trees['old']}); new: this tree ({NEW_TREE})")
    database = "PostgreSQL" if server_url else "SQLite"
    print(
        f"machine: {os.cpu_count()} CPUs; {sys.version.split()[0]}; {database}, in-memory backend"
    )
    if args.only in (None, "controller"):
        rows = []
        for count in [int(c) for c in args.counts.split(",")]:
            figures = {}
            for name in ("old", "new"):
                print(f"... controller, {count} Spaces, {name}", flush=True)
                figures[name] = controller_scenario(
                    Side(name, trees[name], server_url), count, args.window, args.changes
                )
                if "error" in figures[name]:
                    print(f"    {name}: {figures[name]['error']}")
            rows.append((count, figures))
        print(f"\ncontroller CPU (s per minute), {RUNNING} running, the rest paused")
        print(f"{'Spaces':>7} {'old':>9} {'new':>9} {'new/old':>8}")
        for count, f in rows:
            old, new = f["old"]["cpu"], f["new"]["cpu"]
            print(f"{count:>7} {fmt(old):>9} {fmt(new):>9} {ratio(new, old):>8}")
        print(f"\nchange latency to the backend (median of up to {args.changes}, seconds)")
        print(f"{'Spaces':>7} {'change':>6} {'old':>9} {'new':>9} {'new/old':>8}  n old/new")
        for count, f in rows:
            for kind in ("build", "pause"):
                old, new = median(f["old"][kind]), median(f["new"][kind])
                print(
                    f"{count:>7} {kind:>6} {fmt(old):>9} {fmt(new):>9} {ratio(new, old):>8}"
                    f"  {len(f['old'][kind])}/{len(f['new'][kind])}"
                )
    if args.only in (None, "gateway"):
        counts = [int(c) for c in args.gateway_counts.split(",")]
        runs: dict[tuple[str, int], list[tuple[float, float, float]]] = {}
        for _ in range(args.rounds):  # interleaved, so a burst of load hits every case alike
            for count in counts:
                for name in ("old", "new"):
                    print(f"... gateway, {count} Spaces, {name}", flush=True)
                    runs.setdefault((name, count), []).append(
                        gateway_scenario(
                            Side(name, trees[name], server_url),
                            count,
                            args.requests,
                            args.concurrency,
                        )
                    )
        # The best run (highest req/s, with its p99) and the least server CPU per request:
        # what the machine's other load took away least.
        best = {case: max(results) for case, results in runs.items()}
        cpu = {case: min(r[2] for r in results) for case, results in runs.items()}
        print(
            f"\ngateway: one running Space, {args.requests} GETs at concurrency "
            f"{args.concurrency}, best of {args.rounds}"
        )
        print(
            f"{'Spaces':>7} {'side':>4} {'req/s':>8} {'p99 ms':>8} {'vs first':>9}"
            f" {'server CPU ms/req':>18} {'vs first':>9}"
        )
        for name in ("old", "new"):
            base, base_cpu = best[(name, counts[0])][0], cpu[(name, counts[0])]
            for count in counts:
                rps, p99, _ = best[(name, count)]
                per = cpu[(name, count)]
                print(
                    f"{count:>7} {name:>4} {rps:>8.0f} {p99:>8.1f} {rps / base:>8.2f}x"
                    f" {per:>18.3f} {per / base_cpu:>8.2f}x"
                )
        for count in counts:
            print(
                f"new/old at {count} Spaces: req/s "
                f"{ratio(best[('new', count)][0], best[('old', count)][0])}, server CPU "
                f"per request {ratio(cpu[('new', count)], cpu[('old', count)])}"
            )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "child":
        # The tree under test comes first on sys.path (PYTHONPATH), not this file's folder,
        # and the venv's editable-install finder must not fill in this tree's modules
        # where the old one has none (it would: orchestrator.core for the flat old tree).
        if str(HERE.parent) in sys.path:
            sys.path.remove(str(HERE.parent))
        sys.meta_path[:] = [
            f for f in sys.meta_path if not getattr(f, "__module__", "").startswith("__editable_")
        ]
        child_main(sys.argv[2:])
    else:
        main()
