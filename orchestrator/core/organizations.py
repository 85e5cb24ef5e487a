"""Organisations and their members, as on the Hub: an organisation is a name in the users'
namespace (a `User` row of kind org) that owns Spaces; its members hold one role each (read,
contributor, write, admin). Who may do what with that role is decided in one place,
orchestrator/core/auth.py (space_access, may_create_in); this module keeps the rows.

Platform admins create organisations (`spaceport org create`, POST /api/organizations); an
organisation's admins manage its members. The last admin can't leave or be demoted, so an
organisation always has someone who can manage it. Every change is an event (no Space).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import func
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from orchestrator.core import events
from orchestrator.core.auth import reserved_name, valid_name
from orchestrator.core.models import OrgMember, OrgRole, Space, User, UserKind
from orchestrator.core.settings import get_settings

MAX_FULLNAME = 200  # the user.fullname column


class OrgError(ValueError):
    """A refused change; `status` is the HTTP status the API answers with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Member:
    user: User
    role: OrgRole


def find_name(session: Session, name: str) -> User | None:
    """The user or organisation called `name`, compared regardless of case."""
    return session.exec(select(User).where(func.lower(User.name) == name.lower())).first()


def get_org(session: Session, name: str) -> User | None:
    found = find_name(session, name)
    return found if found is not None and found.is_org else None


def require_org(session: Session, name: str) -> User:
    org = get_org(session, name)
    if org is None:
        raise OrgError(f"Organization not found: {name}", 404)
    return org


def require_user(session: Session, name: str) -> User:
    user = find_name(session, name)
    if user is None or user.is_org:
        raise OrgError(f"User not found: {name}", 404)
    return user


def create_org(
    session: Session, name: str, admin: User, *, actor: str, fullname: str | None = None
) -> User:
    """A new organisation with `admin` as its first admin; committed."""
    if not valid_name(name):
        raise OrgError(
            f"invalid organization name {name!r}: use letters, digits, '.', '_' and '-' "
            "(1-96 characters, not ending in .git)"
        )
    if reserved_name(name):
        raise OrgError(f"organization name {name!r} is reserved: the site's own pages use it")
    if fullname is not None and len(fullname) > MAX_FULLNAME:
        raise OrgError(f"fullname has at most {MAX_FULLNAME} characters")
    if admin.is_org:
        raise OrgError(f"{admin.name!r} is an organization: members are users")
    if (taken := find_name(session, name)) is not None:
        raise OrgError(
            f"{name!r} is taken by the {'organization' if taken.is_org else 'user'} "
            f"{taken.name!r} (names are compared regardless of case): pick another name",
            409,
        )
    org = User(name=name, kind=UserKind.ORG, fullname=fullname or None)
    session.add(org)
    try:
        session.flush()
    except IntegrityError as exc:  # created by another request a moment ago
        session.rollback()
        raise OrgError(f"{name!r} is taken: pick another name", 409) from exc
    assert org.id is not None and admin.id is not None
    session.add(OrgMember(org_id=org.id, user_id=admin.id, role=OrgRole.ADMIN))
    events.record(session, events.EventKind.ORG_CREATED, actor, org=org.name, admin=admin.name)
    session.commit()
    session.refresh(org)
    return org


def members(session: Session, org: User) -> list[Member]:
    rows = session.exec(
        select(OrgMember, User)
        .where(OrgMember.org_id == org.id, OrgMember.user_id == User.id)
        .order_by(User.name)
    ).all()
    return [Member(user=user, role=OrgRole(member.role)) for member, user in rows]


def _seat(session: Session, org: User, user: User) -> OrgMember | None:
    return session.exec(
        select(OrgMember).where(OrgMember.org_id == org.id, OrgMember.user_id == user.id)
    ).first()


def role_of(session: Session, org: User, user: User) -> OrgRole | None:
    seat = _seat(session, org, user)
    return OrgRole(seat.role) if seat else None


@contextmanager
def _locked(session: Session, org: User) -> Iterator[None]:
    """Hold the organisation's row until the change commits: two admins demoting each other
    at once would otherwise both see two admins and leave none (PostgreSQL; SQLite has one
    writer). A refused change rolls back, which lets go of it."""
    session.exec(select(User.id).where(User.id == org.id).with_for_update()).first()
    try:
        yield
    except BaseException:
        session.rollback()
        raise


def _admins(session: Session, org: User) -> int:
    return session.exec(
        select(func.count())
        .select_from(OrgMember)
        .where(OrgMember.org_id == org.id, OrgMember.role == OrgRole.ADMIN)
    ).one()


def set_member(session: Session, org: User, user: User, role: OrgRole, *, actor: str) -> bool:
    """Add `user` with `role`, or change their role; committed. True when it changed."""
    if user.is_org:
        raise OrgError(f"{user.name!r} is an organization: members are users")
    with _locked(session, org):
        return _set_member(session, org, user, role, actor=actor)


def _set_member(session: Session, org: User, user: User, role: OrgRole, *, actor: str) -> bool:
    seat = _seat(session, org, user)
    before = OrgRole(seat.role) if seat else None
    if before == role:
        session.rollback()  # nothing to change: let go of the lock
        return False
    if before == OrgRole.ADMIN and _admins(session, org) <= 1:
        raise OrgError(
            f"{user.name} is the last admin of {org.name}: make another member admin first", 409
        )
    if seat is None:
        most = get_settings().max_org_members
        count = session.exec(
            select(func.count()).select_from(OrgMember).where(OrgMember.org_id == org.id)
        ).one()
        if count >= most:
            raise OrgError(
                f"{org.name} already has {count} members, the most allowed "
                "(SPACEPORT_MAX_ORG_MEMBERS): remove one first",
                429,
            )
        assert org.id is not None and user.id is not None
        seat = OrgMember(org_id=org.id, user_id=user.id, role=role)
    else:
        seat.role = role
    session.add(seat)
    events.record(
        session,
        events.EventKind.ORG_MEMBER_SET,
        actor,
        org=org.name,
        user=user.name,
        role=str(role),
        **{"from": str(before) if before else None},
    )
    try:
        session.commit()
    except IntegrityError as exc:  # the same member added by another request meanwhile
        session.rollback()
        raise OrgError(f"{user.name} was added to {org.name} meanwhile: try again", 409) from exc
    return True


def remove_member(session: Session, org: User, user: User, *, actor: str) -> None:
    """Remove `user` from `org`; committed. The last admin stays."""
    with _locked(session, org):
        _remove_member(session, org, user, actor=actor)


def _remove_member(session: Session, org: User, user: User, *, actor: str) -> None:
    seat = _seat(session, org, user)
    if seat is None:
        raise OrgError(f"{user.name} is not a member of {org.name}", 404)
    if seat.role == OrgRole.ADMIN and _admins(session, org) <= 1:
        raise OrgError(
            f"{user.name} is the last admin of {org.name}: make another member admin first", 409
        )
    role = seat.role
    session.delete(seat)
    events.record(
        session,
        events.EventKind.ORG_MEMBER_REMOVED,
        actor,
        org=org.name,
        user=user.name,
        role=str(role),
    )
    session.commit()


def list_orgs(session: Session) -> list[User]:
    return list(session.exec(select(User).where(User.kind == UserKind.ORG).order_by(User.name)))


def space_count(session: Session, org: User, *, private_too: bool) -> int:
    query = select(func.count()).select_from(Space).where(Space.owner_id == org.id)
    if not private_too:
        query = query.where(Space.visibility == "public")
    return session.exec(query).one()
