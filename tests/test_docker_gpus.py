"""GPUs on the Docker backend with a real `spaceport up` and real containers (issue 12): the
host's GPUs come from a fake inventory (tests/fake_gpus/nvidia-smi, one T4), and t4-small's
catalogue entry sends no device request (`docker.gpu_driver: none`), so the test needs no
GPU. One T4 Space runs holding it; a second waits first in line with the reason in plain
words; pausing the first starts the second. The pieces: tests/unit/test_docker_gpus.py."""

from __future__ import annotations

import json
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
import yaml
from huggingface_hub import HfApi

from sandbox.backend import LABEL_GPUS, LABEL_INSTANCE, LABEL_SPACE
from sandbox.catalogue import shipped_path
from sandbox.hardware import SMALL_HOST_OVERRIDES
from tests import stacks
from tests.platform import Platform, docker_checkout, get_when_served, push, until

FAKE_NVIDIA_SMI = Path(__file__).resolve().parent / "fake_gpus" / "nvidia-smi"
OWNER = "gpu-owner"
TIER = "t4-small"


@pytest.fixture(scope="module")
def gpu_host(docker_engine: None) -> Iterator[Platform]:
    """A Spaceport (sqlite, embedded broker) on a host with one fake T4."""
    catalogue = yaml.safe_load(shipped_path().read_text())
    catalogue["tiers"][TIER]["docker"] = {"gpu_driver": "none"}
    with tempfile.TemporaryDirectory(prefix="spaceport-gpus-catalogue-") as folder:
        path = Path(folder) / "catalogue.yaml"
        path.write_text(yaml.safe_dump(catalogue, sort_keys=False))
        fake_id = uuid.uuid4().hex[:4]  # in the fake uuid: parallel runs never share "the" GPU
        with stacks.own_platform(
            "spaceport-gpus-",
            SPACEPORT_IMAGE_PREFIX="spaceport-test-sqlite-embedded",
            SPACEPORT_INSTANCE=f"spaceport-test-gpus-{uuid.uuid4().hex[:6]}",
            **{
                **stacks.SMALL_SIZES,
                # Hugging Face's t4-small (4 vCPU, 15 GiB) does not fit a 2-CPU test host.
                "SPACEPORT_HARDWARE_OVERRIDES": json.dumps(
                    {**SMALL_HOST_OVERRIDES, TIER: {"cpu": 0.5, "memory_gib": 1, "disk_gib": 2}}
                ),
            },
            SPACEPORT_HARDWARE_CATALOGUE=str(path),
            SPACEPORT_GPU_INVENTORY_COMMAND=str(FAKE_NVIDIA_SMI),
            FAKE_NVIDIA_SMI_GPUS="T4:1",
            FAKE_NVIDIA_SMI_ID=fake_id,
        ) as platform:
            yield platform


def gpus_held_by(platform: Platform, space: str) -> list[str]:
    """The GPU label of each live container of `space` in this installation."""
    client = docker.from_env()
    containers = client.containers.list(
        ignore_removed=True,
        filters={"label": [f"{LABEL_INSTANCE}={platform.instance}", f"{LABEL_SPACE}={space}"]},
    )
    return [c.labels.get(LABEL_GPUS, "") for c in containers]


def test_a_t4_space_holds_the_only_t4_and_the_next_waits_in_line_until_it_pauses(
    gpu_host: Platform, workdir: Path
) -> None:
    token = gpu_host.token(OWNER)
    gpu_host.cli("credit", "grant", OWNER, "100")  # t4-small is a paid tier (billing's 402)
    hub = HfApi(endpoint=gpu_host.url, token=token)
    for name in ("first", "second"):
        hub.create_repo(
            f"{OWNER}/{name}", repo_type="space", space_sdk="docker", space_hardware=TIER
        )

    push(docker_checkout(workdir, "first"), gpu_host.git_url(OWNER, "first", token))
    runtime = gpu_host.wait_for_stage(OWNER, "first", token)
    assert runtime["stage"] == "RUNNING", runtime
    assert runtime["hardware"]["current"] == TIER
    fake_t4 = f"GPU-fa4e0000-{gpu_host.env['FAKE_NVIDIA_SMI_ID']}-4000-8000-000000000000"
    assert gpus_held_by(gpu_host, f"{OWNER}/first") == [fake_t4]
    assert get_when_served(gpu_host.app_url(OWNER, "first")).status_code == 200

    push(docker_checkout(workdir, "second"), gpu_host.git_url(OWNER, "second", token))

    def second() -> dict:
        return gpu_host.runtime(OWNER, "second", token)

    def position() -> int | None:
        return (second().get("queue") or {}).get("position")

    until("the second Space first in line", lambda: position() == 1)
    waiting = second()
    assert waiting["stage"] == "APP_STARTING", waiting
    assert waiting["queue"]["hardware"] == TIER
    assert waiting["errorMessage"] == (
        "waiting for hardware: all 1 T4 GPUs are in use (position 1 in line)"
    )
    assert gpus_held_by(gpu_host, f"{OWNER}/second") == []  # no container while it waits
    events = gpu_host.api(f"/api/spaces/{OWNER}/second/events?kind=hardware.queued", token)
    (queued,) = events.json()["events"]
    assert queued["data"]["hardware"] == TIER and queued["data"]["position"] == 1

    hub.pause_space(f"{OWNER}/first")
    runtime = gpu_host.wait_for_stage(OWNER, "second", token)
    assert runtime["stage"] == "RUNNING", runtime
    assert "queue" not in runtime or runtime["queue"] is None
    assert gpus_held_by(gpu_host, f"{OWNER}/second") == [fake_t4]
    assert gpus_held_by(gpu_host, f"{OWNER}/first") == []
    granted = gpu_host.api(f"/api/spaces/{OWNER}/second/events?kind=hardware.granted", token)
    assert [e["data"]["hardware"] for e in granted.json()["events"]] == [TIER]
