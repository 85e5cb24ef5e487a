"""The host's GPU inventory (sandbox/gpus.py): nvidia-smi's CSV as real hosts print it, the
part names the catalogue uses, and a command that is missing, fails or hangs never taking
the controller down."""

from __future__ import annotations

import logging
import subprocess
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest

from sandbox.gpus import DEFAULT_COMMAND, Gpu, Inventory, model_of, parse_inventory

# `nvidia-smi --query-gpu=index,uuid,name,memory.total --format=csv,noheader,nounits` on
# real hosts (uuids shortened by nothing: they are that long).
AWS_G4DN_12XLARGE = """\
0, GPU-5d8a1a4c-9b6e-3f0b-7a51-2c3f6e0b9d11, Tesla T4, 15360
1, GPU-0c7e2b19-6d4a-8e52-1f3b-9a8c7d6e5f42, Tesla T4, 15360
2, GPU-a1b2c3d4-e5f6-0718-293a-4b5c6d7e8f90, Tesla T4, 15360
3, GPU-1f2e3d4c-5b6a-7980-8a9b-0c1d2e3f4a5b, Tesla T4, 15360
"""
MIXED = """\
0, GPU-11111111-2222-3333-4444-555555555555, NVIDIA A10G, 23028
1, GPU-66666666-7777-8888-9999-000000000000, NVIDIA L4, 23034
2, GPU-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee, NVIDIA L40S, 46068
3, GPU-ffffffff-0000-1111-2222-333333333333, NVIDIA A100-SXM4-80GB, 81920
4, GPU-44444444-5555-6666-7777-888888888888, NVIDIA H100 80GB HBM3, 81559
5, GPU-99999999-aaaa-bbbb-cccc-dddddddddddd, A100-PCIE-40GB, 40960
"""
# What nvidia-smi prints (on stdout, exit status 9) when the driver is not loaded.
DRIVER_DOWN = (
    "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. "
    "Make sure that the latest NVIDIA driver is installed and running.\n"
)


def test_nvidia_smi_csv_is_read_into_gpus_with_the_catalogues_model_names() -> None:
    gpus = parse_inventory(AWS_G4DN_12XLARGE)
    assert [g.index for g in gpus] == [0, 1, 2, 3]
    assert gpus[0] == Gpu(0, "GPU-5d8a1a4c-9b6e-3f0b-7a51-2c3f6e0b9d11", "T4", 15.0)
    assert [(g.model, round(g.memory_gib)) for g in parse_inventory(MIXED)] == [
        ("A10G", 22),
        ("L4", 22),
        ("L40S", 45),
        ("A100", 80),
        ("H100", 80),
        ("A100", 40),
    ]


@pytest.mark.parametrize(
    ("name", "model"),
    [
        ("Tesla T4", "T4"),
        ("Tesla V100-SXM2-16GB", "V100"),
        ("NVIDIA A10", "A10"),  # not an A10G: a different part
        ("NVIDIA H100 PCIe", "H100"),
        ("NVIDIA H200", "H200"),
        ("NVIDIA GeForce RTX 4090", "RTX 4090"),
        ("NVIDIA RTX A6000", "RTX A6000"),
    ],
)
def test_marketing_names_reduce_to_the_part(name: str, model: str) -> None:
    assert model_of(name) == model


def test_lines_that_are_not_gpus_are_skipped() -> None:
    assert parse_inventory(DRIVER_DOWN) == []
    assert parse_inventory("") == []
    board = parse_inventory("0, GPU-abc, NVIDIA A100-SXM4-40GB, [N/A]\n\n")
    assert [(g.model, g.memory_gib) for g in board] == [("A100", 0.0)]  # still a GPU


def _runner(outputs: list[object]) -> tuple[list[Sequence[str]], object]:
    calls: list[Sequence[str]] = []

    def run(argv: Sequence[str], timeout: float) -> str:
        calls.append(argv)
        answer = outputs.pop(0) if len(outputs) > 1 else outputs[0]
        if isinstance(answer, BaseException):
            raise answer
        assert isinstance(answer, str)
        return answer

    return calls, run


def test_the_default_command_is_nvidia_smis_csv_query() -> None:
    inventory = Inventory()
    assert inventory.argv[:2] == ["nvidia-smi", "--query-gpu=index,uuid,name,memory.total"]
    assert "--format=csv,noheader,nounits" in DEFAULT_COMMAND


def test_a_host_without_the_command_has_no_gpus_and_says_so_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    inventory = Inventory("/nonexistent/nvidia-smi --query-gpu=index")
    with caplog.at_level(logging.INFO, logger="sandbox.gpus"):
        assert inventory.read() == []
        assert inventory.read() == []
    said = [r for r in caplog.records if "not found" in r.getMessage()]
    assert len(said) == 1 and "no GPUs" in said[0].getMessage()


def test_an_empty_command_turns_detection_off() -> None:
    calls, run = _runner(["0, GPU-x, Tesla T4, 15360"])
    inventory = Inventory("", runner=run)  # type: ignore[arg-type]
    assert inventory.read() == [] and inventory.gpus() == [] and calls == []


def test_a_failing_or_hanging_command_keeps_the_last_inventory_and_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    binary = tmp_path / "nvidia-smi"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    calls, run = _runner(
        [
            "0, GPU-a, Tesla T4, 15360\n",
            subprocess.TimeoutExpired([str(binary)], 10),
            subprocess.CalledProcessError(9, [str(binary)], stderr=b"driver gone"),
            "0, GPU-a, Tesla T4, 15360\n1, GPU-b, Tesla T4, 15360\n",
        ]
    )
    inventory = Inventory(str(binary), runner=run)  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING, logger="sandbox.gpus"):
        assert [g.uuid for g in inventory.read()] == ["GPU-a"]
        assert [g.uuid for g in inventory.read()] == ["GPU-a"]  # hung: the last one stays
        assert [g.uuid for g in inventory.read()] == ["GPU-a"]  # failed: the same
    assert [g.uuid for g in inventory.read()] == ["GPU-a", "GPU-b"]
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "did not answer within 10 s" in messages and "driver gone" in messages
    assert len(calls) == 4


def test_a_real_command_that_hangs_is_cut_off(tmp_path: Path) -> None:
    binary = tmp_path / "nvidia-smi"
    binary.write_text("#!/bin/sh\nexec sleep 30\n")
    binary.chmod(0o755)
    inventory = Inventory(str(binary))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("sandbox.gpus.COMMAND_TIMEOUT_SECONDS", 0.2)
        assert inventory.read() == []  # no inventory yet: none, and the controller goes on


def test_a_stale_inventory_is_refreshed_in_the_background() -> None:
    release = threading.Event()
    outputs = iter(["0, GPU-a, Tesla T4, 15360\n", "0, GPU-b, NVIDIA L4, 23034\n"])

    def run(argv: Sequence[str], timeout: float) -> str:
        answer = next(outputs)
        if "GPU-b" in answer:
            assert release.wait(10)  # a slow second read
        return answer

    inventory = Inventory("true", runner=run, refresh_seconds=0)
    assert [g.uuid for g in inventory.gpus()] == ["GPU-a"]  # first read: now
    assert [g.uuid for g in inventory.gpus()] == ["GPU-a"]  # stale: the refresh runs aside
    release.set()
    for _ in range(200):
        if inventory._gpus and inventory._gpus[0].uuid == "GPU-b":
            break
        threading.Event().wait(0.01)
    assert [g.model for g in inventory._gpus or []] == ["L4"]
