"""Signing in to the pages through an external OpenID Connect provider (SPACEPORT_OIDC_*):
Spaceport as its client, with the authorization code flow, PKCE and a nonce.

The flow's state lives in one short-lived cookie holding a random `state` and where to go
after, signed with a key of the installation; the nonce and the PKCE verifier are derived
from the state with that key, so nothing is stored server-side until someone has signed
in. The ID token is verified against the provider's published keys (PyJWT), for this
client, from this issuer, with this nonce.

A person is their (issuer, subject): the first sign-in makes their Spaceport user, named by
SPACEPORT_OIDC_USERNAME_CLAIM, and links it (ExternalIdentity); later ones find that user
whatever name the provider gives then. A first sign-in whose name already belongs to a
Spaceport user is refused, never merged: a provider's name claim is not proof of owning an
account made some other way.
"""

from __future__ import annotations

import base64
import hashlib
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
import jwt
from sqlmodel import Session, select

from orchestrator.core import auth, url_signing
from orchestrator.core.models import ExternalIdentity, User
from orchestrator.core.settings import Settings

KEY_FILE = "oidc-flow.key"
DISCOVERY_SECONDS = 3600.0
TIMEOUT = httpx.Timeout(10.0)
MAX_PROVIDER_ANSWER = 1_000_000  # bytes of a discovery, token or keys answer
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512")


class ExternalSignInError(Exception):
    """The sign-in could not be completed; the message says why in plain words."""


@dataclass(frozen=True)
class Provider:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    algorithms: tuple[str, ...]


_discovered: dict[str, tuple[float, Provider]] = {}
_lock = threading.Lock()


def configured(settings: Settings) -> bool:
    return bool(settings.oidc_issuer and settings.oidc_client_id)


def _get_json(url: str, what: str, **kwargs: Any) -> dict[str, Any]:
    method = "POST" if "data" in kwargs else "GET"
    try:
        answer = httpx.request(method, url, timeout=TIMEOUT, **kwargs)
    except httpx.HTTPError as exc:
        raise ExternalSignInError(f"The sign-in provider did not answer ({what}): {exc}") from exc
    if len(answer.content) > MAX_PROVIDER_ANSWER:
        raise ExternalSignInError(f"The sign-in provider's {what} answer is too large")
    try:
        body = answer.json()
    except ValueError:
        body = None
    if answer.status_code != 200 or not isinstance(body, dict):
        detail = (
            body.get("error_description") or body.get("error") if isinstance(body, dict) else ""
        )
        raise ExternalSignInError(
            f"The sign-in provider refused the {what} (HTTP {answer.status_code})"
            + (f": {str(detail)[:300]}" if detail else "")
        )
    return body


def provider(settings: Settings) -> Provider:
    """The provider's endpoints from its discovery document, kept for DISCOVERY_SECONDS."""
    issuer = settings.oidc_issuer.rstrip("/")
    with _lock:
        kept = _discovered.get(issuer)
        if kept and time.monotonic() - kept[0] < DISCOVERY_SECONDS:
            return kept[1]
    found = _get_json(f"{issuer}/.well-known/openid-configuration", "discovery")
    try:
        offered = found.get("id_token_signing_alg_values_supported") or ["RS256"]
        chosen = Provider(
            issuer=str(found["issuer"]).rstrip("/"),
            authorization_endpoint=str(found["authorization_endpoint"]),
            token_endpoint=str(found["token_endpoint"]),
            jwks_uri=str(found["jwks_uri"]),
            algorithms=tuple(a for a in offered if a in ALGORITHMS),
        )
    except KeyError as exc:
        raise ExternalSignInError(f"The provider's discovery document lacks {exc}") from exc
    if chosen.issuer != issuer:
        raise ExternalSignInError(
            f"The provider says its issuer is {chosen.issuer}, not {issuer}: fix "
            "SPACEPORT_OIDC_ISSUER"
        )
    with _lock:
        _discovered[issuer] = (time.monotonic(), chosen)
    return chosen


def _derived(state: str, use: str) -> str:
    return url_signing.signature(KEY_FILE, use, state)


def flow_cookie(state: str, next_path: str) -> str:
    signature = url_signing.signature(KEY_FILE, "cookie", state, next_path)
    encoded = base64.urlsafe_b64encode(next_path.encode()).decode()
    return f"{state}.{encoded}.{signature}"


