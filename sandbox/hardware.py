"""The hardware catalogue: every tier a Space can run on.

This module is the one home of hardware tiers. Everything that needs to know what a flavor
name means (config validation of ``suggested_hardware``, the ``GET /api/spaces/hardware``
listing, the sandbox that sizes containers, sleep defaults) reads it from here, so a tier is
added or re-priced in exactly one place. Later issues extend it (e.g. mapping tiers to
container limits or to the GPUs of this host) rather than keeping a second list elsewhere.

The tiers themselves are data: sandbox/hardware_catalogue.yaml (or the operator's own file,
SPACEPORT_HARDWARE_CATALOGUE), read and kept current by sandbox/catalogue.py. This module
holds what a tier is (HardwareTier), how to look one up, and per-installation resizing.

Names, sizes and prices follow Hugging Face's Spaces flavors (hub-api.md §15.1) so that
``huggingface_hub`` and ``gradio_client`` calls that pass a flavor name work unchanged.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator, Mapping
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
    """A flavor name that is not in the catalogue (and the base of every refused request
    for a tier, so callers that turn it into a 400 need one except clause)."""

    def __init__(self, name: object, message: str | None = None) -> None:
        self.name = name
        super().__init__(
            message or f"unknown hardware {name!r}: choose one of {', '.join(CATALOGUE)}"
        )


class UnsupportedHardware(UnknownHardware):
    """A tier the catalogue lists but this installation does not serve (supported: false)."""

    def __init__(self, name: str) -> None:
        served = ", ".join(n for n, t in CATALOGUE.items() if t.supported)
        super().__init__(
            name,
            f"hardware {name!r} is listed but not available on this Spaceport installation "
            f"(its catalogue marks it unsupported): choose one of {served}, or ask the "
            "operator to enable it in the hardware catalogue (SPACEPORT_HARDWARE_CATALOGUE)",
        )


# Where a tier's pods may go on Kubernetes (sandbox/kubernetes/): GPU nodes carry this
# label with the part in lower case ("a10g"), and the taint GPU node pools have, which only
# GPU tiers tolerate, so CPU Spaces never take a GPU node's room.
ACCELERATOR_LABEL = "spaceport.dev/accelerator"
GPU_RESOURCE = "nvidia.com/gpu"

_TOLERATION_OPERATORS = ("Equal", "Exists")
_TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
# Kubernetes' label syntax (k8s.io/apimachinery validation): an optional DNS-subdomain
# prefix and a name of at most 63 characters; values at most 63, possibly empty.
_LABEL_NAME = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$")


@dataclass(frozen=True)
class Toleration:
    """One Kubernetes toleration (core/v1 Toleration), frozen so tiers stay hashable.
    ``key`` None with ``Exists`` tolerates every taint; ``effect`` None, every effect."""

    key: str | None = None
    operator: str = "Equal"
    value: str | None = None
    effect: str | None = None
    toleration_seconds: int | None = None

    def to_kube(self) -> dict[str, Any]:
        """The toleration as the Kubernetes API spells it (camelCase, unset fields left out)."""
        fields = {
            "key": self.key,
            "operator": self.operator,
            "value": self.value,
            "effect": self.effect,
            "tolerationSeconds": self.toleration_seconds,
        }
        return {k: v for k, v in fields.items() if v is not None}

    @classmethod
    def from_kube(cls, item: object, where: str = "toleration") -> Toleration:
        """Parse one toleration object as Kubernetes spells it; ValueError says what is
        wrong, with `where` naming it (e.g. "hardware override a10g-small.tolerations[0]")."""
        if not isinstance(item, Mapping):
            raise ValueError(f"{where} must be an object like {_TOLERATION_EXAMPLE}, not {item!r}")
        unknown = sorted(set(item) - {"key", "operator", "value", "effect", "tolerationSeconds"})
        if unknown:
            raise ValueError(
                f"{where}: {', '.join(map(repr, unknown))} is not one of key, operator, value, "
                "effect, tolerationSeconds"
            )
        key, value, effect = item.get("key"), item.get("value"), item.get("effect")
        operator = item.get("operator", "Equal")
        seconds = item.get("tolerationSeconds")
        for name, text in (("key", key), ("value", value), ("effect", effect)):
            if text is not None and not isinstance(text, str):
                raise ValueError(f"{where}.{name} must be a string, not {text!r}")
        if operator not in _TOLERATION_OPERATORS:
            raise ValueError(f"{where}.operator must be Equal or Exists, not {operator!r}")
        if key is not None and key != "" and not _label_key_ok(key):
            raise ValueError(f"{where}.key {key!r} is not a valid label key")
        if not key and operator != "Exists":
            raise ValueError(f"{where}: a toleration without a key needs operator Exists")
        if operator == "Exists" and value:
            raise ValueError(f"{where}: operator Exists takes no value")
        if value is not None and not _LABEL_VALUE.match(value):
            raise ValueError(f"{where}.value {value!r} is not a valid label value")
        if effect is not None and effect != "" and effect not in _TAINT_EFFECTS:
            raise ValueError(f"{where}.effect must be one of {', '.join(_TAINT_EFFECTS)}")
        if seconds is not None:
            if not isinstance(seconds, int) or isinstance(seconds, bool):
                raise ValueError(f"{where}.tolerationSeconds must be a whole number")
            if effect != "NoExecute":
                raise ValueError(f"{where}: tolerationSeconds needs effect NoExecute")
        return cls(key or None, operator, value or None, effect or None, seconds)


_TOLERATION_EXAMPLE = '{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}'
GPU_TOLERATION = Toleration(key=GPU_RESOURCE, operator="Exists", effect="NoSchedule")


def _label_key_ok(key: str) -> bool:
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)):
        return False
    return bool(_LABEL_NAME.match(name))


@dataclass(frozen=True)
class HardwareTier:
    """One flavor. Sizes are what a Space gets, not what the host has.

    ``gpu_memory_gib`` is the total over all ``gpu_count`` GPUs, as Hugging Face lists it.
    ``default_sleep_seconds`` is None when the tier never sleeps unless the owner sets a
    sleep time (every paid tier). ``disk_gib`` is the quota of the container's writable
    layer (Hugging Face's "ephemeral disk").

    ``node_selector`` (label, value) pairs and ``tolerations`` say which Kubernetes nodes
    the tier's pods may go to (sandbox/kubernetes/); the Docker backend ignores them, and
    clients never see them (to_hub_json).
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
    node_selector: tuple[tuple[str, str], ...] = ()
    tolerations: tuple[Toleration, ...] = ()
    # Visitors let in at once before the rest wait in the visitor queue (the owner may set
    # their own); seconds a start may take before the Space is APP_STARTING's error; and
    # whether a Space may ask for the tier at all (zero-a10g is listed but not served).
    concurrency: int = 4
    start_timeout_seconds: int = 1800
    supported: bool = True
    # The Docker Engine's device driver for this tier's GPUs; "none": assigned, not requested.
    gpu_driver: str = "nvidia"

    @property
    def is_free(self) -> bool:
        return self.unit_cost_usd_per_hour == 0

    @property
    def node_selector_dict(self) -> dict[str, str]:
        """``node_selector`` as a pod's ``nodeSelector``."""
        return dict(self.node_selector)

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


class _Catalogue(Mapping[str, HardwareTier]):
    """The tiers of the catalogue file in use (sandbox/catalogue.py), by name, in the file's
    order (the listing order of GET /api/spaces/hardware). A live view: an operator's edit
    of the file shows here within a second, in every process, without a restart."""

    def _tiers(self) -> dict[str, HardwareTier]:
        from sandbox.catalogue import LIVE  # it builds HardwareTiers, so it imports this

        return LIVE.tiers()

    def __getitem__(self, name: str) -> HardwareTier:
        return self._tiers()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._tiers())

    def __len__(self) -> int:
        return len(self._tiers())

    def __contains__(self, name: object) -> bool:
        try:
            return name in self._tiers()
        except TypeError:  # an unhashable name from decoded JSON
            return False


