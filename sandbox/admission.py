"""Admission: a Space starts only when the host has room for its tier's CPU and memory.

Pure functions of a backend's Capacity, so the rule is unit-tested without Docker. Memory
is never overcommitted (an overcommitted host kills someone's Space at random); CPU may be,
by an operator's cpu_allocation_ratio, since a CPU limit is a ceiling that slows a Space down
rather than killing it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sandbox.backend import Capacity, Instance, TierRoom
from sandbox.hardware import HardwareTier


def _gib(value: float) -> str:
    return f"{max(value, 0):.3g} GiB"


def _cpus(value: float) -> str:
    return f"{max(value, 0):.3g} vCPU"


def shortfall(
    capacity: Capacity, tier: HardwareTier, replacing: Iterable[Instance] = ()
) -> str | None:
    """None when `tier` fits in what is free; otherwise why not, for the Space's page.

    `replacing` are instances the new one will replace (an older revision of the same
    Space): their share counts as free, since they are stopped before it starts.
    """
    replaced = list(replacing)
    cpus_free = capacity.cpus_free + sum(i.cpus for i in replaced)
    memory_free = capacity.memory_gib_free + sum(i.memory_gib for i in replaced)
    missing = []
    if tier.memory_gib > capacity.memory_gib + 1e-9 or tier.cpu > capacity.cpus + 1e-9:
        # Never, however many Spaces stop: say so, so the owner picks a smaller tier.
        return (
            f"waiting for hardware: {tier.name} needs {_cpus(tier.cpu)} and "
            f"{_gib(tier.memory_gib)} of memory, more than this host gives Spaces "
            f"({_cpus(capacity.cpus)}, {_gib(capacity.memory_gib)}): choose a smaller tier"
        )
    if tier.memory_gib > memory_free + 1e-9:
        missing.append(f"{_gib(tier.memory_gib)} of memory, {_gib(memory_free)} free")
    if tier.cpu > cpus_free + 1e-9:
        missing.append(f"{_cpus(tier.cpu)}, {_cpus(cpus_free)} free")
    if not missing:
        return None
    return f"waiting for hardware: {tier.name} needs " + " and ".join(missing)


@dataclass(frozen=True)
class Policy:
    """The operator's admission settings (orchestrator/core/settings.py)."""

    reserve_cpus: float = 0
    reserve_memory_gib: float = 0
    cpu_allocation_ratio: float = 1.0
    spaces_cpus: float | None = None  # this installation's own budget, if any
    spaces_memory_gib: float | None = None
    # False: only this installation's Spaces count against the host (each installation on it
    # has its own budget, and the budgets together fit).
    count_other_installations: bool = True


def available(machine: Capacity, own: Iterable[Instance], policy: Policy) -> Capacity:
    """What Spaces of this installation may still take.

    `machine` is the backend's view: the whole host, less every installation's running
    Spaces. The platform's reserve comes off the top (CPU then scaled by the allocation
    ratio); `own` (this installation's running instances) counts against its budget.
    """
    mine = list(own)
    if policy.count_other_installations:
        used_cpus = machine.cpus - machine.cpus_free
        used_memory = machine.memory_gib - machine.memory_gib_free
    else:
        used_cpus = sum(i.cpus for i in mine if not i.frozen)  # a frozen one's CPU is free
        used_memory = sum(i.memory_gib for i in mine)
    cpus = max(machine.cpus - policy.reserve_cpus, 0) * policy.cpu_allocation_ratio
    memory = max(machine.memory_gib - policy.reserve_memory_gib, 0)
    cpus_free = cpus - used_cpus
    memory_free = memory - used_memory
    if policy.spaces_cpus is not None:
        cpus = min(cpus, policy.spaces_cpus)
        cpus_free = min(cpus_free, policy.spaces_cpus - sum(i.cpus for i in mine if not i.frozen))
    if policy.spaces_memory_gib is not None:
        memory = min(memory, policy.spaces_memory_gib)
        memory_free = min(memory_free, policy.spaces_memory_gib - sum(i.memory_gib for i in mine))
    return Capacity(
        cpus=cpus,
        memory_gib=memory,
        cpus_free=cpus_free,
        memory_gib_free=memory_free,
        gpus=machine.gpus,
        gpus_free=machine.gpus_free,
    )


def gpu_room(tier: HardwareTier, gpus: int, used: int) -> TierRoom:
    """Room for a GPU tier among `gpus` GPUs of its model of which `used` are taken, with
    the reason in plain words when none is left ("all 4 A10G GPUs are in use")."""
    model = tier.gpu or "GPU"
    per = max(tier.gpu_count, 1)
    free_gpus = max(gpus - used, 0)
    free = free_gpus // per
    reason = None
    if free == 0:
        if gpus < per:
            have = f"there are {gpus}" if gpus else "there are none"
            reason = f"{tier.name} needs {per} {model} GPU{'s' if per > 1 else ''}, and {have}"
        elif free_gpus == 0:
            reason = f"all {gpus} {model} GPUs are in use"
        else:
            reason = f"{tier.name} needs {per} {model} GPUs, {free_gpus} of {gpus} are free"
    return TierRoom(free=free, total=gpus // per, reason=reason)


def host_room(capacity: Capacity, tier: HardwareTier) -> TierRoom:
    """How many instances of `tier` the host's CPU and memory (`available`'s answer) hold
    now and when empty, with `shortfall`'s reason when none fits: what bounds a GPU tier
    besides its GPUs."""

    def fitting(cpus: float, memory_gib: float) -> int:
        # Tiers ask for more than nothing of both (the catalogue and overrides check it).
        by_cpu = (cpus + 1e-9) // max(tier.cpu, 1e-9)
        by_memory = (memory_gib + 1e-9) // max(tier.memory_gib, 1e-9)
        return max(int(min(by_cpu, by_memory)), 0)

    free = fitting(capacity.cpus_free, capacity.memory_gib_free)
    total = fitting(capacity.cpus, capacity.memory_gib)
    reason = None
    if free == 0:
        reason = (shortfall(capacity, tier) or "").removeprefix("waiting for hardware: ")
    return TierRoom(free=free, total=total, reason=reason or None)


def combined(first: TierRoom, second: TierRoom) -> TierRoom:
    """Room that needs both: the smaller count, and the reason of whichever has none left."""
    free = min(first.free, second.free)
    reason = None
    if free <= 0:
        reason = first.reason if first.free <= 0 else second.reason
    return TierRoom(free=free, total=min(first.total, second.total), reason=reason)
