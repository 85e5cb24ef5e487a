"""Sleep and wake end to end, on a real `spaceport up` with Docker (sqlite-embedded): the
hello sample with a sleep time of seconds (set with huggingface_hub) falls into light sleep
(its container paused by the cgroup freezer, the runtime and the event log say so); a
gradio_client prediction wakes it and gets its answer; with a small
SPACEPORT_DEEP_SLEEP_AFTER_SECONDS it then goes deep (its container stopped: STOPPED, since
its owner set the sleep time) and the next prediction starts it again from its image."""

from __future__ import annotations

import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import docker
import pytest
from gradio_client import Client
from huggingface_hub import HfApi

from tests import services, stacks
from tests.platform import Platform, push, sample_checkout

SLEEP_SECONDS = 8
DEEP_AFTER_SECONDS = 15


@pytest.fixture(scope="module")
def sleepy(docker_engine: None) -> Iterator[Platform]:
    home = Path(tempfile.mkdtemp(prefix="spaceport-sleep-"))
    port = services.free_port()
    env = stacks.platform_env(
        home,
        port,
        # The main suite's prefix on this stack: the hello image is reused, not rebuilt.
        SPACEPORT_IMAGE_PREFIX="spaceport-test-sqlite-embedded",
        SPACEPORT_INSTANCE=f"spaceport-test-sleep-{uuid.uuid4().hex[:6]}",
        **stacks.SMALL_SIZES,
        SPACEPORT_DEEP_SLEEP_AFTER_SECONDS=str(DEEP_AFTER_SECONDS),
        SPACEPORT_ACTIVITY_FLUSH_SECONDS="1",
    )
    platform = Platform(home=home, env=env, port=port)
    try:
        platform.start()
        yield platform
    finally:
        platform.stop()
        shutil.rmtree(home, ignore_errors=True)


def until(what: str, check: Callable[[], bool], platform: Platform, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise AssertionError(f"{what}: not within {timeout} s\n{platform.log_tail('controller')}")


def container_states(platform: Platform) -> list[str]:
    client = docker.from_env()
    labels = [
        f"org.spaceport.instance={platform.env['SPACEPORT_INSTANCE']}",
        "org.spaceport.space=bob/hello",
    ]
    return [
        c.status
        for c in client.containers.list(ignore_removed=True, all=True, filters={"label": labels})
    ]


def sleep_events(platform: Platform, token: str) -> list[tuple[str, dict]]:
    answer = platform.api("/api/spaces/bob/hello/events?limit=500", token).json()
    kinds = ("space.slept", "space.woke", "space.wake_requested")
    return [(e["kind"], e["data"]) for e in answer["events"] if e["kind"] in kinds]


def test_light_sleep_then_a_prediction_then_deep_sleep_then_a_prediction(
    sleepy: Platform, tmp_path: Path
) -> None:
    bob = sleepy.token("bob")
    push(sample_checkout("hello", tmp_path), sleepy.git_url("bob", "hello", bob))
    assert sleepy.wait_for_stage("bob", "hello", timeout=600)["stage"] == "RUNNING"
    HfApi(endpoint=sleepy.url, token=bob).set_space_sleep_time("bob/hello", SLEEP_SECONDS)

    def sleeping(depth: str) -> Callable[[], bool]:
        return lambda: (sleepy.runtime("bob", "hello").get("sleep") or {}).get("depth") == depth

    until("light sleep", sleeping("light"), sleepy)
    runtime = sleepy.runtime("bob", "hello")
    assert runtime["stage"] == "SLEEPING"
    assert container_states(sleepy) == ["paused"]  # frozen, not stopped
    assert sleep_events(sleepy, bob)[-1] == (
        "space.slept",
        {**sleep_events(sleepy, bob)[-1][1], "depth": "light"},
    )

    client = Client(sleepy.app_url("bob", "hello"), verbose=False)  # held while it wakes
    assert client.predict("World", api_name="/predict") == "Hello, World!"
    assert container_states(sleepy) == ["running"]
    woke = [data for kind, data in sleep_events(sleepy, bob) if kind == "space.woke"]
    assert woke and woke[-1]["from"] == "light"

    until("deep sleep", sleeping("deep"), sleepy, timeout=SLEEP_SECONDS + DEEP_AFTER_SECONDS + 120)
    runtime = sleepy.runtime("bob", "hello")
    assert runtime["stage"] == "STOPPED"  # deep, with the owner's own sleep time
    assert "running" not in container_states(sleepy) and "paused" not in container_states(sleepy)
    slept = [data["depth"] for kind, data in sleep_events(sleepy, bob) if kind == "space.slept"]
    assert slept[-2:] == ["light", "deep"]

    # Held while it starts, longer than httpx's default 5 s read timeout: a Gradio start.
    again = Client(sleepy.app_url("bob", "hello"), verbose=False, httpx_kwargs={"timeout": 120})
    assert again.predict("again", api_name="/predict") == "Hello, again!"
    woke = [data for kind, data in sleep_events(sleepy, bob) if kind == "space.woke"]
    assert woke[-1]["from"] == "deep"
    assert sleepy.runtime("bob", "hello")["stage"] == "RUNNING"