CATALOGUE: Mapping[str, HardwareTier] = _Catalogue()


def get_tier(name: str) -> HardwareTier:
    """The tier called ``name``; raises UnknownHardware listing the valid names."""
    try:
        return CATALOGUE[name]
    except (KeyError, TypeError):  # TypeError: an unhashable name from decoded JSON
        raise UnknownHardware(name) from None


def requestable_tier(name: str) -> HardwareTier:
    """The tier called ``name`` if a Space may ask for it: UnknownHardware if it is not
    listed, UnsupportedHardware if the catalogue lists it as not served here. For requests
    (create, duplicate, POST .../hardware); running Spaces keep using ``get_tier``."""
    tier = get_tier(name)
    if not tier.supported:
        raise UnsupportedHardware(tier.name)
    return tier


# What an operator may change per tier (SPACEPORT_HARDWARE_OVERRIDES): the container's
# limits, and where on Kubernetes its pods may go. Names, GPUs and prices stay Hugging Face's,
# so clients see the flavors they know.
SIZES = ("cpu", "memory_gib", "disk_gib")
PLACEMENT = ("node_selector", "tolerations")
RESIZABLE = SIZES + PLACEMENT

# An override's value: a size (a number), a node selector ({label: value}), or tolerations
# (a list of Kubernetes toleration objects).
Overrides = Mapping[str, Mapping[str, Any]]


