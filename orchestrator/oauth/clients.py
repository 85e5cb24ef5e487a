"""A Space as an OAuth client of Spaceport: the Space whose README says `hf_oauth: true` is
the client whose id is the Space's uid (OAUTH_CLIENT_ID), whose secret is
core/secret_store.oauth_client_secret of it, and whose front matter says what it may ask
(`hf_oauth_scopes`), how long its tokens last (`hf_oauth_expiration_minutes`) and who may
sign in (`hf_oauth_authorized_org`), as on the Hub (hub-docs spaces-oauth.md).

A client is only ever sent back to its own host: the redirect URI's host must be the
Space's (SPACE_HOST), and the browser goes to that path on the Space's own origin, so a
Space asking for `https://` while this installation serves Spaces over http still works,
and no Space can send a code anywhere else.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sqlmodel import Session, select

from orchestrator.core import secret_store
from orchestrator.core.auth import Access, Principal, space_access
from orchestrator.core.models import Space
from orchestrator.core.settings import get_settings
from orchestrator.spaces import registry

IMPLIED_SCOPES = ("openid", "profile")
DEFAULT_EXPIRATION_MINUTES = 480  # the Hub's default
MAX_EXPIRATION_MINUTES = 43_200  # and its longest (30 days)
MAX_SCOPES = 32


class OAuthRefused(Exception):
    """An OAuth request refused: `error` is RFC 6749's code, the message says what to fix."""

    def __init__(self, error: str, message: str) -> None:
        super().__init__(message)
        self.error = error


@dataclass(frozen=True)
class OAuthClient:
    space: Space
    scopes: tuple[str, ...]
    expiration_minutes: int
    authorized_orgs: tuple[str, ...]

    @property
    def client_id(self) -> str:
        return self.space.uid

    @property
    def host(self) -> str:
        return f"{registry.subdomain(self.space)}.{get_settings().spaces_domain}"


def space_scopes(card: dict[str, Any]) -> list[str]:
    """What a Space may ask: openid and profile, then its README's `hf_oauth_scopes`."""
    scopes = list(IMPLIED_SCOPES)
    extra = card.get("hf_oauth_scopes")
    for scope in extra if isinstance(extra, list) else []:
        if isinstance(scope, str) and scope not in scopes and len(scopes) < MAX_SCOPES:
            scopes.append(scope[:64])
    return scopes


def _expiration(card: dict[str, Any]) -> int:
    value = card.get("hf_oauth_expiration_minutes")
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return min(value, MAX_EXPIRATION_MINUTES)
    return DEFAULT_EXPIRATION_MINUTES


def _orgs(card: dict[str, Any]) -> tuple[str, ...]:
    value = card.get("hf_oauth_authorized_org")
    names = [value] if isinstance(value, str) else value if isinstance(value, list) else []
    return tuple(n for n in names if isinstance(n, str))[:MAX_SCOPES]


def uses_sign_in(card: dict[str, Any]) -> bool:
    return card.get("hf_oauth") is True


def client_for(session: Session, client_id: str) -> OAuthClient | None:
    """The Space whose OAuth app this is; None when there is none, or it has no sign-in."""
    if not client_id or len(client_id) > 64:
        return None
    space = session.exec(select(Space).where(Space.uid == client_id)).first()
    if space is None:
        return None
    card = registry.front_matter(space)
    if not uses_sign_in(card):
        return None
    return OAuthClient(space, tuple(space_scopes(card)), _expiration(card), _orgs(card))


def secret_matches(client: OAuthClient, secret: str) -> bool:
    expected = secret_store.oauth_client_secret(client.client_id)
    return hmac.compare_digest(expected.encode(), secret.encode())


def browser_target(client: OAuthClient, redirect_uri: str) -> str:
    """Where the browser is sent back: the redirect URI's path and query on the Space's own
    origin. Refused unless the URI names the Space's host."""
    parts = urlsplit(redirect_uri)
    if parts.scheme not in ("http", "https") or parts.netloc.lower() != client.host.lower():
        raise OAuthRefused(
            "invalid_request",
            f"redirect_uri must be on the Space's own host, {client.host} (got {redirect_uri!r})",
        )
    query = f"?{parts.query}" if parts.query else ""
    return f"{registry.app_url(client.space)}{parts.path or '/'}{query}"


def granted_scopes(client: OAuthClient, asked: str) -> list[str]:
    wanted = asked.split()
    if "openid" not in wanted:
        raise OAuthRefused("invalid_scope", "scope must include openid")
    if extra := [s for s in wanted if s not in client.scopes]:
        raise OAuthRefused(
            "invalid_scope",
            f"the Space may ask {' '.join(client.scopes)}, not {' '.join(extra)}: "
            "add them to hf_oauth_scopes in its README",
        )
    return list(dict.fromkeys(wanted))


def refusal_for(client: OAuthClient, principal: Principal) -> str | None:
    """Why this person may not sign in to this Space (None: they may)."""
    if space_access(principal, client.space) == Access.NONE:
        return "You can't see this Space, so you can't sign in to it."
    if client.authorized_orgs and not any(
        principal.role_in_named(org) is not None for org in client.authorized_orgs
    ):
        return "Only members of " + " or ".join(client.authorized_orgs) + " may sign in here."
    return None
