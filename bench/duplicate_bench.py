"""Duplicate -> answering, beside a cold build of the same Space, in one run.

A duplicate has the source's tree, so it reuses the source's image: it should cost about a
container start. The reference is what the same Space costs without that: a build from
scratch (no layer cache: `spaceport rebuild --no-cache`) plus a start until it answers.

    .venv/bin/python -m bench.duplicate_bench [--runs N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import httpx
from huggingface_hub import HfApi

from bench.common import bench_platform
from tests.platform import Platform, push, sample_checkout


def say(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def wait_answering(platform: Platform, owner: str, name: str, timeout: float = 900) -> float:
    """Seconds until the Space is RUNNING and its app answers through the gateway."""
    started = time.monotonic()
    url = platform.app_url(owner, name) + "/config"
    while time.monotonic() - started < timeout:
        if platform.runtime(owner, name)["stage"] == "RUNNING":
            try:
                if httpx.get(url, timeout=5).status_code == 200:
                    return time.monotonic() - started
            except httpx.HTTPError:
                pass
        time.sleep(0.1)
    raise RuntimeError(f"{owner}/{name} did not answer within {timeout} s")


def wait_build(platform: Platform, owner: str, name: str, build_id: int) -> float:
    started = time.monotonic()
    while True:
        build = platform.api(f"/api/spaces/{owner}/{name}/builds/{build_id}").json()
        if build["status"] in ("succeeded", "failed", "cancelled"):
            if build["status"] != "succeeded":
                raise RuntimeError(f"build {build_id} {build['status']}: {build['errorMessage']}")
            return time.monotonic() - started
        time.sleep(0.1)


def run(runs: int) -> None:
    with bench_platform("dup") as platform:
        token = platform.token("bench")
        api = HfApi(endpoint=platform.url, token=token)
        say("warm-up: push the hello sample and wait until it answers (not timed)")
        push(sample_checkout("hello", platform.home), platform.git_url("bench", "source", token))
        wait_answering(platform, "bench", "source")
        duplicates: list[float] = []
        colds: list[tuple[float, float]] = []
        for run_number in range(1, runs + 1):
            say(f"run {run_number}/{runs}: duplicate -> answering")
            started = time.monotonic()
            api.duplicate_repo("bench/source", to_id=f"bench/copy-{run_number}", repo_type="space")
            wait_answering(platform, "bench", f"copy-{run_number}")
            duplicates.append(time.monotonic() - started)
            say(f"  {duplicates[-1]:.2f} s")

            say(f"run {run_number}/{runs}: cold build (no layer cache) + start -> answering")
            build_id = int(platform.cli("rebuild", "bench/source", "--no-cache").strip())
            build_seconds = wait_build(platform, "bench", "source", build_id)
            started = time.monotonic()
            api.restart_space("bench/source")
            time.sleep(0.5)  # let the restart reach the runtime before polling it
            start_seconds = time.monotonic() - started + wait_answering(platform, "bench", "source")
            colds.append((build_seconds, start_seconds))
            say(f"  build {build_seconds:.2f} s + start {start_seconds:.2f} s")
        duplicate = statistics.median(duplicates)
        cold = statistics.median(b + s for b, s in colds)
        print()
        print(
            f"date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}; {os.cpu_count()} CPUs; "
            f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
        )
        print(f"{'hello sample, median of ' + str(runs):<44}{'seconds':>10}")
        print(f"{'duplicate -> answering':<44}{duplicate:>10.2f}")
        print(f"{'cold build + start -> answering':<44}{cold:>10.2f}")
        print(f"{'  of which the build':<44}{statistics.median(b for b, _ in colds):>10.2f}")
        print(f"{'  of which the start':<44}{statistics.median(s for _, s in colds):>10.2f}")
        print(f"{'ratio duplicate / cold':<44}{duplicate / cold:>10.3f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.duplicate_bench", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--runs", type=int, default=1, help="repetitions (default 1)")
    args = parser.parse_args(argv)
    run(args.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
