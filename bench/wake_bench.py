"""Waking a sleeping Space, light and deep, beside a cold start of the same image, in one run.

A light sleeper is frozen (docker pause): a visit should cost about a thaw, milliseconds. A
deep sleeper is stopped: a visit costs a container start and the app's own start. The
reference is a bare `docker run` of the same image until it answers: a cold start with no
Spaceport in the way.

    .venv/bin/python -m bench.wake_bench [--runs N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import docker
import httpx
from huggingface_hub import HfApi

from tests.platform import Platform, push, sample_checkout
from tests.services import free_port
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


def cold_start(image: str) -> float:
    """Seconds from `docker run` of the Space's image until its GET /config answers 200."""
    client = docker.from_env()
    port = free_port()
    started = time.monotonic()
    container = client.containers.run(
        image,
        detach=True,
        ports={"7860/tcp": ("127.0.0.1", port)},
        environment={"GRADIO_SERVER_NAME": "0.0.0.0", "GRADIO_SERVER_PORT": "7860"},
    )
    try:
        while time.monotonic() - started < 300:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/config", timeout=5).status_code == 200:
                    return time.monotonic() - started
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError("the bare container never answered")
    finally:
        container.remove(force=True)


def run(runs: int) -> None:
    tag = uuid.uuid4().hex[:8]
    home = Path(tempfile.mkdtemp(prefix="spaceport-bench-wake-"))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPACEPORT_")}
    env.update(
        SPACEPORT_HOME=str(home),
        SPACEPORT_PUBLIC_URL=f"http://127.0.0.1:{port}",
        SPACEPORT_SPACES_DOMAIN=f"localhost:{port}",
        SPACEPORT_INSTANCE=f"bench-wake-{tag}",
        SPACEPORT_IMAGE_PREFIX=f"spaceport-bench-wake-{tag}",
        SPACEPORT_DEEP_SLEEP_AFTER_SECONDS=str(DEEP_AFTER_SECONDS),
        SPACEPORT_ACTIVITY_FLUSH_SECONDS="1",
        # The tests' small tiers: a shared 2-CPU host has no room for a full cpu-basic.
        **SMALL_SIZES,
    )
    platform = Platform(home=home, env=env, port=port)
    platform.start()
    try:
        token = platform.token("bench")
        say("warm-up: push the hello sample and wait until it runs (not timed)")
        push(sample_checkout("hello", home), platform.git_url("bench", "hello", token))
        assert platform.wait_for_stage("bench", "hello", timeout=900)["stage"] == "RUNNING"
        HfApi(endpoint=platform.url, token=token).set_space_sleep_time("bench/hello", SLEEP_SECONDS)
        labels = [
            f"org.spaceport.instance={env['SPACEPORT_INSTANCE']}",
            "org.spaceport.space=bench/hello",
        ]
        (container,) = docker.from_env().containers.list(filters={"label": labels})
        image = container.image.id
        lights: list[float] = []
        deeps: list[float] = []
        colds: list[float] = []
        for run_number in range(1, runs + 1):
            say(f"run {run_number}/{runs}: light sleep, then a visit")
            wait_depth(platform, "light")
            lights.append(visit(platform))
            say(f"  light wake {lights[-1]:.3f} s")
            say(f"run {run_number}/{runs}: deep sleep, then a visit")
            wait_depth(platform, "deep")
            deeps.append(visit(platform))
            say(f"  deep wake {deeps[-1]:.2f} s")
            colds.append(cold_start(image))
            say(f"  bare docker run -> answering {colds[-1]:.2f} s")
        light, deep, cold = (statistics.median(x) for x in (lights, deeps, colds))
        print()
        print(
            f"date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}; {os.cpu_count()} CPUs; "
            f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
        )
        print(f"{'hello sample, median of ' + str(runs):<44}{'seconds':>10}")
        print(f"{'light sleep -> a visit answered':<44}{light:>10.3f}")
        print(f"{'deep sleep -> a visit answered':<44}{deep:>10.2f}")
        print(f"{'bare docker run -> answering (reference)':<44}{cold:>10.2f}")
        print(f"{'ratio light wake / cold start':<44}{light / cold:>10.3f}")
        print(f"{'ratio deep wake / cold start':<44}{deep / cold:>10.3f}")
    finally:
        platform.stop()
        client = docker.from_env()
        prefix = platform.env["SPACEPORT_IMAGE_PREFIX"] + "/"
        for found in client.images.list():
            for name in found.tags:
                if name.startswith(prefix):
                    client.images.remove(name)


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
