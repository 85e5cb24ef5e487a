"""A Space's Settings tab (/spaces/{owner}/{name}/settings), for those who write to it:
hardware, sleep time, visitor concurrency, visibility, secrets and variables, volumes,
pause and restart, rename and delete.

This module shows the tab; web/settings_forms.py takes its forms, each through the same
domain function the API calls (spaces/lifecycle.py, spaces/visitor_limit.py,
volumes/lifecycle.py), so a page allows nothing the API refuses. A refused form shows this
page again with the reason beside the form that was sent (`settings_view`'s `refusal`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlmodel import Session, col, select

from orchestrator.api.billing import credit_owner
from orchestrator.api.errors import HubError
from orchestrator.billing import accounts
from orchestrator.controller.waiting_line import waiting_by_tier
from orchestrator.core.auth import WRITING_ROLES, Access, Principal
from orchestrator.core.db import get_session
from orchestrator.core.models import Secret, Space, User, Variable, Visibility
from orchestrator.core.settings import get_settings
from orchestrator.spaces.lifecycle import EnvKind
from orchestrator.volumes import spec as volume_spec
from orchestrator.web.errors import error_page, not_found, sign_in_redirect
from orchestrator.web.render import page
from orchestrator.web.space_page import find, space_head
from orchestrator.web.viewer import page_viewer
from sandbox.hardware import CATALOGUE, HardwareTier, get_tier, sized_tier

router = APIRouter(include_in_schema=False)

# The Hub's choices of sleep time; -1 (the tier's own) is offered beside them.
SLEEP_CHOICES = (300, 900, 1800, 3600, 3 * 3600, 10 * 3600, 86_400, 172_800, 259_200, 604_800)
TIER_DEFAULT = -1
MAX_VALUE = 65_536  # characters of a secret's or variable's value sent from the page


@dataclass(frozen=True)
class Refusal:
    """Why a form was refused, shown beside it: `section` names the form."""

    section: str
    message: str
    credit_link: bool = False  # whether the owner's usage and credit page helps


@dataclass(frozen=True)
class TierChoice:
    name: str
    pretty_name: str
    specs: str  # "2 vCPU · 16 GB · 1× T4 16 GB"
    price: str  # "free" or "$0.40/hour"
    free: bool
    wait: str  # "3 Spaces waiting", "no Spaces waiting"
    unsupported: str  # why it can't be asked for here; '' when it can


def settings_url(space: Space) -> str:
    return f"/spaces/{space.owner}/{space.name}/settings"


def duration(seconds: int) -> str:
    """5 minutes, 1 hour, 2 days: the largest whole unit."""
    for unit, size in (("week", 604_800), ("day", 86_400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'' if count == 1 else 's'}"
    return f"{seconds} seconds"


def _specs(hub: dict[str, Any]) -> str:
    """A tier's sizes as GET /api/spaces/hardware words them (HardwareTier.to_hub_json)."""
    parts = [hub["cpu"], hub["ram"]]
    if gpu := hub.get("accelerator"):
        parts.append(f"{gpu['quantity']}× {gpu['model']} {gpu['vram']}")
    return " · ".join(parts)


def _price(tier: HardwareTier) -> str:
    return "free" if tier.is_free else f"{accounts.usd(accounts.price_per_hour(tier.name))}/hour"


def _waiting_words(count: int) -> str:
    if count == 0:
        return "no Spaces waiting"
    return f"{count} Space{'' if count == 1 else 's'} waiting"


def tier_choices(session: Session) -> list[TierChoice]:
    """The tiers as GET /api/spaces/hardware lists them (this installation's sizes), each
    with how many Spaces wait for it now."""
    overrides = get_settings().hardware_overrides
    waiting = waiting_by_tier(session)
    choices = []
    for name in CATALOGUE:
        tier = sized_tier(name, overrides)
        choices.append(
            TierChoice(
                name=tier.name,
                pretty_name=tier.pretty_name,
                specs=_specs(tier.to_hub_json()),
                price=_price(tier),
                free=tier.is_free,
                wait=_waiting_words(waiting.get(tier.name, 0)),
                unsupported=""
                if tier.supported
                else "not available on this installation (its hardware catalogue marks it "
                "unsupported)",
            )
        )
    return choices


@dataclass(frozen=True)
class Credit:
    """The Space owner's credit as the viewer may see it (api/billing.credit_owner's rule:
    an organisation's only to its admins); `url` their usage page, '' when not theirs."""

    balance: str = ""
    empty: bool = False
    url: str = ""


