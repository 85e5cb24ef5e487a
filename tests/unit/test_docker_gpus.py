"""GPUs on the Docker backend, without Docker or GPUs: a fake Engine (containers and their
labels, as docker-py and the Engine's list answer) and the tests' fake nvidia-smi
(tests/fake_gpus/nvidia-smi). Each GPU Space gets specific GPUs by uuid, two starts at once
never share one, and room is counted from containers' labels alone, so a restarted
controller and other installations see the same count."""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from docker.errors import NotFound

from sandbox.admission import Policy
from sandbox.backend import LABEL_GPUS, LABEL_INSTANCE, LABEL_MANAGED, Revision, RoomTaken
from sandbox.catalogue import CatalogueError, parse, shipped_path
from sandbox.docker_backend import DockerBackend
from sandbox.gpus import Inventory
from sandbox.hardware import HardwareTier, get_tier

FAKE_NVIDIA_SMI = Path(__file__).resolve().parent.parent / "fake_gpus" / "nvidia-smi"
UUID_0 = "GPU-fa4e0000-0000-4000-8000-000000000000"
UUID_1 = "GPU-fa4e0000-0000-4000-8000-000000000001"


class FakeContainer:
    def __init__(self, engine: FakeEngine, spec: dict[str, Any]) -> None:
        self.engine = engine
        self.id = f"c{next(engine.ids)}"
        self.name = str(spec["name"])
        self.labels: dict[str, str] = dict(spec["labels"])
        # The Engine's RFC 3339 with its trailing zeros dropped, as Go writes it.
        created = f"2026-01-01T00:00:00.{next(engine.clock):09d}".rstrip("0").rstrip(".")
        self.attrs: dict[str, Any] = {
            "Created": created + "Z",
            "State": {"Status": "running", "StartedAt": "2026-01-01T00:00:00.000000000Z"},
            "NetworkSettings": {"Networks": {}},
            "HostConfig": {
                "NanoCpus": int(spec["nano_cpus"]),
                "Memory": int(str(spec["mem_limit"]).removesuffix("m")) * 2**20,
            },
            "Config": {"Env": []},
        }

    @property
    def status(self) -> str:
        return str(self.attrs["State"]["Status"])

    def reload(self) -> None:
        return None

    def stop(self, timeout: int = 10) -> None:
        self.attrs["State"]["Status"] = "exited"

    def start(self) -> None:
        self.attrs["State"]["Status"] = "running"
        self.engine.started.append(self.id)

    def remove(self, force: bool = False) -> None:
        self.engine.by_id.pop(self.id, None)


class FakeContainers:
    def __init__(self, engine: FakeEngine) -> None:
        self.engine = engine

    def get(self, key: str) -> FakeContainer:
        for container in self.engine.by_id.values():
            if key in (container.id, container.name):
                return container
        raise NotFound(f"No such container: {key}")

    def run(self, **spec: Any) -> FakeContainer:
        time.sleep(self.engine.run_seconds)  # the Engine's create and start take a while
        self.engine.runs.append(spec)
        container = FakeContainer(self.engine, spec)
        self.engine.by_id[container.id] = container
        self.engine.started.append(container.id)
        return container

    def create(self, **spec: Any) -> FakeContainer:
        time.sleep(self.engine.run_seconds)
        self.engine.runs.append(spec)
        container = FakeContainer(self.engine, spec)
        container.attrs["State"]["Status"] = "created"
        self.engine.by_id[container.id] = container
        return container


class FakeApi:
    def __init__(self, engine: FakeEngine) -> None:
        self.engine = engine

    def containers(
        self, all: bool = False, filters: dict[str, Any] | None = None, **_: Any
    ) -> list[dict[str, Any]]:
        wanted = (filters or {}).get("label", [])
        wanted = [wanted] if isinstance(wanted, str) else list(wanted)
        rows = []
        for container in list(self.engine.by_id.values()):
            status = container.attrs["State"]["Status"]
            if not all and status != "running":
                continue
            if not [label for label in wanted if not _matches(container.labels, label)]:
                rows.append({"Id": container.id, "State": status, "Labels": container.labels})
        return rows

    def inspect_container(self, container_id: str) -> dict[str, Any]:
        container = self.engine.by_id.get(container_id)
        if container is None:
            raise NotFound(f"No such container: {container_id}")
        return container.attrs


def _matches(labels: dict[str, str], wanted: str) -> bool:
    key, _, value = wanted.partition("=")
    return key in labels and (not value or labels[key] == value)


class FakeImages:
    def get(self, ref: str) -> Any:
        return type("Image", (), {"attrs": {"Config": {}}})()


