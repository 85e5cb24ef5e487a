"""Who am I: the Hub's whoami-v2."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from orchestrator.api.deps import current_principal
from orchestrator.api.errors import HubError
from orchestrator.core.auth import Principal

router = APIRouter(prefix="/api")


@router.get("/whoami-v2")
def whoami(principal: Principal | None = Depends(current_principal)) -> dict[str, object]:
    if principal is None:
        raise HubError(401, "Authorization header is required: pass a token as a Bearer token")
    return {
        "type": "user",
        "id": str(principal.user.id),
        "name": principal.user.name,
        "fullname": principal.user.name,
        "email": None,
        "emailVerified": False,
        "canPay": False,
        "isPro": False,
        "periodEnd": None,
        "avatarUrl": "",
        "orgs": [],
        "auth": {
            "type": "access_token",
            "accessToken": {"displayName": principal.token_name, "role": principal.role},
        },
    }
