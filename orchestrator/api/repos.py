"""Creating, deleting and moving Spaces, and duplicating one (Hub: /api/repos/*,
/api/spaces/{id}/duplicate)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends, Request
from fastapi.responses import JSONResponse
from sqlmodel import Session

from orchestrator.api import bodies, wire
from orchestrator.api import volumes as volumes_api
from orchestrator.api.deps import current_principal, origin, require_principal, visible_space
from orchestrator.api.errors import ERROR_RESPONSES, HubError, error_response, repo_not_found
from orchestrator.billing import accounts
from orchestrator.builds.deploy import deploy_commit
from orchestrator.core import organizations as orgs
from orchestrator.core.auth import Access, Principal, may_create_in, may_move_into, space_access
from orchestrator.core.db import get_session
from orchestrator.core.limits import check_build_room, check_space_count
from orchestrator.core.models import Secret, Space, User, Variable, Visibility
from orchestrator.core.settings import get_settings
from orchestrator.repos import initial_commit
from orchestrator.repos import store as repos
from orchestrator.spaces import lifecycle, templates
from orchestrator.spaces import registry as spaces
from orchestrator.spaces.config import SDKS
from orchestrator.volumes import lifecycle as volume_lifecycle
from sandbox.hardware import UnknownHardware, requestable_tier

router = APIRouter(prefix="/api", responses=ERROR_RESPONSES)

MAX_KEY_LENGTH = 128  # the secret and variable tables' key column


def _repo_url(request: Request, full_name: str) -> str:
    return f"{origin(request)}/spaces/{full_name}"


def _visibility(body: dict[str, Any]) -> Visibility | None:
    """`visibility` (huggingface_hub >= 1.8) or `private` (older clients)."""
    value = body.get("visibility")
    if value is None and isinstance(body.get("private"), bool):
        value = "private" if body["private"] else "public"
    if value is None:
        return None
    if value == "protected":  # app public, code private: the closest we have is private
        value = "private"
    if value not in ("public", "private"):
        raise HubError(400, f"visibility must be public or private (got {value!r})")
    return Visibility(value)


def _sleep_time(body: dict[str, Any]) -> int | None:
    value = body.get("sleepTimeSeconds")
    if value is None:
        return None
    try:
        return int(value)  # the Hub's docs pass it as a string too
    except (TypeError, ValueError) as exc:
        raise HubError(400, f"sleepTimeSeconds must be a number (got {value!r})") from exc


def _hardware(body: dict[str, Any]) -> str | None:
    flavor = body.get("hardware")
    if not flavor:
        return None
    try:
        return requestable_tier(str(flavor)).name
    except UnknownHardware as exc:
        raise HubError(400, str(exc)) from exc


def _pairs(body: dict[str, Any], key: str) -> list[dict[str, str]]:
    items = body.get(key) or []
    if not isinstance(items, list) or not all(
        isinstance(i, dict) and isinstance(i.get("key"), str) and "value" in i for i in items
    ):
        raise HubError(400, f"{key} must be a list of {{key, value, description?}} objects")
    names = [i["key"] for i in items]
    if bad := [n for n in names if not 0 < len(n) <= MAX_KEY_LENGTH]:
        raise HubError(
            400, f"{key}: each key has 1 to {MAX_KEY_LENGTH} characters (not {bad[0]!r})"
        )
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise HubError(400, f"{key}: each key may appear once ({', '.join(twice)} twice)")
    return [{**i, "value": str(i["value"])} for i in items]


def _owner(session: Session, principal: Principal, namespace: str | None) -> User:
    """Who owns a new Space: the caller, or an organisation where they may create Spaces
    (contributor, write or admin; orchestrator/core/auth.may_create_in)."""
    name = namespace or principal.user.name
    if not may_create_in(principal, name):
        raise HubError(
            403,
            f"You can't create Spaces under {name!r}: use your own namespace "
            f"({principal.user.name}) or an organization where you are a contributor, "
            "writer or admin, and a write token",
        )
    if principal.is_named(name):
        return principal.user
    org = orgs.get_org(session, name)
    if org is None:  # may_create_in saw a seat in it: removed meanwhile
        raise HubError(403, f"You can't create Spaces under {name!r}")
    return org


@router.post("/repos/create", response_model=wire.RepoUrl)
def create_repo(
    request: Request,
    body: dict[str, Any] = Body(...),
    session: Session = Depends(get_session),
    principal: Principal | None = Depends(current_principal),
) -> wire.RepoUrl | JSONResponse:
    principal = require_principal(principal)
    bodies.check(bodies.CreateRepo, body)
    if body.get("type", "model") != "space":
        raise HubError(400, "Spaceport hosts Spaces only: create it with repo_type='space'")
    name = str(body.get("name") or "")
    owner = _owner(session, principal, body.get("organization"))
    full_name = f"{owner.name}/{name}"
    url = _repo_url(request, full_name)
    if spaces.get_space(session, owner.name, name) is not None:
        # With exist_ok=True the client reads `url` from this 409 body.
        return error_response(409, f"You already created this space repo: {full_name}", url=url)
    sdk = body.get("sdk")
    if sdk not in SDKS:
        raise HubError(400, f"sdk must be one of {', '.join(SDKS)} (got {sdk!r})")
    hardware = _hardware(body) or "cpu-basic"
    # Everything the request asks is checked before the Space exists, and what follows its
    # creation is undone if it fails: a refused create leaves no row and no repo.
    visibility = _visibility(body) or Visibility.PUBLIC
    pairs = {
        kind: _pairs(body, key) for kind, key in ((Secret, "secrets"), (Variable, "variables"))
    }
    sleep = _sleep_time(body)
    template = body.get("template")
    files = _first_files(template, name, sdk)
    check_space_count(session, owner, admin=principal.is_admin)
    accounts.require_credit(session, owner, hardware)  # a paid tier without credit: 402
    try:
        space = spaces.create_space(
            session,
            owner,
            name,
            sdk=sdk,
            visibility=visibility,
            hardware=hardware,
            actor=principal.user.name,
        )
    except spaces.SpaceNameError as exc:
        raise HubError(400, str(exc)) from exc
    with lifecycle.undone_on_failure(session, space, actor=principal.user.name):
        space.creator_id = principal.user.id  # in an org, a contributor writes to it
        lifecycle.fill_new_space(
            session,
            space,
            actor=principal.user.name,
            secrets=pairs[Secret],
            variables=pairs[Variable],
            sleep_time=sleep,
        )
        session.commit()
        if body.get("volumes"):  # checked against the new Space (its sdk), or all undone
            volumes_api.set_from_body(
                session, principal, space, body["volumes"], principal.user.name
            )
        _first_commit(session, space, files, principal, template=template is not None)
    return wire.RepoUrl(url=url, name=full_name, id=space.uid)


def _first_files(template: str | None, name: str, sdk: str) -> dict[str, bytes]:
    """The files of a new Space's first commit: the template's, else the Hub's default
    README.md and .gitattributes."""
    if template is None:
        gradio = get_settings().default_gradio_version
        return initial_commit.default_files(name, sdk, gradio_version=gradio)
    try:
        chosen = templates.find(template)
    except templates.UnknownTemplate as exc:
        raise HubError(404, str(exc)) from exc
    if chosen.sdk != sdk:
        raise HubError(400, f"sdk must be {chosen.sdk}, the sdk of the template {template}")
    return templates.files(chosen)


def _first_commit(
    session: Session,
    space: Space,
    files: dict[str, bytes],
    principal: Principal,
    *,
    template: bool,
) -> None:
    """The Hub's first commit, by the creator, deployed as a push of it would be: the
    default README leaves the Space NO_APP_FILE until an app arrives; a template builds."""
    repo = repos.repo_path(space.owner, space.name)
    sha = initial_commit.write(repo, files, repos.identity(principal.user.name))
    if template:
        check_build_room(session, space)
    deploy_commit(session, space, sha, actor=principal.user.name)


@router.delete("/repos/delete", response_model=wire.Deleted)
def delete_repo(
    body: dict[str, Any] = Body(...),
    session: Session = Depends(get_session),
    principal: Principal | None = Depends(current_principal),
) -> wire.Deleted:
    principal = require_principal(principal)
    bodies.check(bodies.DeleteRepo, body)
    namespace = body.get("organization") or principal.user.name
    space = visible_space(session, principal, namespace, str(body.get("name")), Access.WRITE)
    lifecycle.delete(session, space, actor=principal.user.name)
    return wire.Deleted(deleted=f"{namespace}/{body.get('name')}")


@router.post("/repos/move", response_model=wire.Moved)
def move_repo(
    body: dict[str, Any] = Body(...),
    session: Session = Depends(get_session),
    principal: Principal | None = Depends(current_principal),
) -> wire.Moved:
    principal = require_principal(principal)
    bodies.check(bodies.MoveRepo, body)
    source, target = str(body.get("fromRepo", "")), str(body.get("toRepo", ""))
    if source.count("/") != 1 or target.count("/") != 1:
        raise HubError(400, "fromRepo and toRepo must both look like owner/name")
    space = visible_space(session, principal, *source.split("/"), need=Access.WRITE)
    new_owner_name, new_name = target.split("/")
    new_owner = orgs.find_name(session, new_owner_name)  # a user or an organisation
    # As on the Hub: write access in both namespaces (into an organisation: write or admin).
    if new_owner is None or not may_move_into(principal, new_owner_name):
        raise HubError(403, f"You can't move Spaces into {new_owner_name!r}")
    try:
        lifecycle.move(session, space, new_owner, new_name, actor=principal.user.name)
    except lifecycle.LifecycleError as exc:
        raise HubError(409, str(exc)) from exc
    return wire.Moved(moved=target)


@router.post("/spaces/{owner}/{name}/duplicate", response_model=wire.RepoUrl)
def duplicate_space(
    owner: str,
    name: str,
    request: Request,
    body: dict[str, Any] = Body(default={}),
    session: Session = Depends(get_session),
    principal: Principal | None = Depends(current_principal),
) -> wire.RepoUrl | JSONResponse:
    principal = require_principal(principal)
    bodies.check(bodies.Duplicate, body)
    source = visible_space(session, principal, owner, name)  # private: only if you can see it
    target = str(body.get("repository") or f"{principal.user.name}/{name}")
    to_owner, _, to_name = target.rpartition("/")
    user = _owner(session, principal, to_owner or None)
    url = _repo_url(request, f"{user.name}/{to_name}")
    existing = spaces.get_space(session, user.name, to_name)
    if existing is not None:
        if space_access(principal, existing) == Access.NONE:
            raise repo_not_found(target)
        return error_response(409, f"{user.name}/{to_name} already exists", url=url)
    check_space_count(session, user, admin=principal.is_admin)
    # Volumes are checked before the copy exists (same sdk as its source): a refusal
    # writes nothing. Not given: the copy mounts nothing (the source's buckets are not
    # necessarily the duplicator's to use).
    volumes = volumes_api.checked(session, principal, source, body.get("volumes"))
    try:
        copy = lifecycle.duplicate(
            session,
            source,
            user,
            to_name,
            actor=principal.user.name,
            visibility=_visibility(body),
            hardware=_hardware(body),
            sleep_time=_sleep_time(body),
            secrets=_pairs(body, "secrets"),
            variables=_pairs(body, "variables"),
        )
    except (lifecycle.LifecycleError, spaces.SpaceNameError) as exc:
        raise HubError(400, str(exc)) from exc
    if copy.creator_id != principal.user.id:  # in an org, a contributor writes to their copy
        copy.creator_id = principal.user.id
        session.add(copy)
        session.commit()
    if volumes:
        volume_lifecycle.set_volumes(session, copy, volumes, actor=principal.user.name)
    return wire.RepoUrl(url=url, name=copy.full_name, id=copy.uid)
