"""An in-memory backend: instances are records, nothing runs. For the controller's unit
tests and benches, which drive it with knobs: make an instance ready, let it exit with a
code, hang its probe, make it vanish without a word, fail or hold the next start. It
freezes and thaws as Docker does (a frozen instance holds memory, not CPU) unless
`freezable` is set False, as on Kubernetes.

It keeps the Backend contract the controller relies on: `watch` callbacks for every change
(start, stop, exit, ready; not for `vanish`, which is what a missed event looks like),
`Instance.ready`, capacity by the instances' limits, logs and disk usage, and the bucket
volumes its starts made (`volumes`, `remove_volume`; their sizes set by `fill_volume`,
refused removal while an instance, running or exited, mounts one, as Docker refuses). With
`gpus` (how
many of each GPU model, e.g. {"T4": 1}) it counts room for GPU tiers itself
(`tier_room`, as the Kubernetes backend does from its nodes), by the GPUs its running
instances hold; CPU tiers are left to the controller's admission.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime

from sandbox.admission import gpu_room
from sandbox.backend import (
    Backend,
    BackendError,
    Capacity,
    Instance,
    InstanceState,
    KeptVolume,
    Revision,
    TierRoom,
    WatchCallback,
)
from sandbox.hardware import HardwareTier, get_tier
from sandbox.readiness import Prober


class MemoryBackend(Backend):
    """A host of `cpus` and `memory_gib`. Instances start RUNNING, not ready; they become
    ready by `make_ready`, at once with `ready_on_start`, or when `probe(address)` (run by
    the same bounded prober as Docker's) says so."""

    def __init__(
        self,
        cpus: float = 1024,
        memory_gib: float = 16384,
        *,
        ready_on_start: bool = False,
        probe: Callable[[str], bool] | None = None,
        probe_concurrency: int = 4,
        gpus: dict[str, int] | None = None,
    ) -> None:
        self.cpus, self.memory_gib = cpus, memory_gib
        self.gpus = gpus  # GPUs by model; None: no room counted per tier
        self.ready_on_start = ready_on_start
        self.running: dict[str, Instance] = {}
        self.written: dict[str, int] = {}
        self.log_lines: dict[str, list[str]] = {}
        # What was asked, in order, with the time (time.monotonic) of each call: benches
        # measure how long a change takes to reach the backend from these.
        self.started: list[tuple[float, Revision]] = []
        self.stopped: list[tuple[float, str]] = []
        self.calls = 0  # every call of instances(), capacity(), disk_usage()
        self.fail_next_start: str | None = None  # the BackendError message of the next start
        # start() and stop() of a Space (by owner/name) wait until its event is set.
        self.holds: dict[str, threading.Event] = {}
        self.forgotten: list[str] = []  # the uids `forget` was called with, in order
        self.freezable = True  # False: like Kubernetes, freeze() is refused
        self.frozen_calls: list[tuple[float, str]] = []
        self.thawed_calls: list[tuple[float, str]] = []
        # Bucket volumes made by starts: name -> bytes its files take (fill_volume).
        self.kept_volumes: dict[str, int] = {}
        self.removed_volumes: list[str] = []  # remove_volume's names, in order
        self._mounts_of: dict[str, tuple[str, ...]] = {}  # instance id -> its volumes
        self._ids = itertools.count(1)
        self._lock = threading.RLock()
        self._watchers: list[WatchCallback] = []
        self._prober = (
            Prober(self._became_ready, probe, concurrency=probe_concurrency, interval=0.02)
            if probe is not None
            else None
        )

    # -- Backend ------------------------------------------------------------------

    def start(self, revision: Revision) -> Instance:
        self._hold(revision.space)
        with self._lock:
            self.started.append((time.monotonic(), revision))
            if self.fail_next_start is not None:
                message, self.fail_next_start = self.fail_next_start, None
                raise BackendError(message)
            number = next(self._ids)
            instance = Instance(
                id=f"i{number}",
                space_id=revision.space_id,
                space=revision.space,
                revision=revision.key,
                sha=revision.sha,
                state=InstanceState.RUNNING,
                address=f"http://10.9.{number // 250}.{number % 250 + 1}:{revision.port}",
                started_at=datetime.now(UTC),
                cpus=revision.hardware.cpu,
                memory_gib=revision.hardware.memory_gib,
                ready=self.ready_on_start,
                hardware=revision.hardware.name,
            )
            self.running[instance.id] = instance
            self.log_lines[instance.id] = [f"{revision.space} started"]
            kept = tuple(m.name for m in revision.mounts if m.source_dir is None)
            for name in kept:
                self.kept_volumes.setdefault(name, 0)
            self._mounts_of[instance.id] = kept
        if self._prober is not None and instance.address:
            self._prober.watch(instance.id, instance.address, instance.space_id)
        self._notify(instance.space_id)
        return instance

    def stop(self, instance_id: str) -> None:
        known = self.running.get(instance_id)
        if known is not None:
            self._hold(known.space)
        with self._lock:
            self.stopped.append((time.monotonic(), instance_id))
            instance = self.running.pop(instance_id, None)
            self.written.pop(instance_id, None)
            self._mounts_of.pop(instance_id, None)
        if self._prober is not None:
            self._prober.forget(instance_id)
        if instance is not None:
            self._notify(instance.space_id)

    def instances(self) -> list[Instance]:
        with self._lock:
            self.calls += 1
            return list(self.running.values())

    def logs(
        self,
        instance_id: str,
        tail: int | None = None,
        follow: bool = False,
        timestamps: bool = False,
    ) -> Iterator[str]:
        # Lines are kept as given, timed or not: `timestamps` adds nothing (a line without a
        # time is stamped by its reader when it is read).
        lines = list(self.log_lines.get(instance_id, []))
        return iter(lines[-tail:] if tail else lines)

    def capacity(self) -> Capacity:
        with self._lock:
            self.calls += 1
            live = [i for i in self.running.values() if i.state != InstanceState.EXITED]
            return Capacity(
                cpus=self.cpus,
                memory_gib=self.memory_gib,
                cpus_free=self.cpus - sum(i.cpus for i in live if not i.frozen),
                memory_gib_free=self.memory_gib - sum(i.memory_gib for i in live),
            )

    def disk_usage(self) -> dict[str, int]:
        with self._lock:
            self.calls += 1
            return dict(self.written)

    def volumes(self) -> list[KeptVolume]:
        with self._lock:
            used = {name for names in self._mounts_of.values() for name in names}
            return [
                KeptVolume(name, in_use=name in used, size_bytes=size)
                for name, size in sorted(self.kept_volumes.items())
            ]

    def remove_volume(self, name: str) -> None:
        with self._lock:
            if any(name in names for names in self._mounts_of.values()):
                raise BackendError(f"could not remove volume {name}: it is in use")
            self.removed_volumes.append(name)
            self.kept_volumes.pop(name, None)

    @property
    def can_freeze(self) -> bool:
        return self.freezable

    def freeze(self, instance_id: str) -> None:
        if not self.freezable:
            super().freeze(instance_id)
        with self._lock:
            self.frozen_calls.append((time.monotonic(), instance_id))
        self._change(instance_id, frozen=True)

    def thaw(self, instance_id: str) -> None:
        with self._lock:
            self.thawed_calls.append((time.monotonic(), instance_id))
        self._change(instance_id, frozen=False)

    def tier_room(self, tier: HardwareTier) -> TierRoom | None:
        if self.gpus is None or tier.gpu is None:
            return None
        with self._lock:
            self.calls += 1
            held = [
                get_tier(i.hardware)
                for i in self.running.values()
                if i.hardware and i.state != InstanceState.EXITED and not i.waiting_reason
            ]
        used = sum(t.gpu_count for t in held if t.gpu == tier.gpu)
        return gpu_room(tier, self.gpus.get(tier.gpu, 0), used)

    def forget(self, space_uid: str) -> None:
        with self._lock:
            self.forgotten.append(space_uid)
        super().forget(space_uid)

    def watch(self, callback: WatchCallback) -> None:
        self._watchers.append(callback)

    def close(self) -> None:
        if self._prober is not None:
            self._prober.close()

    # -- knobs for tests ------------------------------------------------------------

    def of_space(self, space_uid: str) -> list[Instance]:
        with self._lock:
            return [i for i in self.running.values() if i.space_id == space_uid]

    def make_ready(self, instance_id: str) -> None:
        self._change(instance_id, ready=True)

    def exit(self, instance_id: str, code: int = 1, last_lines: list[str] | None = None) -> None:
        if last_lines:
            self.log_lines.setdefault(instance_id, []).extend(last_lines)
        self._change(instance_id, state=InstanceState.EXITED, exit_code=code, address=None)

    def unplaced(self, instance_id: str, reason: str, detail: str | None = None) -> None:
        """Not placed (an unschedulable pod): it waits for hardware, with this reason."""
        self._change(instance_id, waiting_reason=reason, waiting_detail=detail, address=None)

    def place(self, instance_id: str, address: str = "http://10.9.200.1:7860") -> None:
        self._change(instance_id, waiting_reason=None, waiting_detail=None, address=address)

    def cannot_run(self, instance_id: str, problem: str) -> None:
        """It cannot run as it is (an image that cannot be pulled)."""
        self._change(instance_id, problem=problem, address=None)

    def vanish(self, instance_id: str) -> None:
        """Gone without an event (a missed one): only a resync notices."""
        with self._lock:
            self.running.pop(instance_id, None)
            self._mounts_of.pop(instance_id, None)

    def write(self, instance_id: str, nbytes: int) -> None:
        with self._lock:
            self.written[instance_id] = nbytes

    def fill_volume(self, name: str, nbytes: int) -> None:
        """The bucket volume `name` now holds `nbytes` (made if it was not there)."""
        with self._lock:
            self.kept_volumes[name] = nbytes

    # -- helpers --------------------------------------------------------------------

    def _hold(self, space: str) -> None:
        hold = self.holds.get(space)
        if hold is not None:
            hold.wait()

    def _change(self, instance_id: str, **fields: object) -> None:
        with self._lock:
            instance = self.running.get(instance_id)
            if instance is None:
                return
            self.running[instance_id] = replace(instance, **fields)  # type: ignore[arg-type]
        self._notify(instance.space_id)

    def _became_ready(self, space_uid: str) -> None:
        with self._lock:
            for instance in self.running.values():
                if (
                    instance.space_id == space_uid
                    and self._prober
                    and (self._prober.is_ready(instance.id))
                ):
                    self.running[instance.id] = replace(instance, ready=True)
        self._notify(space_uid)

    def _notify(self, space_uid: str | None) -> None:
        for callback in list(self._watchers):
            callback(space_uid)