def validate_overrides(overrides: Overrides) -> None:
    """Raise ValueError naming what is wrong: an unknown tier or field, a size <= 0, a node
    selector that is not labels, a toleration Kubernetes would refuse."""
    for name, fields in overrides.items():
        get_tier(name)
        if not isinstance(fields, Mapping):
            raise ValueError(f"hardware override for {name!r} must be an object, not {fields!r}")
        for field, value in fields.items():
            if field not in RESIZABLE:
                raise ValueError(
                    f"hardware override for {name!r}: {field!r} is not one of "
                    f"{', '.join(RESIZABLE)}"
                )
            _parse_override(name, field, value)


def _parse_override(name: str, field: str, value: Any) -> Any:
    """The HardwareTier field's value for override `name`.`field`; ValueError if invalid."""
    return parse_placement(f"hardware override {name}", field, value)


def parse_placement(prefix: str, field: str, value: Any) -> Any:
    """The HardwareTier field's value for `field` (a size, node_selector or tolerations) as
    an override or the catalogue file spells it; ValueError naming `prefix`.`field`."""
    where = f"{prefix}.{field}"
    if field == "node_selector":
        if not isinstance(value, Mapping):
            raise ValueError(
                f'{where} must be an object of labels, e.g. {{"{ACCELERATOR_LABEL}": "a10g"}}, '
                f"not {value!r}"
            )
        for key, text in value.items():
            if not isinstance(key, str) or not _label_key_ok(key):
                raise ValueError(f"{where}: {key!r} is not a valid label key")
            if not isinstance(text, str) or not _LABEL_VALUE.match(text):
                raise ValueError(f"{where}[{key!r}]: {text!r} is not a valid label value")
        return tuple(sorted(value.items()))
    if field == "tolerations":
        if not isinstance(value, list | tuple):
            raise ValueError(
                f"{where} must be a list of tolerations, e.g. [{_TOLERATION_EXAMPLE}], "
                f"not {value!r}"
            )
        return tuple(Toleration.from_kube(item, f"{where}[{i}]") for i, item in enumerate(value))
    if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{where} must be a number above 0, not {value!r}")
    return float(value)


def sized_tier(name: str, overrides: Overrides) -> HardwareTier:
    """The tier called ``name`` with this installation's sizes and placement: a 2-core
    machine cannot give every Space Hugging Face's 2 vCPU / 16 GiB, so operators size tiers
    to their hosts, and a cluster's GPU nodes carry its own labels and taints. An override's
    node_selector or tolerations replace the tier's whole (not merged with the defaults)."""
    tier = get_tier(name)
    fields = overrides.get(tier.name)
    if not fields:
        return tier
    return dataclasses.replace(
        tier, **{k: _parse_override(tier.name, k, v) for k, v in fields.items()}
    )


# Tier sizes for a small host (a laptop, a 2-core VM): Hugging Face's cpu-basic alone
# (16 GiB) would fill it. `spaceport up --with-samples` and the tests use these, so the
# samples fit side by side; an operator sets SPACEPORT_HARDWARE_OVERRIDES instead.
SMALL_HOST_OVERRIDES: dict[str, dict[str, float]] = {
    "cpu-basic": {"cpu": 0.5, "memory_gib": 0.5, "disk_gib": 2},
    "cpu-upgrade": {"cpu": 1, "memory_gib": 1, "disk_gib": 4},
}
# ... with CPU limits handed out 8 to a core (a limit is a ceiling; idle Spaces use none).
SMALL_HOST_CPU_ALLOCATION_RATIO = 8
