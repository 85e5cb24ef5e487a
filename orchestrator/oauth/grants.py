"""The codes and tokens of a Space's sign-in. A code is issued when a person allows the
sign-in (web/oauth_consent.py), lives CODE_SECONDS, and is traded once, by the Space's
server with its client secret (api/oauth.py), for:

- an access token: an ApiToken of the person's, expiring after the Space's
  `hf_oauth_expiration_minutes`, read-only unless the Space asks `write-repos` or
  `manage-repos` (it is what `gr.OAuthToken` hands the app, for `whoami()` and the like);
- an ID token: the person's claims (the ones `gr.OAuthProfile` reads), signed with
  keys.signing_key, for the Space's client id, with the nonce its request carried.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import update
from sqlmodel import Session, col, select

from orchestrator.core import auth
from orchestrator.core.models import OAuthCode, TokenRole, User, utcnow
from orchestrator.core.settings import get_settings
from orchestrator.oauth import keys
from orchestrator.oauth.clients import OAuthClient, OAuthRefused

CODE_SECONDS = 300
WRITING_SCOPES = frozenset({"write-repos", "manage-repos"})


def issuer() -> str:
    return get_settings().public_url.rstrip("/")


def issue_code(
    session: Session,
    client: OAuthClient,
    user: User,
    *,
    redirect_uri: str,
    scopes: list[str],
    nonce: str | None,
    code_challenge: str | None,
) -> str:
    code = secrets.token_urlsafe(32)
    assert client.space.id is not None and user.id is not None
    session.add(
        OAuthCode(
            code_hash=auth.hash_token(code),
            space_id=client.space.id,
            user_id=user.id,
            redirect_uri=redirect_uri,
            scope=" ".join(scopes),
            nonce=nonce,
            code_challenge=code_challenge,
            expires_at=utcnow() + timedelta(seconds=CODE_SECONDS),
        )
    )
    session.commit()
    return code


def _pkce_holds(challenge: str | None, verifier: str | None) -> bool:
    if challenge is None:
        return True
    if not verifier:
        return False
    digest = hashlib.sha256(verifier.encode()).digest()
    computed = base64.urlsafe_b64encode(digest).decode().rstrip("=")
    return hmac.compare_digest(computed, challenge)


def redeem(
    session: Session,
    client: OAuthClient,
    code: str,
    redirect_uri: str,
    code_verifier: str | None,
) -> OAuthCode:
    """The code's grant, marked redeemed by one conditional update: of two requests trading
    the same code, one gets it."""
    now = utcnow()
    refused = OAuthRefused("invalid_grant", "the code is unknown, used or expired: sign in again")
    row = session.exec(
        select(OAuthCode).where(OAuthCode.code_hash == auth.hash_token(code))
    ).first()
    if row is None or row.space_id != client.space.id:
        raise refused
    if row.redirect_uri != redirect_uri:
        raise OAuthRefused("invalid_grant", "redirect_uri is not the one the code was issued for")
    if not _pkce_holds(row.code_challenge, code_verifier):
        raise OAuthRefused("invalid_grant", "code_verifier does not match the code_challenge")
    taken = session.exec(  # type: ignore[call-overload]
        update(OAuthCode)
        .where(col(OAuthCode.id) == row.id)
        .where(col(OAuthCode.redeemed_at).is_(None))
        .where(col(OAuthCode.expires_at) > now)
        .values(redeemed_at=now)
    )
    session.commit()
    if taken.rowcount != 1:
        raise refused
    return row


def claims(user: User, scopes: list[str]) -> dict[str, str]:
    """What the person's profile says of them (userinfo, and the ID token's claims)."""
    found = {"sub": str(user.id)}
    if "profile" in scopes:
        found |= {
            "name": user.fullname or user.name,
            "preferred_username": user.name,
            "profile": f"{issuer()}/{user.name}",
            "picture": "",
        }
    return found


@dataclass(frozen=True)
class Tokens:
    access_token: str
    expires_in: int
    scope: str
    id_token: str


def tokens_for(session: Session, client: OAuthClient, grant: OAuthCode) -> Tokens:
    user = session.get(User, grant.user_id)
    if user is None:
        raise OAuthRefused("invalid_grant", "the user who signed in no longer exists")
    scopes = grant.scope.split()
    lifetime = client.expiration_minutes * 60
    role = TokenRole.WRITE if WRITING_SCOPES & set(scopes) else TokenRole.READ
    access = auth.create_token(
        session,
        user,
        role,
        display_name=f"Sign-in to {client.space.full_name}"[:96],
        expires_at=utcnow() + timedelta(seconds=lifetime),
    )
    now = int(utcnow().timestamp())
    id_claims: dict[str, object] = {
        **claims(user, scopes),
        "iss": issuer(),
        "aud": client.client_id,
        "iat": now,
        "exp": now + lifetime,
        "auth_time": now,
    }
    if grant.nonce:
        id_claims["nonce"] = grant.nonce
    return Tokens(access, lifetime, grant.scope, keys.sign(id_claims))
