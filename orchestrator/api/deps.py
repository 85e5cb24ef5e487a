"""Request dependencies shared by the API routes: who is asking, and which Space."""

from __future__ import annotations

from fastapi import Depends, Request
from sqlmodel import Session

from orchestrator.api.errors import HubError, repo_not_found
from orchestrator.api.renames import SpaceMoved
from orchestrator.core import web_sessions
from orchestrator.core.auth import Access, AuthError, Principal, authenticate, space_access
from orchestrator.core.db import get_session
from orchestrator.core.models import Space
from orchestrator.spaces import registry as spaces

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_HEADER = "x-csrf-token"


def current_principal(
    request: Request, session: Session = Depends(get_session)
) -> Principal | None:
    """Who is asking: the Authorization header's token, else the web session's cookie
    (core/web_sessions.py). A request that changes something on a cookie alone must also
    carry the session's CSRF token (the pages' scripts send it as X-CSRF-Token), so another
    site can't act for a signed-in visitor."""
    header = request.headers.get("authorization")
    if header:
        try:
            return authenticate(session, header)
        except AuthError as exc:
            raise HubError(401, str(exc)) from exc
    row = web_sessions.find_session(session, request.cookies.get(web_sessions.COOKIE))
    if row is None:
        return None  # no cookie, or a stale one: anonymous, as if signed out
    request.state.web_session = row
    if request.method not in SAFE_METHODS and not web_sessions.csrf_matches(
        row, request.headers.get(CSRF_HEADER)
    ):
        raise HubError(
            403,
            "This request came with a sign-in cookie but without its X-CSRF-Token header: "
            "send the token from the page, or authenticate with a Bearer token",
        )
    return web_sessions.principal_for_session(session, row)


def visible_space(
    session: Session,
    principal: Principal | None,
    owner: str,
    name: str,
    need: Access = Access.READ,
) -> Space:
    """The Space, or the same 404 whether it is missing or hidden from this principal."""
    space = spaces.get_space(session, owner, name)
    if space is None and (moved := spaces.moved_space(session, owner, name)) is not None:
        if space_access(principal, moved) != Access.NONE:
            raise SpaceMoved(owner, name, moved)  # a redirect to its new id (api/renames.py)
    access = space_access(principal, space) if space else Access.NONE
    if space is None or access == Access.NONE:
        raise repo_not_found(f"{owner}/{name}")
    if access.value < need.value:
        raise HubError(403, f"You don't have write access to {space.full_name}")
    return space


def origin(request: Request) -> str:
    """The origin the client used (behind a proxy too), so URLs we return parse back to the
    endpoint it configured (huggingface_hub checks)."""
    proto = request.headers.get("x-forwarded-proto") or request.url.scheme
    host = request.headers.get("x-forwarded-host") or request.headers.get("host")
    return f"{proto}://{host}" if host else str(request.base_url).rstrip("/")


def require_principal(principal: Principal | None) -> Principal:
    if principal is None:
        raise HubError(401, "Authorization header is required: pass a token as a Bearer token")
    return principal
