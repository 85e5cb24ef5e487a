"""Waking a sleeping Space, light and deep, beside a cold start of the same image, in one run.

A light sleeper is frozen (docker pause): a visit should cost about a thaw, milliseconds. A
deep sleeper is stopped: a visit costs a container start and the app's own start. The
references, in the same run: a bare `docker run` of the same image with the same CPU and
memory limits until it answers (a cold start with no Spaceport in the way), and a bare
process start of the same app in that container (no container made: what a wake can cost
at least if it must start the app).

    .venv/bin/python -m bench.wake_bench [--runs N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import docker
import httpx
from docker.models.containers import Container
from huggingface_hub import HfApi

from bench.common import bench_platform, run_until_answering, wait_answering_url
from tests.platform import Platform, push, sample_checkout
from tests.stacks import SMALL_SIZES

SLEEP_SECONDS = 5
DEEP_AFTER_SECONDS = 10
API_CLIENT = {"accept": "application/json"}  # held by the gateway while the Space wakes


def say(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def wait_depth(platform: Platform, depth: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (platform.runtime("bench", "hello").get("sleep") or {}).get("depth") == depth:
            return
        time.sleep(0.1)
    raise RuntimeError(f"bench/hello not in {depth} sleep within {timeout} s")


def visit(platform: Platform) -> float:
    """Seconds for one GET /config through the gateway to answer 200 (held while it wakes)."""
    started = time.monotonic()
    answer = httpx.get(
        platform.app_url("bench", "hello") + "/config", headers=API_CLIENT, timeout=120
    )
    if answer.status_code != 200:
        raise RuntimeError(f"the visit got {answer.status_code}: {answer.text[:200]}")
    return time.monotonic() - started


# The Space's tier for the run, and the reference container's limits: the same, so that
# the app starts on the same CPU either way (the tests' 0.5-CPU cpu-basic would make a
# Spaceport start slower than an unlimited reference for a reason that is not Spaceport's).
BENCH_TIER = {"cpu": 2.0, "memory_gib": 2.0, "disk_gib": 4.0}


def process_start(container: Container, port: int) -> float:
    """Seconds for a second start of the image's own command inside a running container
    (on port 7861, published on loopback `port`) until its GET /config answers: the app's
    start alone, with no container made."""
    config = container.image.attrs.get("Config") or {}
    command = [*(config.get("Entrypoint") or []), *(config.get("Cmd") or [])]
    started = time.monotonic()
    container.exec_run(
        command,
        detach=True,
        environment={"GRADIO_SERVER_NAME": "0.0.0.0", "GRADIO_SERVER_PORT": "7861"},
        workdir=config.get("WorkingDir") or None,
    )
    return wait_answering_url(f"http://127.0.0.1:{port}/config", started)


def run(runs: int) -> None:
    settings = dict(SMALL_SIZES)  # its allocation ratio: a 2-CPU tier fits a 2-CPU host
    settings["SPACEPORT_HARDWARE_OVERRIDES"] = json.dumps({"cpu-basic": BENCH_TIER})
    settings["SPACEPORT_DEEP_SLEEP_AFTER_SECONDS"] = str(DEEP_AFTER_SECONDS)
    settings["SPACEPORT_ACTIVITY_FLUSH_SECONDS"] = "1"
    with bench_platform("wake", **settings) as platform:
        token = platform.token("bench")
        say("warm-up: push the hello sample and wait until it runs (not timed)")
        push(sample_checkout("hello", platform.home), platform.git_url("bench", "hello", token))
        assert platform.wait_for_stage("bench", "hello", timeout=900)["stage"] == "RUNNING"
        HfApi(endpoint=platform.url, token=token).set_space_sleep_time("bench/hello", SLEEP_SECONDS)
        labels = [f"org.spaceport.instance={platform.instance}", "org.spaceport.space=bench/hello"]
        (container,) = docker.from_env().containers.list(filters={"label": labels})
        image = container.image.id
        lights: list[float] = []
        deeps: list[float] = []
        colds: list[float] = []
        bares: list[float] = []
        for run_number in range(1, runs + 1):
            say(f"run {run_number}/{runs}: light sleep, then a visit")
            wait_depth(platform, "light")
            lights.append(visit(platform))
            say(f"  light wake {lights[-1]:.3f} s")
            say(f"run {run_number}/{runs}: deep sleep, then a visit")
            wait_depth(platform, "deep")
            deeps.append(visit(platform))
            say(f"  deep wake {deeps[-1]:.2f} s")
            cold, bare = run_until_answering(
                image,
                cpus=BENCH_TIER["cpu"],
                memory_gib=BENCH_TIER["memory_gib"],
                then=process_start,
            )
            assert bare is not None
            colds.append(cold)
            bares.append(bare)
            say(f"  bare docker run -> answering {cold:.2f} s; bare process start {bare:.2f} s")
        light, deep, cold, bare = (statistics.median(x) for x in (lights, deeps, colds, bares))
        print()
        print(
            f"date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}; {os.cpu_count()} CPUs; "
            f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
        )
        tier = f"{BENCH_TIER['cpu']:g} CPU, {BENCH_TIER['memory_gib']:g} GiB"
        print(f"{f'hello sample ({tier}), median of {runs}':<44}{'seconds':>10}")
        print(f"{'light sleep -> a visit answered':<44}{light:>10.3f}")
        print(f"{'deep sleep -> a visit answered':<44}{deep:>10.2f}")
        print(f"{'bare docker run -> answering (reference)':<44}{cold:>10.2f}")
        print(f"{'bare process start -> answering (reference)':<44}{bare:>10.2f}")
        print(f"{'ratio light wake / cold docker run':<44}{light / cold:>10.3f}  (goal <= 0.1)")
        print(f"{'ratio deep wake / cold docker run':<44}{deep / cold:>10.3f}  (goal <= 1.2)")
        print(f"{'ratio light wake / process start':<44}{light / bare:>10.3f}")
        print(f"{'ratio deep wake / process start':<44}{deep / bare:>10.3f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.wake_bench", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument("--runs", type=int, default=1, help="repetitions (default 1)")
    args = parser.parse_args(argv)
    run(args.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
