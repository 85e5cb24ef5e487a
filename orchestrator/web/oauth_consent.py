"""/oauth/authorize: where a Space's "Sign in" button sends a person (OpenID Connect's
authorization endpoint). Signed in to Spaceport, they see which Space asks, as whom it
would know them and what it may do, and allow or deny; allowing sends the browser back to
the Space with a code (orchestrator/oauth/grants.py), which the Space's server trades at
/oauth/token (api/oauth.py).

A request whose client or redirect URI is wrong is answered here, in words, and never sent
anywhere: only a checked redirect URI (clients.browser_target) is ever redirected to.
"""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response
from sqlmodel import Session

from orchestrator.core.auth import Principal
from orchestrator.core.db import get_session
from orchestrator.oauth import clients, grants
from orchestrator.oauth.clients import OAuthClient, OAuthRefused
from orchestrator.web import listing
from orchestrator.web.errors import error_page, sign_in_redirect
from orchestrator.web.render import page
from orchestrator.web.viewer import form_sender, page_viewer

router = APIRouter(include_in_schema=False)
PATH = "/oauth/authorize"
SCOPE_WORDS = {
    "openid": "know that it is you",
    "profile": "see your user name and full name",
    "read-repos": "read your Spaces, private ones included",
    "write-repos": "push to your Spaces",
    "manage-repos": "create, change and delete your Spaces",
}


def _back(target: str, **params: str | None) -> RedirectResponse:
    query = urlencode({k: v for k, v in params.items() if v is not None})
    joiner = "&" if "?" in target else "?"
    return RedirectResponse(f"{target}{joiner}{query}", status_code=303)


def _checked(
    request: Request,
    session: Session,
    viewer: Principal | None,
    client_id: str,
    redirect_uri: str,
) -> tuple[OAuthClient, str] | Response:
    """The client and where its browser goes back to, or the page saying what is wrong."""
    client = clients.client_for(session, client_id)
    if client is None:
        return error_page(
            request,
            viewer,
            400,
            "This sign-in link is broken",
            "No Space of this installation signs people in with this client id: the Space "
            "needs `hf_oauth: true` in its README.",
        )
    try:
        return client, clients.browser_target(client, redirect_uri)
    except OAuthRefused as refused:
        return error_page(request, viewer, 400, "This sign-in link is broken", str(refused))


def _duration(minutes: int) -> str:
    if minutes % (24 * 60) == 0:
        days = minutes // (24 * 60)
        return f"{days} day" + ("s" if days > 1 else "")
    if minutes % 60 == 0:
        return f"{minutes // 60} hour" + ("s" if minutes > 60 else "")
    return f"{minutes} minute" + ("s" if minutes > 1 else "")


@router.get(PATH)
def authorize(
    request: Request,
    client_id: str = "",
    redirect_uri: str = "",
    response_type: str = "",
    scope: str = "",
    state: str | None = None,
    nonce: str | None = None,
    code_challenge: str | None = None,
    code_challenge_method: str | None = None,
    session: Session = Depends(get_session),
    viewer: Principal | None = Depends(page_viewer),
) -> Response:
    checked = _checked(request, session, viewer, client_id[:64], redirect_uri[:2048])
    if isinstance(checked, Response):
        return checked
    client, target = checked
    if response_type != "code":
        return _back(target, error="unsupported_response_type", state=state)
    if code_challenge is not None and code_challenge_method != "S256":
        return _back(target, error="invalid_request", state=state)
    try:
        scopes = clients.granted_scopes(client, scope[:1024])
    except OAuthRefused as refused:
        return _back(target, error=refused.error, error_description=str(refused), state=state)
    if viewer is None:
        return sign_in_redirect(f"{PATH}?{request.url.query}")
    if reason := clients.refusal_for(client, viewer):
        return error_page(request, viewer, 403, "You can't sign in here", reason)
    return page(
        request,
        "oauth_consent.html",
        viewer,
        client=client,
        card=listing.card(client.space, 0),
        asks=[SCOPE_WORDS.get(s, s) for s in scopes],
        lasts=_duration(client.expiration_minutes),
        fields={
            "client_id": client_id,
            "redirect_uri": redirect_uri,
            "scope": " ".join(scopes),
            "state": state or "",
            "nonce": nonce or "",
            "code_challenge": code_challenge or "",
        },
    )


@router.post(PATH)
def decide(
    request: Request,
    client_id: str = Form(default="", max_length=64),
    redirect_uri: str = Form(default="", max_length=2048),
    scope: str = Form(default="", max_length=1024),
    state: str = Form(default="", max_length=2048),
    nonce: str = Form(default="", max_length=256),
    code_challenge: str = Form(default="", max_length=128),
    decision: str = Form(default="deny", max_length=8),
    session: Session = Depends(get_session),
    sender: Principal = Depends(form_sender),
) -> Response:
    checked = _checked(request, session, sender, client_id, redirect_uri)
    if isinstance(checked, Response):
        return checked
    client, target = checked
    if decision != "allow":
        return _back(target, error="access_denied", state=state or None)
    if reason := clients.refusal_for(client, sender):
        return error_page(request, sender, 403, "You can't sign in here", reason)
    try:
        scopes = clients.granted_scopes(client, scope)
    except OAuthRefused as refused:
        return _back(target, error=refused.error, state=state or None)
    code = grants.issue_code(
        session,
        client,
        sender.user,
        redirect_uri=redirect_uri,
        scopes=scopes,
        nonce=nonce or None,
        code_challenge=code_challenge or None,
    )
    return _back(target, code=code, state=state or None)
