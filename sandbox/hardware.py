"""The hardware catalogue: every tier a Space can run on.

This module is the one home of hardware tiers. Everything that needs to know what a flavor
name means (config validation of ``suggested_hardware``, the ``GET /api/spaces/hardware``
listing, the sandbox that sizes containers, sleep defaults) reads it from here, so a tier is
added or re-priced in exactly one place. Later issues extend it (e.g. mapping tiers to
container limits or to the GPUs of this host) rather than keeping a second list elsewhere.

Names, sizes and prices follow Hugging Face's Spaces flavors (hub-api.md §15.1) so that
``huggingface_hub`` and ``gradio_client`` calls that pass a flavor name work unchanged.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

DEFAULT_HARDWARE = "cpu-basic"

# Free CPU Spaces sleep after 48 h without visitors (hub-api.md §15.2, runtime gcTimeout).
FREE_SLEEP_SECONDS = 172_800

# Every accelerator in the catalogue is an Nvidia part; a tier from another vendor would
# need its own entry here before to_hub_json() could describe it.
_GPU_MANUFACTURERS: dict[str, str] = {
    "T4": "Nvidia",
    "L4": "Nvidia",
    "L40S": "Nvidia",
    "A10G": "Nvidia",
    "A100": "Nvidia",
}


class UnknownHardware(ValueError):
    """A flavor name that is not in the catalogue."""

    def __init__(self, name: object) -> None:
        self.name = name
        super().__init__(f"unknown hardware {name!r}: choose one of {', '.join(CATALOGUE)}")


@dataclass(frozen=True)
class HardwareTier:
    """One flavor. Sizes are what a Space gets, not what the host has.

    ``gpu_memory_gib`` is the total over all ``gpu_count`` GPUs, as Hugging Face lists it.
    ``default_sleep_seconds`` is None when the tier never sleeps unless the owner sets a
    sleep time (every paid tier). ``disk_gib`` is the quota of the container's writable
    layer (Hugging Face's "ephemeral disk").
    """

    name: str
    pretty_name: str
    cpu: float
    memory_gib: float
    gpu: str | None
    gpu_count: int
    gpu_memory_gib: float
    unit_cost_usd_per_hour: float
    default_sleep_seconds: int | None
    disk_gib: float = 50

    @property
    def is_free(self) -> bool:
        return self.unit_cost_usd_per_hour == 0

    def to_hub_json(self) -> dict[str, Any]:
        """One item of ``GET /api/spaces/hardware`` (hub-api.md §6, end).

        huggingface_hub reads ``cpu``, ``ram`` and the accelerator fields as display
        strings ("2 vCPU", "16 GB"), so they are formatted here, not sent as numbers.
        """
        item: dict[str, Any] = {
            "name": self.name,
            "prettyName": self.pretty_name,
            "cpu": f"{self.cpu:g} vCPU",
            "ram": f"{self.memory_gib:g} GB",
        }
        if self.gpu is not None:
            item["accelerator"] = {
                "type": "gpu",
                "model": self.gpu,
                "quantity": str(self.gpu_count),
                "vram": f"{self.gpu_memory_gib:g} GB",
                "manufacturer": _GPU_MANUFACTURERS.get(self.gpu, "Nvidia"),
            }
        item["unitCostMicroUSD"] = round(self.unit_cost_usd_per_hour * 1_000_000)
        item["unitCostUSD"] = self.unit_cost_usd_per_hour
        # Hugging Face prices Spaces per minute on the wire; we list hourly prices, and the
        # label says so, which clients honour.
        item["unitLabel"] = "hour"
        return item


def _tier(
    name: str,
    pretty_name: str,
    cpu: float,
    memory_gib: float,
    cost: float,
    gpu: str | None = None,
    gpu_count: int = 0,
    gpu_memory_gib: float = 0,
    sleep: int | None = None,
) -> HardwareTier:
    return HardwareTier(
        name=name,
        pretty_name=pretty_name,
        cpu=cpu,
        memory_gib=memory_gib,
        gpu=gpu,
        gpu_count=gpu_count,
        gpu_memory_gib=gpu_memory_gib,
        unit_cost_usd_per_hour=cost,
        default_sleep_seconds=sleep,
    )


_TIERS: tuple[HardwareTier, ...] = (
    _tier("cpu-basic", "CPU Basic", 2, 16, 0.0, sleep=FREE_SLEEP_SECONDS),
    _tier("cpu-upgrade", "CPU Upgrade", 8, 32, 0.03),
    # ZeroGPU lends a GPU per call out of a quota instead of billing by the hour, so it is
    # priced 0 and sleeps like a free Space. Hugging Face publishes no CPU/RAM for it; we give
    # it the cpu-basic container and one A10G (the part its name refers to).
    _tier("zero-a10g", "ZeroGPU", 2, 16, 0.0, "A10G", 1, 24, sleep=FREE_SLEEP_SECONDS),
    _tier("t4-small", "Nvidia T4 - small", 4, 15, 0.40, "T4", 1, 16),
    _tier("t4-medium", "Nvidia T4 - medium", 8, 30, 0.60, "T4", 1, 16),
    _tier("l4x1", "1x Nvidia L4", 8, 30, 0.80, "L4", 1, 24),
    _tier("l4x4", "4x Nvidia L4", 48, 186, 3.80, "L4", 4, 96),
    _tier("l40sx1", "1x Nvidia L40S", 8, 62, 1.80, "L40S", 1, 48),
    _tier("l40sx4", "4x Nvidia L40S", 48, 382, 8.30, "L40S", 4, 192),
    _tier("l40sx8", "8x Nvidia L40S", 192, 1534, 23.50, "L40S", 8, 384),
    _tier("a10g-small", "Nvidia A10G - small", 4, 15, 1.00, "A10G", 1, 24),
    _tier("a10g-large", "Nvidia A10G - large", 12, 46, 1.50, "A10G", 1, 24),
    _tier("a10g-largex2", "2x Nvidia A10G - large", 24, 92, 3.00, "A10G", 2, 48),
    _tier("a10g-largex4", "4x Nvidia A10G - large", 48, 184, 5.00, "A10G", 4, 96),
    _tier("a100-large", "Nvidia A100 - large", 12, 142, 2.50, "A100", 1, 80),
    _tier("a100x4", "4x Nvidia A100", 48, 568, 10.00, "A100", 4, 320),
    _tier("a100x8", "8x Nvidia A100", 96, 1136, 20.00, "A100", 8, 640),
)

# Insertion order is the listing order of GET /api/spaces/hardware: CPU first, then GPUs.
CATALOGUE: dict[str, HardwareTier] = {tier.name: tier for tier in _TIERS}


def get_tier(name: str) -> HardwareTier:
    """The tier called ``name``; raises UnknownHardware listing the valid names."""
    try:
        return CATALOGUE[name]
    except (KeyError, TypeError):  # TypeError: an unhashable name from decoded JSON
        raise UnknownHardware(name) from None


# What an operator may resize per tier (SPACEPORT_HARDWARE_OVERRIDES): the container's
# limits. Names, GPUs and prices stay Hugging Face's, so clients see the flavors they know.
RESIZABLE = ("cpu", "memory_gib", "disk_gib")


def validate_overrides(overrides: Mapping[str, Mapping[str, float]]) -> None:
    """Raise ValueError naming what is wrong: an unknown tier or field, or a size <= 0."""
    for name, sizes in overrides.items():
        get_tier(name)
        for field, value in sizes.items():
            if field not in RESIZABLE:
                raise ValueError(
                    f"hardware override for {name!r}: {field!r} is not one of "
                    f"{', '.join(RESIZABLE)}"
                )
            if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
                raise ValueError(
                    f"hardware override {name}.{field} must be a number above 0, not {value!r}"
                )


def sized_tier(name: str, overrides: Mapping[str, Mapping[str, float]]) -> HardwareTier:
    """The tier called ``name`` with this installation's sizes: a 2-core machine cannot give
    every Space Hugging Face's 2 vCPU / 16 GiB, so operators size tiers to their hosts."""
    tier = get_tier(name)
    sizes = overrides.get(tier.name)
    if not sizes:
        return tier
    return dataclasses.replace(tier, **{k: float(v) for k, v in sizes.items()})


# Tier sizes for a small host (a laptop, a 2-core VM): Hugging Face's cpu-basic alone
# (16 GiB) would fill it. `spaceport up --with-samples` and the tests use these, so the
# samples fit side by side; an operator sets SPACEPORT_HARDWARE_OVERRIDES instead.
SMALL_HOST_OVERRIDES: dict[str, dict[str, float]] = {
    "cpu-basic": {"cpu": 0.5, "memory_gib": 0.5, "disk_gib": 2},
    "cpu-upgrade": {"cpu": 1, "memory_gib": 1, "disk_gib": 4},
}
# ... with CPU limits handed out 8 to a core (a limit is a ceiling; idle Spaces use none).
SMALL_HOST_CPU_ALLOCATION_RATIO = 8
