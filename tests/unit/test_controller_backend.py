"""What the controller relies on of a backend, without Docker: the Docker backend's list
survives a container that vanishes between list and inspect, its event stream wakes the
controller for the right Space, and the readiness prober never lets one hanging probe
delay another's."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from docker.errors import NotFound

from sandbox import security
from sandbox.backend import (
    LABEL_HARDWARE,
    LABEL_INSTANCE,
    LABEL_REVISION,
    LABEL_SHA,
    LABEL_SPACE,
    LABEL_SPACE_ID,
)
from sandbox.docker_backend import DockerBackend
from sandbox.readiness import Prober

INSTALLATION = "test-installation"


class FakeContainer:
    def __init__(self, number: int) -> None:
        self.id = f"c{number}"
        self.labels = {
            LABEL_INSTANCE: INSTALLATION,
            LABEL_SPACE: f"alice/s{number}",
            LABEL_SPACE_ID: f"uid{number}",
            LABEL_REVISION: f"rev{number}",
            LABEL_SHA: "a" * 40,
            LABEL_HARDWARE: "cpu-basic",
        }
        self.attrs: dict[str, Any] = {
            "State": {"Status": "running", "StartedAt": "2026-01-01T00:00:00.000000000Z"},
            "NetworkSettings": {
                "Networks": {security.SPACES_NETWORK: {"IPAddress": f"10.0.0.{number}"}}
            },
            "HostConfig": {"NanoCpus": 2_000_000_000, "Memory": 2**30},
            "Config": {"Env": ["SPACEPORT_APP_PORT=7860"]},
        }


class FakeContainers:
    """docker-py's collection: `list` lists, then inspects each (and so raises NotFound
    for one removed in between, as docker-py does)."""

    def __init__(self, client: FakeClient) -> None:
        self.client = client

    def get(self, container_id: str) -> FakeContainer:
        if container_id in self.client.vanished:
            raise NotFound(f"No such container: {container_id}")
        return self.client.containers_by_id[container_id]

    def list(self, all: bool = False, filters: Any = None, **_: Any) -> list[FakeContainer]:
        return [self.get(row["Id"]) for row in self.client.api.containers(all, filters)]


class FakeApi:
    def __init__(self, client: FakeClient) -> None:
        self.client = client
        self.streams: list[list[dict[str, Any]]] = []
        self.done = threading.Event()

    def containers(self, all: bool = False, filters: Any = None, **_: Any) -> list[dict]:
        return [{"Id": cid} for cid in self.client.containers_by_id]

    def events(self, **_: Any) -> Iterator[dict[str, Any]]:
        if self.streams:
            yield from self.streams.pop(0)
        else:
            self.done.set()
            threading.Event().wait(30)  # nothing more happens (the thread is a daemon)


class FakeClient:
    def __init__(self, count: int) -> None:
        self.containers_by_id = {f"c{n}": FakeContainer(n) for n in range(1, count + 1)}
        self.vanished: set[str] = set()
        self.api = FakeApi(self)
        self.containers = FakeContainers(self)

    def info(self) -> dict[str, Any]:
        return {"NCPU": 8, "MemTotal": 16 * 2**30}


def test_a_container_removed_between_list_and_inspect_is_left_out() -> None:
    client = FakeClient(3)
    client.vanished.add("c2")  # listed, then gone before its inspect
    backend = DockerBackend(INSTALLATION, client=client)  # type: ignore[arg-type]
    found = backend.instances()
    assert [i.id for i in found] == ["c1", "c3"]
    assert found[0].hardware == "cpu-basic" and found[0].address == "http://10.0.0.1:7860"
    assert backend.capacity().cpus_free == 8 - 2 * 2  # c2 left out there too


def test_the_engines_events_wake_the_controller_for_their_space() -> None:
    client = FakeClient(1)
    client.api.streams.append(
        [
            {
                "status": "die",
                "timeNano": 1,
                "Actor": {"ID": "c1", "Attributes": {LABEL_SPACE_ID: "uid1"}},
            },
            {"status": "start", "timeNano": 2, "Actor": {"ID": "c9", "Attributes": {}}},
        ]
    )
    backend = DockerBackend(INSTALLATION, client=client)  # type: ignore[arg-type]
    heard: list[str | None] = []
    backend.watch(heard.append)
    assert client.api.done.wait(10)  # both events read, the stream followed again
    backend.close()
    assert heard == ["uid1", None]  # an event without a Space's label: look at everything


def test_a_hanging_probe_never_delays_another() -> None:
    hang, ready = threading.Event(), threading.Event()
    became_ready: list[str] = []

    def probe(address: str) -> bool:
        if address == "http://slow":
            hang.wait(10)
        return True

    def on_ready(uid: str) -> None:
        became_ready.append(uid)
        ready.set()

    prober = Prober(on_ready, probe, concurrency=2, interval=0.01)
    try:
        prober.watch("i-slow", "http://slow", "slow")
        prober.watch("i-quick", "http://quick", "quick")
        assert ready.wait(5)
        assert became_ready == ["quick"]
        assert prober.is_ready("i-quick") and not prober.is_ready("i-slow")
        prober.watch("i-quick", "http://quick", "quick")  # ready ones are not probed again
        assert became_ready == ["quick"]
    finally:
        hang.set()
        prober.close()
