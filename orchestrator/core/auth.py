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
from datetime import datetime

from sqlalchemy import func
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from orchestrator.core.models import (
    ApiToken,
    OrgMember,
    OrgRole,
    Space,
    TokenRole,
    User,
    utcnow,
)

TOKEN_PREFIX = "sp_"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?$")
INVALID_CREDENTIALS = "Invalid credentials in Authorization header"


class AuthError(Exception):
    """A request's credentials are missing or wrong (HTTP 401)."""


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# The first path segments the pages and the API take (tests/unit/test_reserved_names.py
# keeps this in step with the routes), and the Hub's own: a user or organisation of one of
# these names would have its page shadowed by the route, so none is created.
RESERVED_NAMES = frozenset(
    {
        "api", "datasets", "docs", "login", "logout", "models", "new", "new-space", "oauth",
        "openapi.json", "organizations", "redoc", "settings", "spaces", "static", "web",
    }
)  # fmt: skip


def reserved_name(name: str) -> bool:
    return name.lower() in RESERVED_NAMES


def valid_name(name: str) -> bool:
    """Names of users and Spaces: letters, digits, '.', '_' and '-', not ending in '.git'."""
    return bool(NAME_PATTERN.match(name)) and not name.endswith(".git") and ".." not in name


class UserNameTaken(ValueError):
    """A new user name that differs from an existing one only in case (HTTP 409)."""


def find_user(session: Session, name: str) -> User | None:
    """The user or organisation of that name, regardless of case."""
    return session.exec(select(User).where(func.lower(User.name) == name.lower())).first()


def get_or_create_user(session: Session, name: str) -> User:
    if not valid_name(name):
        raise ValueError(
            f"invalid user name {name!r}: use letters, digits, '.', '_' and '-' (1-96 characters)"
        )
    # Compared regardless of case, as on the Hub: "Alice" beside "alice" would read as the
    # same owner to people (and took her Space hosts before labels were stored).
    user = session.exec(select(User).where(func.lower(User.name) == name.lower())).first()
    if user is not None and user.is_org:
        raise UserNameTaken(f"{user.name!r} is an organisation: it can't sign in or hold tokens")
    if user is not None and user.name != name:
        raise UserNameTaken(
            f"user name {name!r} is taken: {user.name!r} exists, and names are compared "
            f"regardless of case; use {user.name!r} or pick another name"
        )
    if user is None:
        if reserved_name(name):
            raise ValueError(f"user name {name!r} is reserved: the site's own pages use it")
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
    session: Session,
    user: User,
    role: TokenRole = TokenRole.WRITE,
    display_name: str = "token",
    expires_at: datetime | None = None,
) -> str:
    """Store a new token for `user` and return it; this is the only time it is seen. Tokens
    people make never expire (`expires_at` None); a Space's sign-in hands out ones that do."""
    if user.is_org:
        raise ValueError(f"{user.name!r} is an organisation: tokens belong to its members")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    assert user.id is not None
    session.add(
        ApiToken(
            user_id=user.id,
            token_hash=hash_token(token),
            role=role,
            display_name=display_name,
            expires_at=expires_at,
        )
    )
    session.commit()
    return token


@dataclass(frozen=True)
class Seat:
    """One organisation a user is a member of, and their role there."""

    org_id: int
    org_name: str
    org_fullname: str
    role: OrgRole


@dataclass(frozen=True)
class Principal:
    """Who a request acts as: a user, the role of the token they presented, and the user's
    organisations (loaded with the token, so access checks need no more queries)."""

    user: User
    role: TokenRole
    token_name: str
    seats: tuple[Seat, ...] = ()

    def role_in(self, org_id: int) -> OrgRole | None:
        """The user's role in the organisation with this id (None: not a member)."""
        return next((s.role for s in self.seats if s.org_id == org_id), None)

    def is_named(self, namespace: str) -> bool:
        """Whether `namespace` is the user's own (names are compared regardless of case, as
        repo ids are: `create_repo("Alice/x")` by alice is hers)."""
        return self.user.name.lower() == namespace.lower()

    def role_in_named(self, org_name: str) -> OrgRole | None:
        lowered = org_name.lower()  # names are compared regardless of case
        return next((s.role for s in self.seats if s.org_name.lower() == lowered), None)

    @property
    def is_admin(self) -> bool:
        return self.role == TokenRole.ADMIN

    @property
    def can_write(self) -> bool:
        return self.role in (TokenRole.WRITE, TokenRole.ADMIN)


