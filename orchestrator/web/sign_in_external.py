"""/login/sso: signing in to the pages through the external OpenID Connect provider when
SPACEPORT_OIDC_ISSUER is set (core/external_sign_in.py does the protocol). The provider
sends the browser back to /login/sso/callback, which must be the client's registered
redirect URI; a sign-in that fails there is a page in words, with a way to try again."""

from __future__ import annotations

import secrets

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from sqlmodel import Session

from orchestrator.core import external_sign_in
from orchestrator.core.db import get_session
from orchestrator.core.external_sign_in import ExternalSignInError
from orchestrator.core.settings import get_settings
from orchestrator.web.errors import error_page, not_found
from orchestrator.web.sign_in import safe_next, signed_in

router = APIRouter(include_in_schema=False)
FLOW_COOKIE = "spaceport-sso"
FLOW_SECONDS = 600  # from leaving for the provider to coming back


def _callback_url() -> str:
    return get_settings().public_url.rstrip("/") + "/login/sso/callback"


def _failed(request: Request, message: str) -> Response:
    response = error_page(
        request,
        None,
        400,
        "Signing in didn't work",
        message + " Try again from the sign-in page.",
    )
    response.delete_cookie(FLOW_COOKIE, path="/login/sso")
    return response


@router.get("/login/sso")
def start(request: Request, next: str = "/") -> Response:
    settings = get_settings()
    if not external_sign_in.configured(settings):
        return not_found(request, None)
    state = secrets.token_urlsafe(24)
    try:
        target = external_sign_in.authorization_url(settings, state, _callback_url())
    except ExternalSignInError as exc:
        return _failed(request, str(exc))
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        FLOW_COOKIE,
        external_sign_in.flow_cookie(state, safe_next(next)),
        max_age=FLOW_SECONDS,
        path="/login/sso",
        httponly=True,
        samesite="lax",  # the provider's redirect back is a top-level GET: sent
        secure=settings.public_url.startswith("https://"),
    )
    return response


@router.get("/login/sso/callback")
def callback(
    request: Request,
    code: str = "",
    state: str = "",
    error: str = "",
    error_description: str = "",
    session: Session = Depends(get_session),
) -> Response:
    settings = get_settings()
    if not external_sign_in.configured(settings):
        return not_found(request, None)
    flow = external_sign_in.read_flow_cookie(request.cookies.get(FLOW_COOKIE))
    if error:
        said = f" ({error_description[:300]})" if error_description else ""
        return _failed(request, f"The sign-in provider said {error[:100]!r}{said}.")
    if flow is None or not secrets.compare_digest(flow[0], state[:256]):
        return _failed(request, "This sign-in was not started here, or took too long.")
    try:
        claims = external_sign_in.claims_for(settings, code[:2048], flow[0], _callback_url())
        user = external_sign_in.user_for(session, settings, claims)
    except ExternalSignInError as exc:
        return _failed(request, str(exc))
    response = signed_in(session, user, flow[1])
    response.delete_cookie(FLOW_COOKIE, path="/login/sso")
    return response
