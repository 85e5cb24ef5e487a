"""What the forms that make a Space offer (the New Space form and the Duplicate dialog):
where it may go, which hardware it may ask for, and how a refusal is put to the person.

The forms make Spaces through the API's own operations (api/repos.create_repo and
duplicate_space), called with the body `huggingface_hub` would send: one code path, one set
of checks (names, counts, credit, templates), so a page can refuse nothing the API allows
and allow nothing it refuses. A refusal there is a HubError; its message is already written
for people and is shown on the form.
"""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator.core.auth import CREATING_ROLES, Principal
from orchestrator.core.models import Visibility
from sandbox.hardware import CATALOGUE, HardwareTier

NAME_MAX = 96  # the Hub's longest repo name


@dataclass(frozen=True)
class HardwareChoice:
    name: str
    label: str  # "CPU basic · 2 vCPU, 16 GB · free"
    free: bool


def owner_choices(principal: Principal) -> list[str]:
    """The viewer's own namespace first, then the organisations they may create Spaces in."""
    orgs = sorted(s.org_name for s in principal.seats if s.role in CREATING_ROLES)
    return [principal.user.name, *orgs]


def _specs(tier: HardwareTier) -> str:
    parts = [f"{tier.cpu:g} vCPU", f"{tier.memory_gib:g} GB"]
    if tier.gpu:
        count = f"{tier.gpu_count}× " if tier.gpu_count > 1 else ""
        parts.append(f"{count}{tier.gpu} {tier.gpu_memory_gib:g} GB")
    return ", ".join(parts)


def price(tier: HardwareTier) -> str:
    cost = tier.unit_cost_usd_per_hour
    return "free" if cost == 0 else f"${cost:.2f}/hour"


def hardware_choices() -> list[HardwareChoice]:
    """Every tier a Space may ask for, in the catalogue's order (unsupported ones left out:
    asking for them is refused)."""
    return [
        HardwareChoice(
            name=tier.name,
            label=f"{tier.pretty_name} · {_specs(tier)} · {price(tier)}",
            free=tier.unit_cost_usd_per_hour == 0,
        )
        for tier in CATALOGUE.values()
        if tier.supported
    ]


VISIBILITIES = (Visibility.PUBLIC.value, Visibility.PRIVATE.value)


def clean_name(value: str) -> str:
    return value.strip()[:NAME_MAX]
