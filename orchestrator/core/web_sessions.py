"""Signing in to the web pages: passwords and session cookies.

Passwords are hashed with argon2id (argon2-cffi's defaults, the RFC 9106 low-memory
profile), kept apart from the user row (models.UserPassword). A sign-in is a server-side
session (models.WebSession): the cookie carries a random value whose SHA-256 is stored,
so signing out ends it for good and a copied database holds no usable cookie.

The cookie's name starts with `spaceport`, is host-only, HttpOnly and SameSite=Lax; Spaces
are served on their own hosts (core/hostnames.py), which a host-only cookie never reaches,
and the gateway strips `spaceport*` cookies from anything it proxies to a Space anyway.
A session acts as its user with a write role; an admin signs in as a user, and admin
rights stay with admin tokens.
"""

from __future__ import annotations

import hmac
import secrets
from datetime import timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func
from sqlmodel import Session, col, delete, select

from orchestrator.core.auth import Principal, hash_token, seats_of
from orchestrator.core.models import TokenRole, User, UserPassword, WebSession, utcnow
from orchestrator.core.settings import get_settings

COOKIE = "spaceport-session"
SESSION_NAME = "web session"  # the Principal's token_name for a signed-in browser
MIN_PASSWORD = 8
MAX_PASSWORD = 1024  # characters: argon2 hashes any length, a bound keeps a request cheap
MAX_SESSIONS_PER_USER = 50  # older sessions are ended past this

_hasher = PasswordHasher()
# Verified against when the name is unknown, so a wrong name costs what a wrong password does.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


class PasswordRefused(ValueError):
    """A password that can't be set, with what to change."""


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise PasswordRefused(f"a password needs at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise PasswordRefused(f"a password may have at most {MAX_PASSWORD} characters")


def set_password(session: Session, user: User, password: str) -> None:
    """Set (or replace) `user`'s password; their existing sign-ins end."""
    if user.is_org:
        raise PasswordRefused(f"{user.name!r} is an organisation: it can't sign in")
    _check_password(password)
    assert user.id is not None
    row = session.get(UserPassword, user.id)
    if row is None:
        row = UserPassword(user_id=user.id, password_hash="")
    row.password_hash = _hasher.hash(password)
    row.changed_at = utcnow()
    session.add(row)
    session.exec(delete(WebSession).where(col(WebSession.user_id) == user.id))  # type: ignore[call-overload]
    session.commit()


def check_password(session: Session, name: str, password: str) -> User | None:
    """The user `name` if `password` is theirs, else None (unknown name or no password set
    alike, and in about the same time)."""
    if not name or len(password) > MAX_PASSWORD:
        return None
    user = session.exec(select(User).where(func.lower(User.name) == name.lower())).first()
    row = session.get(UserPassword, user.id) if user is not None and not user.is_org else None
    try:
        _hasher.verify(row.password_hash if row else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return None
    if row is None or user is None:
        return None
    if _hasher.check_needs_rehash(row.password_hash):  # argon2's parameters were raised
        row.password_hash = _hasher.hash(password)
        session.add(row)
        session.commit()
    return user


def start_session(session: Session, user: User) -> tuple[str, WebSession]:
    """A new sign-in for `user`: the cookie's value (only ever sent to the browser) and its row."""
    assert user.id is not None
    value = secrets.token_urlsafe(32)
    now = utcnow()
    row = WebSession(
        user_id=user.id,
        token_hash=hash_token(value),
        csrf_token=secrets.token_urlsafe(32),
        created_at=now,
        expires_at=now + timedelta(days=get_settings().session_days),
    )
    session.add(row)
    session.commit()
    session.refresh(row)
    _end_oldest(session, user.id)
    return value, row


def _end_oldest(session: Session, user_id: int) -> None:
    ids = session.exec(
        select(WebSession.id)
        .where(WebSession.user_id == user_id)
        .order_by(col(WebSession.id).desc())
        .offset(MAX_SESSIONS_PER_USER)
    ).all()
    if ids:
        session.exec(delete(WebSession).where(col(WebSession.id).in_(ids)))  # type: ignore[call-overload]
        session.commit()


def find_session(session: Session, value: str | None) -> WebSession | None:
    """The live session a cookie value belongs to; None when missing, unknown or expired."""
    if not value or len(value) > 128:
        return None
    row = session.exec(select(WebSession).where(WebSession.token_hash == hash_token(value))).first()
    if row is None:
        return None
    expires = (
        row.expires_at if row.expires_at.tzinfo else row.expires_at.replace(tzinfo=utcnow().tzinfo)
    )
    if expires <= utcnow():
        session.delete(row)
        session.commit()
        return None
    return row


def principal_for_session(session: Session, row: WebSession) -> Principal | None:
    user = session.get(User, row.user_id)
    if user is None or user.is_org:
        return None
    return Principal(
        user=user, role=TokenRole.WRITE, token_name=SESSION_NAME, seats=seats_of(session, user)
    )


def csrf_matches(row: WebSession, presented: str | None) -> bool:
    return bool(presented) and hmac.compare_digest(row.csrf_token, str(presented))


def end_session(session: Session, value: str | None) -> None:
    row = find_session(session, value)
    if row is not None:
        session.delete(row)
        session.commit()
