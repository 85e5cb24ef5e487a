"""What the gateway does with the credentials visitors present on a Space's host.

It consumes them and passes none on: a Space's code is written by a stranger, and whatever
reaches it (headers it logs, cookies it reads) could be replayed against the platform.

- `X-HF-Authorization` is always removed (the Hub's Space proxy does the same).
- `Authorization` is removed when it carries a platform credential: a Spaceport API token
  (`sp_...`, as Bearer or as a Basic password) or a Space JWT we issued. Any other value
  belongs to the app (its own Basic auth, its own tokens) and passes.
- Cookies named `spaceport*` are the platform's (the Space session cookie below) and are
  removed from the Cookie header; the app's own cookies pass.
- `?__sign=<jwt>` (how the Hub's iframe opens a private Space) is answered with a redirect
  to the same URL without it, setting a host-only cookie that holds the token.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode

from orchestrator.core.auth import (
    TOKEN_PREFIX,
    AuthError,
    authenticate,
    sees_private_of,
    token_from_headers,
)
from orchestrator.core.db import session_scope
from orchestrator.gateway.routes import Route
from orchestrator.spaces import tokens as space_tokens

SESSION_COOKIE = "spaceport-space-session"
PLATFORM_COOKIE_PREFIX = "spaceport"
SIGN_PARAM = "__sign"
CONSUMED_HEADERS = {"x-hf-authorization"}


def _token(authorization: str) -> str | None:
    try:
        return token_from_headers(authorization)
    except AuthError:
        return None


def is_platform_credential(authorization: str) -> bool:
    token = _token(authorization)
    if token is None:
        return False
    return token.startswith(TOKEN_PREFIX) or space_tokens.issued_by_us(token)


def without_platform_cookies(cookie: str) -> str:
    kept = [
        part.strip()
        for part in cookie.split(";")
        if part.strip()
        and not part.strip().split("=", 1)[0].strip().lower().startswith(PLATFORM_COOKIE_PREFIX)
    ]
    return "; ".join(kept)


def forwardable(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The visitor's headers with every platform credential taken out."""
    kept = []
    for name, value in headers:
        lower = name.lower()
        if lower in CONSUMED_HEADERS:
            continue
        if lower == "authorization" and is_platform_credential(value):
            continue
        if lower == "cookie":
            value = without_platform_cookies(value)
            if not value:
                continue
        kept.append((name, value))
    return kept


def is_platform_set_cookie(value: bytes) -> bool:
    """A Set-Cookie from the app for one of the platform's cookie names: dropped, so a
    Space cannot plant or clear the visitor's session cookie."""
    name = value.split(b"=", 1)[0].strip().lower()
    return name.startswith(PLATFORM_COOKIE_PREFIX.encode())


def cookies(headers: list[tuple[str, str]], name: str) -> list[str]:
    values = []
    for key, value in headers:
        if key.lower() != "cookie":
            continue
        for part in value.split(";"):
            cookie_name, sep, cookie_value = part.strip().partition("=")
            if sep and cookie_name.strip() == name:
                values.append(cookie_value.strip().strip('"'))
    return values


def sign_param(query: str) -> tuple[str | None, str]:
    """The `__sign` token in a query string, and the query without it."""
    if SIGN_PARAM not in query:
        return None, query
    pairs = parse_qsl(query, keep_blank_values=True)
    token = next((v for k, v in pairs if k == SIGN_PARAM), None)
    rest = urlencode([(k, v) for k, v in pairs if k != SIGN_PARAM])
    return token, rest


def may_visit(route: Route, headers: list[tuple[str, str]], sign: str | None) -> bool:
    """Public Spaces are open to all; a private one to whoever may see it (its owner, members
    of its organisation, admins: API token), or to whoever holds a valid, unexpired JWT for
    this very Space (header, cookie, __sign)."""
    if not route.private:
        return True
    candidates = cookies(headers, SESSION_COOKIE) + ([sign] if sign else [])
    api_tokens = []
    for key, value in headers:
        if key.lower() in ("authorization", "x-hf-authorization"):
            token = _token(value)
            if token is None:
                continue
            if token.startswith(TOKEN_PREFIX):
                api_tokens.append(value)
            else:
                candidates.append(token)
    if any(space_tokens.verify(token, route.uid) is not None for token in candidates):
        return True
    for authorization in api_tokens:
        try:
            with session_scope() as session:
                principal = authenticate(session, authorization)
        except AuthError:
            continue
        if sees_private_of(principal, route.owner_id):  # owner, org member, admin
            return True
    return False


@dataclass(frozen=True)
class SignRedirect:
    location: str
    set_cookie: str | None


def sign_redirect(route: Route, path: str, query: str, secure: bool, now: int) -> SignRedirect:
    """The answer to a request carrying `?__sign=` that may visit the Space (may_visit
    already refused a private Space's visitor with no valid credential): a redirect to the
    URL without it, with the session cookie when the token is valid for this Space."""
    token, rest = sign_param(query)
    assert token is not None
    expires_at = space_tokens.verify(token, route.uid)
    location = path + ("?" + rest if rest else "")
    if expires_at is None:
        # Not for this Space (or expired): no cookie, and the app still never sees it.
        return SignRedirect(location, None)
    attributes = [
        f"{SESSION_COOKIE}={token}",
        f"Max-Age={max(0, expires_at - now)}",
        "Path=/",
        "HttpOnly",
        "SameSite=Lax",
    ]
    if secure:
        attributes.append("Secure")
    # No Domain attribute: the cookie goes back to this Space's host only, never to a
    # sibling Space under the same domain.
    return SignRedirect(location, "; ".join(attributes))
