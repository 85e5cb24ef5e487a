"""Users, API tokens and who may do what to a Space.

Tokens are random and long, so a plain SHA-256 is enough to store them: there is nothing to
brute-force, and a lookup by hash stays one indexed query.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import re
import secrets
from dataclasses import dataclass

from sqlalchemy import func
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from orchestrator.core.models import ApiToken, Space, TokenRole, User

TOKEN_PREFIX = "sp_"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?$")
INVALID_CREDENTIALS = "Invalid credentials in Authorization header"


class AuthError(Exception):
    """A request's credentials are missing or wrong (HTTP 401)."""


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def valid_name(name: str) -> bool:
    """Names of users and Spaces: letters, digits, '.', '_' and '-', not ending in '.git'."""
    return bool(NAME_PATTERN.match(name)) and not name.endswith(".git") and ".." not in name


class UserNameTaken(ValueError):
    """A new user name that differs from an existing one only in case (HTTP 409)."""


def get_or_create_user(session: Session, name: str) -> User:
    if not valid_name(name):
        raise ValueError(
            f"invalid user name {name!r}: use letters, digits, '.', '_' and '-' (1-96 characters)"
        )
    # Compared regardless of case, as on the Hub: "Alice" beside "alice" would read as the
    # same owner to people (and took her Space hosts before labels were stored).
    user = session.exec(select(User).where(func.lower(User.name) == name.lower())).first()
    if user is not None and user.name != name:
        raise UserNameTaken(
            f"user name {name!r} is taken: {user.name!r} exists, and names are compared "
            f"regardless of case; use {user.name!r} or pick another name"
        )
    if user is None:
        user = User(name=name)
        session.add(user)
        try:
            session.commit()
        except IntegrityError:  # created by another request a moment ago
            session.rollback()
            return get_or_create_user(session, name)
        session.refresh(user)
    return user


def create_token(
    session: Session, user: User, role: TokenRole = TokenRole.WRITE, display_name: str = "token"
) -> str:
    """Store a new token for `user` and return it; this is the only time it is seen."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    assert user.id is not None
    session.add(
        ApiToken(
            user_id=user.id, token_hash=hash_token(token), role=role, display_name=display_name
        )
    )
    session.commit()
    return token


@dataclass(frozen=True)
class Principal:
    """Who a request acts as: a user and the role of the token they presented."""

    user: User
    role: TokenRole
    token_name: str

    @property
    def is_admin(self) -> bool:
        return self.role == TokenRole.ADMIN

    @property
    def can_write(self) -> bool:
        return self.role in (TokenRole.WRITE, TokenRole.ADMIN)


def principal_for_token(session: Session, token: str) -> Principal:
    row = session.exec(select(ApiToken).where(ApiToken.token_hash == hash_token(token))).first()
    if row is None:
        raise AuthError(INVALID_CREDENTIALS)
    user = session.get(User, row.user_id)
    if user is None:
        raise AuthError(INVALID_CREDENTIALS)
    return Principal(user=user, role=TokenRole(row.role), token_name=row.display_name)


def token_from_headers(authorization: str | None) -> str | None:
    """The token in a `Bearer` or HTTP Basic (any username, token as password) header."""
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    scheme = scheme.lower()
    value = value.strip()
    if scheme == "bearer" and value:
        return value
    if scheme == "basic" and value:
        try:
            decoded = base64.b64decode(value, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise AuthError(INVALID_CREDENTIALS) from exc
        _, _, password = decoded.partition(":")
        if not password:
            raise AuthError(INVALID_CREDENTIALS)
        return password
    raise AuthError(INVALID_CREDENTIALS)


def authenticate(session: Session, authorization: str | None) -> Principal | None:
    """None for an anonymous request; AuthError for a bad one."""
    token = token_from_headers(authorization)
    if token is None:
        return None
    return principal_for_token(session, token)


class Access(enum.Enum):
    """What a principal may do with one Space (or with a name where none exists yet)."""

    NONE = 0  # can't see it: answer 404, as if it did not exist
    READ = 1  # can see and clone it
    WRITE = 2  # can push to it and change its settings


def space_access(principal: Principal | None, space: Space) -> Access:
    is_owner = principal is not None and principal.user.id == space.owner_id
    sees = not space.private or is_owner or (principal is not None and principal.is_admin)
    if not sees:
        return Access.NONE
    if principal is not None and principal.can_write and (is_owner or principal.is_admin):
        return Access.WRITE
    return Access.READ


def may_create_in(principal: Principal | None, owner: str) -> bool:
    """Spaces are created in one's own namespace only, with a write token."""
    return principal is not None and principal.can_write and principal.user.name == owner
