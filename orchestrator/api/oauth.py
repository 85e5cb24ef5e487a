"""Sign in with Spaceport, the provider's machine-facing half (OpenID Connect): discovery,
the token endpoint a Space's server trades its code at, userinfo and the signing keys. The
page a person allows the sign-in on is web/oauth_consent.py (/oauth/authorize); what the
flow means is orchestrator/oauth/.

The token endpoint's refusals are RFC 6749's, which authlib reads (`error` a code,
`error_description` the words), within the one error shape (wire.ErrorBody).
"""

from __future__ import annotations

import base64
import binascii
from urllib.parse import unquote

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import JSONResponse
from sqlmodel import Session

from orchestrator.api import wire
from orchestrator.api.deps import current_principal, require_principal
from orchestrator.api.errors import ERROR_RESPONSES, error_headers
from orchestrator.core.auth import Principal
from orchestrator.core.db import get_session
from orchestrator.core.settings import get_settings
from orchestrator.oauth import clients, grants, keys, spaces_door
from orchestrator.oauth.clients import OAuthRefused

router = APIRouter(responses=ERROR_RESPONSES)
SCOPES_SUPPORTED = ["openid", "profile", "read-repos", "write-repos", "manage-repos"]
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


@router.get("/.well-known/openid-configuration", response_model=wire.OpenIdConfiguration)
def discovery(request: Request) -> wire.OpenIdConfiguration:
    base = grants.issuer()
    # Read by a Space through its door (oauth/spaces_door.py): its server's endpoints are
    # the door's; the browser's (authorization) stays the public one.
    machine = (
        spaces_door.provider_url(get_settings())
        if spaces_door.came_through_door(request.scope)
        else base
    )
    return wire.OpenIdConfiguration(
        issuer=base,
        authorization_endpoint=f"{base}/oauth/authorize",
        token_endpoint=f"{machine}/oauth/token",
        userinfo_endpoint=f"{machine}/oauth/userinfo",
        jwks_uri=f"{machine}/oauth/jwks",
        response_types_supported=["code"],
        grant_types_supported=["authorization_code"],
        subject_types_supported=["public"],
        id_token_signing_alg_values_supported=[keys.ALGORITHM],
        token_endpoint_auth_methods_supported=["client_secret_basic", "client_secret_post"],
        code_challenge_methods_supported=["S256"],
        scopes_supported=SCOPES_SUPPORTED,
        claims_supported=["sub", "name", "preferred_username", "profile", "picture"],
    )


@router.get("/oauth/jwks")
def jwks() -> dict[str, object]:
    return keys.jwks()


def _oauth_error(status: int, error: str, description: str) -> JSONResponse:
    """RFC 6749 section 5.2's refusal (`error` a code, `error_description` the words), in
    the one error shape: the same body model, X-Error-Message carrying the words."""
    body = wire.ErrorBody(error=error, error_description=description)
    headers = {**NO_STORE, **error_headers(status, description)}
    if status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="Spaceport"'
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


def _client_credentials(request: Request, form_id: str, form_secret: str) -> tuple[str, str]:
    """client_secret_basic (the Authorization header, form-encoded parts) or _post."""
    header = request.headers.get("authorization", "")
    if header[:6].lower() == "basic ":
        try:
            decoded = base64.b64decode(header[6:], validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return "", ""
        client_id, _, secret = decoded.partition(":")
        return unquote(client_id), unquote(secret)
    return form_id, form_secret


@router.post("/oauth/token", response_model=wire.OAuthTokens)
def token(
    request: Request,
    grant_type: str = Form(default="", max_length=64),
    code: str = Form(default="", max_length=256),
    redirect_uri: str = Form(default="", max_length=2048),
    code_verifier: str | None = Form(default=None, max_length=256),
    client_id: str = Form(default="", max_length=64),
    client_secret: str = Form(default="", max_length=256),
    session: Session = Depends(get_session),
) -> wire.OAuthTokens | JSONResponse:
    if grant_type != "authorization_code":
        return _oauth_error(400, "unsupported_grant_type", "grant_type must be authorization_code")
    who, secret = _client_credentials(request, client_id, client_secret)
    client = clients.client_for(session, who)
    if client is None or not clients.secret_matches(client, secret):
        return _oauth_error(
            401,
            "invalid_client",
            "unknown client or wrong secret: use the Space's OAUTH_CLIENT_ID and "
            "OAUTH_CLIENT_SECRET",
        )
    try:
        grant = grants.redeem(session, client, code, redirect_uri, code_verifier)
        issued = grants.tokens_for(session, client, grant)
    except OAuthRefused as refused:
        return _oauth_error(400, refused.error, str(refused))
    answer = wire.OAuthTokens(
        access_token=issued.access_token,
        expires_in=issued.expires_in,
        scope=issued.scope,
        id_token=issued.id_token,
    )
    return JSONResponse(answer.model_dump(), headers=NO_STORE)


@router.get("/oauth/userinfo")
def userinfo(
    principal: Principal | None = Depends(current_principal),
) -> dict[str, str]:
    """The signed-in person's claims, for the access token a sign-in handed out (or any
    token of theirs)."""
    principal = require_principal(principal)
    return grants.claims(principal.user, ["openid", "profile"])
