"""A running Space's latency and throughput through the gateway, unloaded and while 200
anonymous clients abuse the control plane that shares its process (issue 7, finding 7).

Run from the repository root (a few minutes; needs a Docker Engine and python:3.11-slim):

    .venv/bin/python -m bench.abuse_bench [--clients 200] [--duration 20]

1. Starts its own Spaceport (`spaceport up`, SQLite, embedded broker; bench.common), pushes
   sample_spaces/static_site as bench/site and waits until it runs; makes bench/files, a
   Space with 20,000 files and a 150 MB regular (non-LFS) file on branch `data`.
2. Unloaded: for --duration seconds, 4 client threads GET the Space's page through the
   gateway (Host: bench-site.localhost:PORT) back to back; latency p50/p95, requests/s.
3. Loaded: the same, while --clients anonymous clients (in a separate process, asyncio and
   httpx, loopback only, each for --duration seconds) do in equal shares: follow the Space's
   run log, list bench/files' tree recursively with expand, post 10 MB to validate-yaml,
   download the 150 MB file. Each client retries after a refusal (413/429) at once, like an
   attacker would.
4. Prints both rows, the ratio loaded / unloaded (goal: <= 1.5), and what the abusers got
   (status counts). Speed is measured here and never asserted in tests.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import json
import multiprocessing
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from bench.common import SpaceportPlatform, docker_preflight, environment, say
from tests.platform import git, push, sample_checkout

OWNER = "bench"
SITE, FILES = "site", "files"
BIG_FILE_BYTES = 150 << 20
TREE_FILES = 20_000
MEASURE_THREADS = 4
KINDS = ("follow-logs", "tree-expand", "validate-yaml", "download")


def measure(url: str, host: str, seconds: float) -> dict[str, float]:
    """Back-to-back GETs from MEASURE_THREADS threads: latency p50/p95 (ms), requests/s,
    and errors (any answer but 200)."""
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def worker() -> None:
        nonlocal errors
        with httpx.Client(timeout=30, headers={"host": host}) as client:
            while time.monotonic() < deadline:
                start = time.perf_counter()
                try:
                    ok = client.get(url).status_code == 200
                except httpx.HTTPError:
                    ok = False
                elapsed = time.perf_counter() - start
                with lock:
                    latencies.append(elapsed)
                    errors += not ok

    threads = [threading.Thread(target=worker) for _ in range(MEASURE_THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ordered = sorted(latencies)
    return {
        "p50_ms": 1000 * statistics.median(ordered),
        "p95_ms": 1000 * ordered[int(0.95 * (len(ordered) - 1))],
        "rps": len(ordered) / seconds,
        "errors": errors,
    }


async def _abuser(kind: str, base: str, seconds: float, counts: collections.Counter) -> None:
    deadline = time.monotonic() + seconds
    yaml = json.dumps({"content": "a: b\n" * (2 << 20), "repoType": "space"}).encode()
    timeout = httpx.Timeout(10, read=max(seconds, 1))
    async with httpx.AsyncClient(timeout=timeout) as client:
        while (left := deadline - time.monotonic()) > 0:
            try:
                async with asyncio.timeout(left):
                    status = await _one(kind, client, base, yaml, counts)
            except TimeoutError:
                status = "cut at the end"
            except httpx.HTTPError as exc:
                status = type(exc).__name__
            counts[f"{kind} {status}"] += 1
            if status not in (200, "cut at the end"):
                await asyncio.sleep(0.05)  # retried almost at once, as an attacker would


async def _one(
    kind: str, client: httpx.AsyncClient, base: str, yaml: bytes, counts: collections.Counter
) -> int | str:
    if kind == "follow-logs":
        url = f"{base}/api/spaces/{OWNER}/{SITE}/logs/run"
    elif kind == "tree-expand":
        url = f"{base}/api/spaces/{OWNER}/{FILES}/tree/data?recursive=true&expand=true"
    elif kind == "download":
        url = f"{base}/spaces/{OWNER}/{FILES}/resolve/data/big.bin"
    else:
        response = await client.post(
            f"{base}/api/validate-yaml",
            content=yaml,
            headers={"content-type": "application/json"},
        )
        return response.status_code
    async with client.stream("GET", url) as response:
        if response.status_code == 200:
            counts[f"{kind} 200 (answered, then streaming)"] += 1
        async for _ in response.aiter_bytes(1 << 16):
            pass  # a follower stays here as long as the log is open
        return response.status_code


def run_abusers(base: str, clients: int, seconds: float, out: multiprocessing.Queue) -> None:
    async def main() -> collections.Counter:
        counts: collections.Counter = collections.Counter()
        await asyncio.gather(
            *(_abuser(KINDS[i % len(KINDS)], base, seconds, counts) for i in range(clients))
        )
        return counts

    out.put(dict(asyncio.run(main())))


def make_files_space(side: SpaceportPlatform, workdir: Path) -> None:
    """bench/files: branch `data` with TREE_FILES small files and one big regular file."""
    checkout = sample_checkout("static_site", workdir)
    with open(checkout / "big.bin", "wb") as handle:
        handle.truncate(BIG_FILE_BYTES)  # zeros: a tiny pack, a 150 MB blob
    git(checkout, "add", "big.bin")
    git(checkout, "commit", "-q", "-m", "big file")
    push(checkout, side.platform.git_url(OWNER, FILES, side.token), "main:data")
    lines = [json.dumps({"key": "header", "value": {"summary": "many files"}})]
    for i in range(TREE_FILES):
        content = base64.b64encode(f"{i}\n".encode()).decode()
        value = {"path": f"d{i % 100}/f{i}.txt", "content": content, "encoding": "base64"}
        lines.append(json.dumps({"key": "file", "value": value}))
    response = httpx.post(
        f"{side.platform.url}/api/spaces/{OWNER}/{FILES}/commit/data",
        content="\n".join(lines).encode(),
        headers={
            "authorization": f"Bearer {side.token}",
            "content-type": "application/x-ndjson",
        },
        timeout=600,
    )
    response.raise_for_status()


def row(name: str, figures: dict[str, float]) -> str:
    return (
        f"| {name} | {figures['p50_ms']:.1f} | {figures['p95_ms']:.1f} | "
        f"{figures['rps']:.0f} | {figures['errors']:.0f} |"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--duration", type=float, default=20.0)
    args = parser.parse_args()
    if problem := docker_preflight():
        print(f"cannot run: {problem}", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="spaceport-abuse-bench-"))
    side = SpaceportPlatform(workdir, f"spaceport-bench-abuse-{int(time.time()) % 100000}")
    try:
        side.start()
        say("pushing bench/site (static) and waiting for it to run")
        push(
            sample_checkout("static_site", workdir), side.platform.git_url(OWNER, SITE, side.token)
        )
        stage = side.platform.wait_for_stage(OWNER, SITE, side.token, timeout=900)["stage"]
        if stage != "RUNNING":
            print(f"bench/site is {stage}:\n{side.platform.log_tail()}", file=sys.stderr)
            return 1
        say(f"making bench/{FILES}: {TREE_FILES} files and a {BIG_FILE_BYTES >> 20} MB file")
        make_files_space(side, workdir)
        host = side.platform.app_url(OWNER, SITE).removeprefix("http://")
        url = f"{side.platform.url}/"
        measure(url, host, 2)  # warm-up
        say(f"unloaded, {args.duration:.0f} s")
        unloaded = measure(url, host, args.duration)
        say(f"loaded: {args.clients} anonymous clients, {args.duration:.0f} s")
        out: multiprocessing.Queue = multiprocessing.Queue()
        abusers = multiprocessing.Process(
            target=run_abusers, args=(side.platform.url, args.clients, args.duration + 2, out)
        )
        abusers.start()
        time.sleep(2)  # let them all connect first
        loaded = measure(url, host, args.duration)
        counts = out.get(timeout=args.duration + 120)
        abusers.join(30)
    finally:
        side.stop()
        side.cleanup_images()
    print("\n".join(environment()))
    print()
    print("| Space page through the gateway | p50 ms | p95 ms | req/s | errors |")
    print("| --- | --- | --- | --- | --- |")
    print(row("unloaded", unloaded))
    print(row(f"{args.clients} abusive clients", loaded))
    print()
    ratio = loaded["p50_ms"] / unloaded["p50_ms"]
    throughput = unloaded["rps"] / loaded["rps"] if loaded["rps"] else float("inf")
    print(f"latency p50 loaded / unloaded: {ratio:.2f}x (goal <= 1.5x)")
    print(f"p95 loaded / unloaded: {loaded['p95_ms'] / unloaded['p95_ms']:.2f}x")
    print(f"throughput unloaded / loaded: {throughput:.2f}x")
    print()
    print("what the abusers got (answers per kind and status):")
    for key, value in sorted(counts.items()):
        print(f"  {key}: {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
