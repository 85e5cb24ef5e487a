"""A GPU the controller counted as free but that another installation on the host took
before the start (the Docker backend's RoomTaken) puts the Space back in line: it is
started again when room shows, never left in RUNTIME_ERROR like a start the backend
refused for good."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from orchestrator.controller.loop import Controller
from orchestrator.core.models import Stage
from sandbox.backend import Instance, Revision, RoomTaken
from sandbox.memory_backend import MemoryBackend
from tests.unit.test_controller import (
    new_space,
    row,
    stack,  # noqa: F401 - the fixture
    stage,
)


class TakenOnce(MemoryBackend):
    """One T4; its first start finds the GPU taken (as `DockerBackend._pick_gpus` does)."""

    def __init__(self) -> None:
        super().__init__(gpus={"T4": 1}, ready_on_start=True)
        self.taken = 0

    def start(self, revision: Revision) -> Instance:
        if self.taken == 0:
            self.taken += 1
            raise RoomTaken("t4-small needs 1 T4 GPU(s) and 0 are free")
        return super().start(revision)


@pytest.fixture
def backend() -> Iterator[TakenOnce]:
    made = TakenOnce()
    yield made
    made.close()


@pytest.mark.usefixtures("stack")
def test_a_gpu_taken_since_it_was_counted_is_waited_for_not_a_runtime_error(
    backend: TakenOnce,
) -> None:
    controller = Controller(backend)
    try:
        space = new_space("gpu", requested_hardware="t4-small")
        controller.settle()
        assert backend.taken == 1  # the first start found its GPU taken
        assert stage(space) == Stage.RUNNING  # looked at again, and started
        assert row(space).failed_revision is None
        assert len(backend.running) == 1
    finally:
        controller.stop()
        controller.reconciler.close()