def _credit(session: Session, viewer: Principal, space: Space) -> Credit:
    owner = session.get(User, space.owner_id)
    if owner is None:
        return Credit()
    mine = viewer.is_named(owner.name)
    try:
        credit_owner(session, viewer, None if mine else owner.name)
    except HubError:
        return Credit()
    micro = accounts.balance_of(session, space.owner_id)
    url = "/settings/billing" + ("" if mine else f"?account={owner.name}")
    return Credit(balance=accounts.usd(micro), empty=micro <= 0, url=url)


@dataclass(frozen=True)
class SecretName:
    """What the tab knows of a secret: never its value, so no template can show it."""

    key: str
    description: str | None
    updated_at: datetime


def _env_rows(session: Session, space: Space, kind: EnvKind) -> list[Any]:
    return list(
        session.exec(select(kind).where(kind.space_id == space.id).order_by(col(kind.key))).all()
    )


def _secret_names(session: Session, space: Space) -> list[SecretName]:
    return [
        SecretName(row.key, row.description, row.updated_at)
        for row in _env_rows(session, space, Secret)
    ]


def _sleep_choices(space: Space) -> tuple[list[tuple[int, str]], int]:
    """(seconds, words) to choose from, and the one chosen now. -1 is the tier's own: 48
    hours for free tiers, never for paid ones (they sleep only when their owner says)."""
    default = get_tier(space.requested_hardware).default_sleep_seconds
    own = (
        f"{space.requested_hardware}'s default ({duration(default)})"
        if default is not None
        else "never (paid hardware stays up)"
    )
    choices = [(TIER_DEFAULT, own)] + [(s, duration(s)) for s in SLEEP_CHOICES]
    current = space.sleep_time_seconds
    if current is not None and current not in SLEEP_CHOICES:
        choices.append((current, duration(current)))  # set through the API: kept on offer
    return choices, current if current is not None else TIER_DEFAULT


def move_namespaces(viewer: Principal, space: Space) -> list[str]:
    """Where the viewer may move the Space (core/auth.may_move_into: their own namespace, or
    an organisation where they write); its owner now first."""
    names = [viewer.user.name] + sorted(s.org_name for s in viewer.seats if s.role in WRITING_ROLES)
    return [space.owner] + [n for n in names if n.lower() != space.owner.lower()]


def settings_view(
    request: Request,
    session: Session,
    viewer: Principal,
    space: Space,
    access: Access,
    refusal: Refusal | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    sleep_choices, sleep_now = _sleep_choices(space)
    tier = get_tier(space.requested_hardware)
    return page(
        request,
        "settings.html",
        viewer,
        status_code=status_code,
        head=space_head(session, viewer, space, access, "settings"),
        action=settings_url(space),
        refusal=refusal,
        tiers=tier_choices(session),
        credit=_credit(session, viewer, space),
        sleep_choices=sleep_choices,
        sleep_now=sleep_now,
        tier_concurrency=tier.concurrency,
        max_concurrency=get_settings().max_visitor_concurrency,
        public=space.visibility == Visibility.PUBLIC,
        max_value=MAX_VALUE,
        secrets=_secret_names(session, space),
        variables=_env_rows(session, space, Variable),
        volumes=volume_spec.stored(space),
        max_volumes=get_settings().max_volumes_per_space,
        namespaces=move_namespaces(viewer, space),
    )


def writable(
    request: Request, session: Session, viewer: Principal | None, owner: str, name: str
) -> tuple[Space, Access] | Response:
    """The Space if the viewer writes to it; else the page that says no: the one 404 when
    they can't see it, a 403 in words when they can but don't write."""
    space, access, moved_to = find(session, viewer, owner, name)
    if moved_to and request.method == "GET":
        return RedirectResponse(moved_to + "/settings", status_code=307)
    if space is None:
        if viewer is None:
            return sign_in_redirect(request.url.path)
        return not_found(request, viewer, "Space")
    if viewer is None:
        return sign_in_redirect(request.url.path)
    if access.value < Access.WRITE.value:
        return error_page(
            request,
            viewer,
            403,
            "You can't change this Space",
            f"Only those with write access to {space.full_name} see and change its settings: "
            "its owner, or members of its organisation who write to it. Ask its owner if you "
            "need to.",
        )
    return space, access


@router.get("/spaces/{owner}/{name}/settings", response_class=HTMLResponse)
def settings_tab(
    request: Request,
    owner: str,
    name: str,
    session: Session = Depends(get_session),
    viewer: Principal | None = Depends(page_viewer),
) -> Response:
    found = writable(request, session, viewer, owner, name)
    if isinstance(found, Response):
        return found
    space, access = found
    assert viewer is not None  # writable() answered anyone else
    return settings_view(request, session, viewer, space, access)
