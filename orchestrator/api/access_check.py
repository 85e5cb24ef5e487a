"""Whether the caller may read, or write, a Space: the Hub's auth-check (huggingface_hub
auth_check(repo_id, repo_type="space", write=...)), asked by scripts before they start work.

It answers what every other route decides (deps.visible_space): a Space the caller can't
see is the 404 of a missing one (RepositoryNotFoundError), one it may only read is a 403
for `/write`. Spaces are never gated, so GatedRepoError never comes."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from sqlmodel import Session

from orchestrator.api import wire
from orchestrator.api.deps import current_principal, visible_space
from orchestrator.api.errors import ERROR_RESPONSES
from orchestrator.core.auth import Access, Principal
from orchestrator.core.db import get_session

router = APIRouter(prefix="/api/spaces", responses=ERROR_RESPONSES)


@router.get("/{owner}/{name}/auth-check", response_model=wire.AccessCheck)
def read_check(
    owner: str,
    name: str,
    session: Session = Depends(get_session),
    principal: Principal | None = Depends(current_principal),
) -> wire.AccessCheck:
    visible_space(session, principal, owner, name)
    return wire.AccessCheck(access="read")


@router.get("/{owner}/{name}/auth-check/write", response_model=wire.AccessCheck)
def write_check(
    owner: str,
    name: str,
    session: Session = Depends(get_session),
    principal: Principal | None = Depends(current_principal),
) -> wire.AccessCheck:
    visible_space(session, principal, owner, name, need=Access.WRITE)
    return wire.AccessCheck(access="write")