def principal_for_token(session: Session, token: str) -> Principal:
    row = session.exec(select(ApiToken).where(ApiToken.token_hash == hash_token(token))).first()
    if row is None or (row.expires_at is not None and row.expires_at <= utcnow()):
        raise AuthError(INVALID_CREDENTIALS)
    user = session.get(User, row.user_id)
    if user is None or user.is_org:
        raise AuthError(INVALID_CREDENTIALS)
    return Principal(
        user=user,
        role=TokenRole(row.role),
        token_name=row.display_name,
        seats=seats_of(session, user),
    )


def seats_of(session: Session, user: User) -> tuple[Seat, ...]:
    """The organisations `user` belongs to, by name."""
    rows = session.exec(
        select(OrgMember, User)
        .where(OrgMember.user_id == user.id, OrgMember.org_id == User.id)
        .order_by(User.name)
    ).all()
    return tuple(
        Seat(
            org_id=org.id or 0,
            org_name=org.name,
            org_fullname=org.fullname or org.name,
            role=OrgRole(member.role),
        )
        for member, org in rows
    )


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


# Organisation roles that write to every Space of the org, and those that create Spaces in
# it (a contributor writes only to the ones they created).
WRITING_ROLES = (OrgRole.WRITE, OrgRole.ADMIN)
CREATING_ROLES = (OrgRole.CONTRIBUTOR, OrgRole.WRITE, OrgRole.ADMIN)


def _role_access(principal: Principal, space: Space) -> Access:
    """What the user's standing allows, before their token's role caps it: the owner and
    platform admins write; in an organisation, the member's role decides (the Hub's
    organizations-security rules); anyone else reads public Spaces only."""
    if principal.is_admin or principal.user.id == space.owner_id:
        return Access.WRITE
    role = principal.role_in(space.owner_id)
    if role in WRITING_ROLES:
        return Access.WRITE
    if role == OrgRole.CONTRIBUTOR and space.creator_id == principal.user.id:
        return Access.WRITE
    if role is not None or not space.private:
        return Access.READ
    return Access.NONE


def space_access(principal: Principal | None, space: Space) -> Access:
    """The one rule of who may see and change a Space. WRITE means a repo writer (push,
    settings, secrets, merges); a read token never writes, whatever its user may."""
    if principal is None:
        return Access.NONE if space.private else Access.READ
    access = _role_access(principal, space)
    if access == Access.WRITE and not principal.can_write:
        return Access.READ
    return access


def only_token_blocks_write(principal: Principal | None, space: Space) -> bool:
    """Whether the user could write to the Space with a write token: the refusal then says
    to use one, instead of 'no write access'."""
    return principal is not None and _role_access(principal, space) == Access.WRITE


def sees_private_of(principal: Principal | None, owner_id: int) -> bool:
    """Whether the principal may see the private Spaces of the namespace with this id (its
    owner, a member of that organisation in any role, a platform admin): who may open a
    private Space's app with an API token (orchestrator/gateway/credentials.py)."""
    if principal is None:
        return False
    return (
        principal.is_admin
        or principal.user.id == owner_id
        or principal.role_in(owner_id) is not None
    )


def bucket_access(principal: Principal | None, owner_id: int, private: bool) -> Access:
    """Who may see and write a bucket (the data of `bucket` volumes): its owner, platform
    admins and the writers and admins of its organisation write (with a write token); other
    members read; anyone reads a public one. NONE answers 404, as for a Space."""
    if principal is None:
        return Access.NONE if private else Access.READ
    role = principal.role_in(owner_id)
    if principal.is_admin or principal.user.id == owner_id or role in WRITING_ROLES:
        return Access.WRITE if principal.can_write else Access.READ
    if role is not None or not private:
        return Access.READ
    return Access.NONE


def may_create_in(principal: Principal | None, owner: str) -> bool:
    """Spaces are created, with a write token, in one's own namespace, or in an organisation
    where one is a contributor, writer or admin."""
    if principal is None or not principal.can_write:
        return False
    return principal.is_named(owner) or principal.role_in_named(owner) in CREATING_ROLES


def may_move_into(principal: Principal | None, owner: str) -> bool:
    """Moving a Space into a namespace needs write there (the Hub: write in both): one's
    own, an organisation where one writes, or a platform admin token."""
    if principal is None or not principal.can_write:
        return False
    return (
        principal.is_admin
        or principal.is_named(owner)
        or principal.role_in_named(owner) in WRITING_ROLES
    )
