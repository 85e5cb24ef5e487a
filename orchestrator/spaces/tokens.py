"""Short-lived tokens scoped to one Space, as the Hub's `GET /api/spaces/{id}/jwt` gives.

A visitor of a private Space hands the gateway one of these (as `?__sign=`, which the
gateway turns into a cookie for that Space's host only, or as a Bearer token) instead of
their API token: it opens that one Space for a short while and nothing else, so even an
app that logs every header it sees learns nothing it could use elsewhere.

HS256 with a key of the installation, made at first use and kept in its home (mode 0600).
"""

from __future__ import annotations

import os
import secrets
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import jwt

from orchestrator.core.models import Space
from orchestrator.core.settings import get_settings

ALGORITHM = "HS256"
ISSUER = "spaceport"
KEY_FILE = "space-jwt.key"


@lru_cache
def _key(path: Path) -> bytes:
    """Created with O_EXCL and mode 0600 from the start, so it is never readable by others
    and processes starting together all end up with the one that won."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "wb") as file:
                file.write(secrets.token_bytes(32))
    key = path.read_bytes()
    if len(key) < 32:  # a racing reader saw the file before its writer finished
        time.sleep(0.05)
        key = path.read_bytes()
    return key


def signing_key() -> bytes:
    return _key(get_settings().home / KEY_FILE)


@dataclass(frozen=True)
class IssuedToken:
    token: str
    expires_at: int


def issue(space: Space, user_name: str | None) -> IssuedToken:
    now = int(time.time())
    expires_at = now + get_settings().space_jwt_seconds
    claims = {
        "iss": ISSUER,
        "sub": f"/spaces/{space.full_name}",
        "sid": space.uid,  # the Space's id, never reused, kept through renames
        "iat": now,
        "exp": expires_at,
        "onBehalfOf": user_name,
    }
    return IssuedToken(jwt.encode(claims, signing_key(), algorithm=ALGORITHM), expires_at)


def verify(token: str, space_uid: str) -> int | None:
    """The expiry (unix time) of a valid, unexpired token for this Space; None otherwise."""
    try:
        claims = jwt.decode(
            token,
            signing_key(),
            algorithms=[ALGORITHM],
            issuer=ISSUER,
            options={"require": ["exp", "sid", "iss"]},
        )
    except jwt.PyJWTError:
        return None
    if claims.get("sid") != space_uid:
        return None
    return int(claims["exp"])


def issued_by_us(token: str) -> bool:
    """Whether a token is one of ours (for any Space, expired or not): a credential of the
    platform, never to be handed to a Space's code."""
    try:
        jwt.decode(
            token,
            signing_key(),
            algorithms=[ALGORITHM],
            options={"verify_exp": False, "verify_iss": False},
        )
    except jwt.PyJWTError:
        return False
    return True
