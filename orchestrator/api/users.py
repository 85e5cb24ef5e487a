"""Who am I: the Hub's whoami-v2."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from orchestrator.api import wire
from orchestrator.api.deps import current_principal
from orchestrator.api.errors import ERROR_RESPONSES, HubError
from orchestrator.core.auth import Principal

router = APIRouter(prefix="/api", responses=ERROR_RESPONSES)


@router.get("/whoami-v2", response_model=wire.Whoami)
def whoami(principal: Principal | None = Depends(current_principal)) -> wire.Whoami:
    if principal is None:
        raise HubError(401, "Authorization header is required: pass a token as a Bearer token")
    return wire.Whoami(
        type="user",
        id=str(principal.user.id),
        name=principal.user.name,
        fullname=principal.user.name,
        email=None,
        email_verified=False,
        can_pay=False,
        is_pro=False,
        period_end=None,
        avatar_url="",
        orgs=[
            wire.WhoamiOrg(
                id=str(seat.org_id),
                name=seat.org_name,
                fullname=seat.org_fullname,
                role_in_org=str(seat.role),
            )
            for seat in principal.seats
        ],
        auth=wire.WhoamiAuth(
            type="access_token",
            access_token=wire.AccessToken(display_name=principal.token_name, role=principal.role),
        ),
    )