class FakeEngine:
    """One Docker Engine; several FakeEngine-backed DockerBackends may share it."""

    def __init__(self, cpus: int = 16, memory_gib: int = 64) -> None:
        self.ids = itertools.count(1)
        # Creation times in ns, 10 us apart from 100 us: the Engine's text drops trailing
        # zeros, so the first two (".0001Z", ".00011Z") sort the wrong way round as text.
        self.clock = itertools.count(100_000, 10_000)
        self.started: list[str] = []  # ids, in the order they were started
        self.by_id: dict[str, FakeContainer] = {}
        self.runs: list[dict[str, Any]] = []
        self.run_seconds = 0.0
        self.cpus, self.memory_gib = cpus, memory_gib
        self.api = FakeApi(self)
        self.containers = FakeContainers(self)
        self.images = FakeImages()

    def info(self) -> dict[str, Any]:
        return {"NCPU": self.cpus, "MemTotal": self.memory_gib * 2**30}


@pytest.fixture
def fake_gpus(monkeypatch: pytest.MonkeyPatch) -> Any:
    def have(spec: str) -> Inventory:
        monkeypatch.setenv("FAKE_NVIDIA_SMI_GPUS", spec)
        monkeypatch.delenv("FAKE_NVIDIA_SMI_ID", raising=False)  # the uuids above
        return Inventory(str(FAKE_NVIDIA_SMI))

    return have


def backend_on(engine: FakeEngine, inventory: Inventory, **kwargs: Any) -> DockerBackend:
    backend = DockerBackend(
        kwargs.pop("instance", "test"),
        client=engine,  # type: ignore[arg-type]
        gpu_inventory=inventory,
        **kwargs,
    )
    backend._network_ready = True  # the fake Engine has no networks
    return backend


def revision(name: str, tier: HardwareTier) -> Revision:
    return Revision(
        space_id=f"{name:0>24}"[:24], space=f"alice/{name}", sha="a" * 40,
        image="spaceport/space:abc", port=7860, hardware=tier,
    )  # fmt: skip


def small(name: str, **changes: Any) -> HardwareTier:
    return dataclasses.replace(get_tier(name), cpu=0.5, memory_gib=1, **changes)


def test_each_gpu_space_gets_its_own_gpus_by_uuid_and_carries_them_in_a_label(
    fake_gpus: Any,
) -> None:
    engine = FakeEngine()
    backend = backend_on(engine, fake_gpus("T4:2"))
    backend.prepare()
    t4 = small("t4-small")
    assert backend.tier_room(t4) == type(backend.tier_room(t4))(free=2, total=2, reason=None)

    first = backend.start(revision("one", t4))
    second = backend.start(revision("two", t4))
    requests = [spec["device_requests"] for spec in engine.runs]
    assert requests == [
        [{"Driver": "nvidia", "Capabilities": [["gpu"]], "DeviceIDs": [UUID_0]}],
        [{"Driver": "nvidia", "Capabilities": [["gpu"]], "DeviceIDs": [UUID_1]}],
    ]
    assert [spec["labels"][LABEL_GPUS] for spec in engine.runs] == [UUID_0, UUID_1]
    room = backend.tier_room(t4)
    assert room is not None and room.free == 0 and room.total == 2
    assert room.reason == "all 2 T4 GPUs are in use"
    capacity = backend.capacity()
    assert (capacity.gpus, capacity.gpus_free) == (2, 0)
    with pytest.raises(RoomTaken):  # the controller never asks this, but a race could
        backend.start(revision("three", t4))

    backend.stop(first.id)
    assert backend.tier_room(t4).free == 1  # type: ignore[union-attr]
    backend.start(revision("four", t4))
    assert engine.runs[-1]["labels"][LABEL_GPUS] == UUID_0  # the one given back
    assert second.id in engine.by_id