def read_flow_cookie(value: str | None) -> tuple[str, str] | None:
    """(state, next path) of an untampered flow cookie, else None."""
    parts = (value or "").split(".")
    if len(parts) != 3 or len(value or "") > 4096:
        return None
    state, encoded, signature = parts
    try:
        next_path = base64.urlsafe_b64decode(encoded.encode()).decode()
    except (ValueError, UnicodeDecodeError):
        return None
    expected = url_signing.signature(KEY_FILE, "cookie", state, next_path)
    return (state, next_path) if url_signing.matches(expected, signature) else None


def authorization_url(settings: Settings, state: str, redirect_uri: str) -> str:
    verifier = _derived(state, "verifier")
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    query = {
        "response_type": "code",
        "client_id": settings.oidc_client_id,
        "redirect_uri": redirect_uri,
        "scope": settings.oidc_scopes,
        "state": state,
        "nonce": _derived(state, "nonce"),
        "code_challenge": challenge.decode().rstrip("="),
        "code_challenge_method": "S256",
    }
    endpoint = provider(settings).authorization_endpoint
    return f"{endpoint}{'&' if '?' in endpoint else '?'}{urlencode(query)}"


def claims_for(settings: Settings, code: str, state: str, redirect_uri: str) -> dict[str, Any]:
    """Trade the code for tokens and return the ID token's verified claims."""
    found = provider(settings)
    tokens = _get_json(
        found.token_endpoint,
        "code",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": _derived(state, "verifier"),
        },
        auth=(settings.oidc_client_id, settings.oidc_client_secret.get_secret_value()),
    )
    id_token = tokens.get("id_token")
    if not isinstance(id_token, str):
        raise ExternalSignInError("The provider's answer has no ID token: is openid a scope?")
    keys = jwt.PyJWKSet.from_dict(_get_json(found.jwks_uri, "keys"))
    try:
        kid = jwt.get_unverified_header(id_token).get("kid")
        key = next((k for k in keys.keys if kid is None or k.key_id == kid), None)
        if key is None:
            raise ExternalSignInError("The ID token is signed with a key the provider doesn't list")
        claims = jwt.decode(
            id_token,
            key.key,
            algorithms=list(found.algorithms),
            audience=settings.oidc_client_id,
            issuer=found.issuer,
        )
    except jwt.PyJWTError as exc:
        raise ExternalSignInError(f"The provider's ID token did not verify: {exc}") from exc
    if claims.get("nonce") != _derived(state, "nonce"):
        raise ExternalSignInError("The ID token's nonce is not this sign-in's: sign in again")
    if not isinstance(claims.get("sub"), str) or not claims["sub"]:
        raise ExternalSignInError("The ID token names no subject")
    return claims


def user_for(session: Session, settings: Settings, claims: dict[str, Any]) -> User:
    """The user these claims are: linked before, or made and linked now."""
    issuer = settings.oidc_issuer.rstrip("/")
    subject = str(claims["sub"])[:255]
    linked = session.exec(
        select(ExternalIdentity).where(
            ExternalIdentity.issuer == issuer, ExternalIdentity.subject == subject
        )
    ).first()
    if linked is not None:
        user = session.get(User, linked.user_id)
        if user is not None:
            return user
    name = claims.get(settings.oidc_username_claim)
    if not isinstance(name, str) or not auth.valid_name(name):
        raise ExternalSignInError(
            f"The provider's {settings.oidc_username_claim!r} claim ({name!r}) is not a "
            "name Spaceport can use (letters, digits, '.', '_' and '-'): set "
            "SPACEPORT_OIDC_USERNAME_CLAIM to another claim"
        )
    if auth.reserved_name(name):
        raise ExternalSignInError(
            f"The provider's {settings.oidc_username_claim!r} claim ({name!r}) is a name the "
            "site's own pages use: set SPACEPORT_OIDC_USERNAME_CLAIM to another claim"
        )
    if auth.find_user(session, name) is not None:
        raise ExternalSignInError(
            f"A Spaceport user named {name!r} already exists and is not linked to this "
            "sign-in: an administrator can remove or rename it; it is never merged"
        )
    user = auth.get_or_create_user(session, name)
    if isinstance(claims.get("name"), str):
        user.fullname = claims["name"][:200]
        session.add(user)
    assert user.id is not None
    session.add(ExternalIdentity(issuer=issuer, subject=subject, user_id=user.id))
    session.commit()
    return user
