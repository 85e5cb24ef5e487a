"""The embedded broker (orchestrator/builds/embedded_broker.py): many processes send at once while
the worker takes messages, and not one message is lost or broken; a message sent reaches a
waiting consumer within a fraction of a second; the files are private."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

from celery import Celery

from orchestrator.builds import embedded_broker
from orchestrator.builds.tasks import make_celery
from orchestrator.core.settings import Settings

SENDERS = 4
PER_SENDER = 50

SEND = """
import sys
from orchestrator.builds.tasks import celery_app
sender = int(sys.argv[1])
for n in range(int(sys.argv[2])):
    celery_app.send_task("spaceport.build", args=[sender * 1000 + n])
"""


def app_for(home: Path) -> Celery:
    return make_celery(Settings(home=home, broker_url=None))


def senders(home: Path) -> list[subprocess.Popen[bytes]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPACEPORT_")}
    env["SPACEPORT_HOME"] = str(home)
    return [
        subprocess.Popen(
            [sys.executable, "-c", SEND, str(sender), str(PER_SENDER)],
            env=env,
            cwd=Path(__file__).resolve().parents[2],
        )
        for sender in range(SENDERS)
    ]


def test_concurrent_senders_lose_nothing(tmp_path: Path) -> None:
    app = app_for(tmp_path)
    received: list[int] = []
    with app.connection_for_read() as connection:
        queue = connection.SimpleQueue("celery")
        processes = senders(tmp_path)
        # Take messages while the senders write, as the worker does.
        deadline = time.monotonic() + 120
        while len(received) < SENDERS * PER_SENDER and time.monotonic() < deadline:
            try:
                message = queue.get(timeout=1)
            except queue.Empty:
                if all(p.poll() is not None for p in processes) and not queue.qsize():
                    break
                continue
            received.append(message.payload[0][0])  # protocol 2 body: (args, kwargs, embed)
            message.ack()
        queue.close()
    assert [p.wait(timeout=60) for p in processes] == [0] * SENDERS
    expected = {s * 1000 + n for s in range(SENDERS) for n in range(PER_SENDER)}
    assert sorted(received) == sorted(expected)


def test_a_waiting_consumer_gets_a_message_within_a_second(tmp_path: Path) -> None:
    app = app_for(tmp_path)
    with app.connection_for_read() as connection:
        queue = connection.SimpleQueue("celery")
        queue.qsize()  # the tables exist and the consumer polls, as a running worker
        sent = time.monotonic()
        app.send_task("spaceport.build", args=[7])
        message = queue.get(timeout=5)
        waited = time.monotonic() - sent
        message.ack()
        queue.close()
    assert message.payload[0] == [7]
    assert waited < 1.0


def test_delivered_messages_are_deleted_and_the_files_are_private(tmp_path: Path) -> None:
    app = app_for(tmp_path)
    for n in range(3):
        app.send_task("spaceport.build", args=[n])
    with app.connection_for_read() as connection:
        queue = connection.SimpleQueue("celery")
        for _ in range(2):
            queue.get(timeout=5).ack()
        queue.close()
    assert embedded_broker.delete_delivered(tmp_path / "broker.db") == 2
    with app.connection_for_read() as connection:
        queue = connection.SimpleQueue("celery")
        assert queue.get(timeout=5).payload[0] == [2]  # the undelivered one is kept
        queue.close()
    broker_files = sorted(tmp_path.glob("broker.db*"))
    assert broker_files
    for path in broker_files:
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path