def test_two_starts_at_once_never_get_the_same_gpu(fake_gpus: Any) -> None:
    engine = FakeEngine()
    engine.run_seconds = 0.05  # wide enough for two unlocked starts to pick the same GPU
    backend = backend_on(engine, fake_gpus("T4:2"))
    t4 = small("t4-small")
    threads = [
        threading.Thread(target=backend.start, args=(revision(name, t4),))
        for name in ("one", "two")
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sorted(spec["labels"][LABEL_GPUS] for spec in engine.runs) == [UUID_0, UUID_1]


def test_two_installations_picking_one_gpu_at_once_start_only_the_first_created(
    fake_gpus: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two processes (two installations on one Engine) share no lock: both see UUID_0 free
    and create a container naming it. Only the first created starts; the other is removed
    before it runs and its start is RoomTaken (the controller puts it back in line)."""
    monkeypatch.setattr("sandbox.docker_backend._GPU_LOCK", contextlib.nullcontext())
    engine = FakeEngine()
    engine.run_seconds = 0.05  # both pick before either has created its container
    inventory = fake_gpus("T4:2")
    t4 = small("t4-small")
    outcomes: dict[str, object] = {}

    def start(instance: str) -> None:
        try:
            outcomes[instance] = backend_on(engine, inventory, instance=instance).start(
                revision(instance, t4)
            )
        except RoomTaken as exc:
            outcomes[instance] = exc

    threads = [threading.Thread(target=start, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert [spec["labels"][LABEL_GPUS] for spec in engine.runs] == [UUID_0, UUID_0]
    taken = [name for name, outcome in outcomes.items() if isinstance(outcome, RoomTaken)]
    assert len(taken) == 1, outcomes
    first_created = min(engine.by_id.values(), key=lambda c: int(c.id.removeprefix("c")))
    assert list(engine.by_id) == [first_created.id]  # the other is gone
    assert engine.started == [first_created.id]
    assert first_created.labels[LABEL_INSTANCE] != taken[0]


def test_gpus_are_counted_from_docker_across_restarts_and_installations(
    fake_gpus: Any,
) -> None:
    engine = FakeEngine()
    inventory = fake_gpus("T4:2")
    t4 = small("t4-small")
    backend_on(engine, inventory, instance="other").start(revision("theirs", t4))
    restarted = backend_on(engine, inventory)  # knows nothing but what Docker says
    assert restarted.tier_room(t4).free == 1  # type: ignore[union-attr]
    restarted.start(revision("mine", t4))
    assert engine.runs[-1]["labels"][LABEL_GPUS] == UUID_1
    assert engine.runs[-1]["labels"][LABEL_INSTANCE] == "test"

    # An exited container (a crash kept for its log) holds no GPU.
    theirs = next(c for c in engine.by_id.values() if c.labels[LABEL_INSTANCE] == "other")
    theirs.stop()
    assert restarted.tier_room(t4).free == 1  # type: ignore[union-attr]
    assert restarted.capacity().gpus_free == 1


def test_a_tier_whose_gpu_the_host_lacks_says_so_in_plain_words(fake_gpus: Any) -> None:
    backend = backend_on(FakeEngine(), fake_gpus("T4:1"))
    room = backend.tier_room(small("a100-large"))
    assert room is not None and (room.free, room.total) == (0, 0)
    assert room.reason == "this host has no A100 GPU: choose another tier"
    x2 = backend.tier_room(small("t4-medium", gpu_count=2))
    assert x2 is not None and x2.free == 0 and "needs 2 T4 GPUs" in str(x2.reason)


def test_a_gpu_tier_must_also_fit_the_hosts_cpu_and_memory(fake_gpus: Any) -> None:
    engine = FakeEngine(cpus=2, memory_gib=24)
    backend = backend_on(engine, fake_gpus("T4:2"))
    # Hugging Face's t4-small (4 vCPU, 15 GiB) never fits a 2-CPU host, GPUs or not.
    big = backend.tier_room(get_tier("t4-small"))
    assert big is not None and big.free == 0
    assert "choose a smaller tier" in str(big.reason)

    sized = dataclasses.replace(get_tier("t4-small"), cpu=1, memory_gib=10)
    assert backend.tier_room(sized).free == 2  # type: ignore[union-attr]
    reserved = backend_on(engine, fake_gpus("T4:2"), admission=Policy(reserve_memory_gib=10))
    room = reserved.tier_room(sized)
    assert room is not None and room.free == 1  # 14 GiB left for Spaces: one of 10 GiB
    reserved.start(revision("one", sized))
    room = reserved.tier_room(sized)
    assert room is not None and room.free == 0 and room.total == 1
    assert room.reason is not None and "of memory" in room.reason  # the GPU is free


def test_cpu_tiers_are_left_to_the_controllers_admission(fake_gpus: Any) -> None:
    engine = FakeEngine()
    backend = backend_on(engine, fake_gpus("T4:1"))
    cpu = small("cpu-basic")
    assert backend.tier_room(cpu) is None
    backend.start(revision("plain", cpu))
    assert "device_requests" not in engine.runs[0]
    assert LABEL_GPUS not in engine.runs[0]["labels"]
    assert engine.runs[0]["labels"][LABEL_MANAGED] == "true"


def with_t4_small_driver(driver: str) -> str:
    """The shipped catalogue with t4-small's docker.gpu_driver set to `driver`."""
    data = yaml.safe_load(shipped_path().read_text())
    data["tiers"]["t4-small"]["docker"] = {"gpu_driver": driver}
    return yaml.safe_dump(data)


def test_driver_none_assigns_gpus_without_a_device_request(fake_gpus: Any) -> None:
    tiers = parse(with_t4_small_driver("none"), "test")
    assert tiers["t4-small"].gpu_driver == "none"
    engine = FakeEngine()
    backend = backend_on(engine, fake_gpus("T4:1"))
    tier = dataclasses.replace(tiers["t4-small"], cpu=0.5, memory_gib=1)
    backend.start(revision("one", tier))
    assert "device_requests" not in engine.runs[0]
    assert engine.runs[0]["labels"][LABEL_GPUS] == UUID_0
    assert backend.tier_room(tier).reason == "all 1 T4 GPUs are in use"  # type: ignore[union-attr]


def test_the_catalogue_names_the_drivers_it_takes() -> None:
    with pytest.raises(CatalogueError) as refused:
        parse(with_t4_small_driver("amd"), "test")
    assert "t4-small: docker.gpu_driver" in str(refused.value)
    assert "'nvidia' or 'none'" in str(refused.value)
