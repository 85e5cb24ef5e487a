"""`GET /api/spaces/{owner}/{name}/jwt`: a short-lived token that opens this one Space.

As on the Hub (`{"token": ...}`, which @gradio/client reads), plus `exp` (unix time) so a
client knows when to ask again. Whoever can see the Space gets one; anyone else gets the
same 404 as for a missing Space.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends
from sqlmodel import Session

from orchestrator.api import wire
from orchestrator.api.deps import current_principal, visible_space
from orchestrator.api.errors import ERROR_RESPONSES
from orchestrator.core.auth import Principal
from orchestrator.core.db import get_session
from orchestrator.spaces import tokens as space_tokens

router = APIRouter(prefix="/api/spaces", responses=ERROR_RESPONSES)


@router.get("/{owner}/{name}/jwt", response_model=wire.SpaceJwt)
def space_jwt(
    owner: str,
    name: str,
    session: Session = Depends(get_session),
    principal: Principal | None = Depends(current_principal),
) -> wire.SpaceJwt:
    space = visible_space(session, principal, owner, name)
    issued = space_tokens.issue(space, principal.user.name if principal else None)
    return wire.SpaceJwt(token=issued.token, exp=issued.expires_at)
