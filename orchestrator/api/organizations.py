"""Organisations: the Hub's read endpoints huggingface_hub calls
(`get_organization_overview`, `list_organization_members`), and Spaceport's own for managing
them (the Hub does that on its web pages): platform admins create organisations, an
organisation's admins add, change and remove members. The rows and rules are
orchestrator/core/organizations.py; who may touch Spaces is orchestrator/core/auth.py.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends
from pydantic import Field
from sqlmodel import Session

from orchestrator.api import bodies, wire
from orchestrator.api.deps import current_principal, require_principal
from orchestrator.api.errors import ERROR_RESPONSES, HubError
from orchestrator.core import organizations as orgs
from orchestrator.core.auth import Principal
from orchestrator.core.db import get_session
from orchestrator.core.models import OrgRole, User

router = APIRouter(prefix="/api/organizations", responses=ERROR_RESPONSES)

Name = Annotated[bodies.Text, Field(min_length=1, max_length=96)]


class CreateOrganization(bodies.StrictBody):
    name: Name
    admin: Name  # the user who becomes its first admin
    fullname: Annotated[bodies.Text, Field(max_length=orgs.MAX_FULLNAME)] | None = None


class MemberRole(bodies.StrictBody):
    role: Literal["read", "contributor", "write", "admin"]  # OrgRole's values


def _refused(exc: orgs.OrgError) -> HubError:
    return HubError(exc.status, str(exc))


def _org(session: Session, name: str) -> User:
    try:
        return orgs.require_org(session, name)
    except orgs.OrgError as exc:
        raise _refused(exc) from exc


def _overview(session: Session, org: User, principal: Principal | None) -> wire.OrgOverview:
    member = principal is not None and (
        principal.is_admin or principal.role_in(org.id or 0) is not None
    )
    return wire.OrgOverview(
        id=str(org.id),
        name=org.name,
        fullname=org.fullname or org.name,
        num_users=len(orgs.members(session, org)),
        num_spaces=orgs.space_count(session, org, private_too=member),
    )


def _require_org_admin(principal: Principal | None, org: User) -> Principal:
    """An admin of the organisation (or a platform admin) with a write token: a read token
    of an org admin only reads."""
    principal = require_principal(principal)
    role = principal.role_in(org.id or 0)
    if not principal.is_admin and role != OrgRole.ADMIN:
        raise HubError(403, f"Only admins of {org.name} manage its members")
    if not principal.can_write:
        raise HubError(403, "Your token is read-only: manage members with a write token")
    return principal


@router.post("", response_model=wire.OrgOverview, status_code=201)
def create_organization(
    body: dict[str, Any] = Body(...),
    session: Session = Depends(get_session),
    principal: Principal | None = Depends(current_principal),
) -> wire.OrgOverview:
    """Spaceport's own: platform admins create organisations (on the Hub anyone may, on its
    web pages; here the operator decides who owns a namespace)."""
    principal = require_principal(principal)
    if not principal.is_admin:
        raise HubError(403, "Only platform admins (an admin token) create organizations")
    request = bodies.check(CreateOrganization, body)
    try:
        admin = orgs.require_user(session, request.admin)
        org = orgs.create_org(
            session, request.name, admin, actor=principal.user.name, fullname=request.fullname
        )
    except orgs.OrgError as exc:
        raise _refused(exc) from exc
    return _overview(session, org, principal)


@router.get("/{org}/overview", response_model=wire.OrgOverview)
def organization_overview(
    org: str,
    session: Session = Depends(get_session),
    principal: Principal | None = Depends(current_principal),
) -> wire.OrgOverview:
    """huggingface_hub's get_organization_overview; public, as on the Hub (numSpaces counts
    the private Spaces for members only)."""
    return _overview(session, _org(session, org), principal)


@router.get("/{org}/members", response_model=list[wire.OrgMemberInfo])
def organization_members(
    org: str,
    session: Session = Depends(get_session),
    principal: Principal | None = Depends(current_principal),
) -> list[wire.OrgMemberInfo]:
    """huggingface_hub's list_organization_members: public as on the Hub; each member's
    role is shown to the organisation's members and to platform admins only."""
    found = _org(session, org)
    shows_roles = principal is not None and (
        principal.is_admin or principal.role_in(found.id or 0) is not None
    )
    return [
        wire.OrgMemberInfo(
            id=str(member.user.id),
            user=member.user.name,
            fullname=member.user.fullname or member.user.name,
            role=str(member.role) if shows_roles else None,
        )
        for member in orgs.members(session, found)
    ]


@router.put("/{org}/members/{user}", response_model=wire.OrgMemberInfo)
def set_organization_member(
    org: str,
    user: str,
    body: dict[str, Any] = Body(...),
    session: Session = Depends(get_session),
    principal: Principal | None = Depends(current_principal),
) -> wire.OrgMemberInfo:
    """Spaceport's own: add a member with a role, or change their role (org admins)."""
    found = _org(session, org)
    principal = _require_org_admin(principal, found)
    request = bodies.check(MemberRole, body)
    try:
        member = orgs.require_user(session, user)
        orgs.set_member(session, found, member, OrgRole(request.role), actor=principal.user.name)
    except orgs.OrgError as exc:
        raise _refused(exc) from exc
    return wire.OrgMemberInfo(
        id=str(member.id),
        user=member.name,
        fullname=member.fullname or member.name,
        role=request.role,
    )


@router.delete("/{org}/members/{user}", response_model=wire.Deleted)
def remove_organization_member(
    org: str,
    user: str,
    session: Session = Depends(get_session),
    principal: Principal | None = Depends(current_principal),
) -> wire.Deleted:
    """Spaceport's own: org admins remove a member; a member with a write token may leave.
    The last admin stays (409)."""
    found = _org(session, org)
    principal = require_principal(principal)
    leaving = principal.user.name.lower() == user.lower()
    if not (leaving and principal.can_write and principal.role_in(found.id or 0)):
        principal = _require_org_admin(principal, found)
    try:
        member = orgs.require_user(session, user)
        orgs.remove_member(session, found, member, actor=principal.user.name)
    except orgs.OrgError as exc:
        raise _refused(exc) from exc
    return wire.Deleted(deleted=f"{found.name}/{member.name}")
