"""One active controller (orchestrator/controller/leader.py), on both databases: a second
controller stands by while the first holds the lock, and takes over when the first is
killed (PostgreSQL's advisory lock, or the file lock on SQLite)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

from orchestrator.controller import leader
from tests.unit.test_controller import stack  # noqa: F401 - fixture

HOLDER = """
import sys, time
from orchestrator.controller import leader
with leader.leadership():
    print("held", flush=True)
    time.sleep(600)
"""


@pytest.fixture
def standby_pauses(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """Set each time a controller that could not take the lock pauses before asking again."""
    paused = threading.Event()
    real_pause = leader._pause

    def pause(stop: threading.Event | None) -> None:
        paused.set()
        real_pause(stop)

    monkeypatch.setattr(leader, "_pause", pause)
    monkeypatch.setattr(leader, "STANDBY_SECONDS", 0.05)
    return paused


def standby(stop: threading.Event, acquired: threading.Event) -> threading.Thread:
    def run() -> None:
        try:
            with leader.leadership(stop) as lease:
                acquired.set()
                assert lease.alive()
                stop.wait(30)
        except TimeoutError:
            pass

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.fixture
def holder(stack: str) -> Iterator[subprocess.Popen[str]]:  # noqa: F811
    """Another controller process holding the lock."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER],
        stdout=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "held"
    yield process
    if process.poll() is None:
        process.kill()
    process.wait(10)


def test_a_standby_waits_then_takes_over_when_the_holder_is_killed(
    holder: subprocess.Popen[str], standby_pauses: threading.Event
) -> None:
    stop, acquired = threading.Event(), threading.Event()
    thread = standby(stop, acquired)
    try:
        assert standby_pauses.wait(10)  # it asked, and was refused
        standby_pauses.clear()
        assert standby_pauses.wait(10)  # and again: still not the leader
        assert not acquired.is_set()
        holder.send_signal(signal.SIGKILL)  # the active controller dies
        assert acquired.wait(15)
    finally:
        stop.set()
        thread.join(10)


def test_two_in_one_process_are_one_at_a_time(
    stack: str,  # noqa: F811
    standby_pauses: threading.Event,
) -> None:
    stop, acquired = threading.Event(), threading.Event()
    with leader.leadership():
        thread = standby(stop, acquired)
        assert standby_pauses.wait(10)
        assert not acquired.is_set()
    assert acquired.wait(15)  # released: the standby takes it
    stop.set()
    thread.join(10)
