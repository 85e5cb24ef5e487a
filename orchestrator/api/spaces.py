"""Space info, runtime, builds and build logs."""

from __future__ import annotations

import json

from fastapi import APIRouter, Body, Depends, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from sqlmodel import Session, col, select

from orchestrator.api import bodies
from orchestrator.api.deps import current_principal, visible_space
from orchestrator.api.errors import HubError
from orchestrator.api.timefmt import hub_time
from orchestrator.builds.runner import now
from orchestrator.core.auth import Access, Principal, space_access
from orchestrator.core.db import get_session
from orchestrator.core.models import Build, BuildLogLine, Space, Visibility
from orchestrator.core.settings import get_settings
from orchestrator.spaces import registry as spaces
from sandbox.hardware import get_tier

router = APIRouter(prefix="/api/spaces")
PAGE_SIZE = 100


def runtime_json(space: Space) -> dict[str, object]:
    # `hardware` must be an object, never null: huggingface_hub dereferences it.
    return {
        "stage": space.stage,
        "hardware": {"current": space.current_hardware, "requested": space.requested_hardware},
        "errorMessage": space.error_message,
        "sha": space.serving_sha,
        "gcTimeout": space.sleep_time_seconds
        if space.sleep_time_seconds is not None
        else get_tier(space.requested_hardware).default_sleep_seconds,
        "replicas": {"current": 1 if space.current_hardware else 0, "requested": 1},
        "devMode": False,
        "domains": [
            {
                "domain": f"{spaces.subdomain(space)}.{get_settings().spaces_domain}",
                "stage": "READY",
            }
        ],
    }


def space_json(space: Space) -> dict[str, object]:
    return {
        "_id": space.uid,  # the Hub's 24-hex id, never reused (`id` is owner/name there)
        "id": space.full_name,
        "author": space.owner,
        "sha": space.head_sha,
        "createdAt": hub_time(space.created_at),
        "lastModified": hub_time(space.updated_at),
        "private": space.private,
        "gated": False,
        "disabled": False,
        "host": spaces.app_url(space),
        "subdomain": spaces.subdomain(space),
        "sdk": space.sdk,
        "likes": 0,
        "tags": [t for t in [space.sdk] if t],
        "cardData": json.loads(space.card_data) if space.card_data else {},
        "duplicatedFrom": space.duplicated_from,
        "runtime": runtime_json(space),
    }


def build_json(build: Build) -> dict[str, object]:
    return {
        "id": build.id,
        "commit": build.commit_sha,
        "status": build.status,
        "image": build.image,
        "reusedImage": build.reused_image,
        "errorMessage": build.error_message,
        "createdAt": hub_time(build.created_at),
        "startedAt": hub_time(build.started_at),
        "finishedAt": hub_time(build.finished_at),
    }


@router.get("")
def list_spaces(
    request: Request,
    author: str | None = None,
    search: str | None = None,
    sort: str | None = None,
    direction: int = -1,
    limit: int | None = Query(default=None, ge=1),
    cursor: int = Query(default=0, ge=0),
    session: Session = Depends(get_session),
    principal: Principal | None = Depends(current_principal),
) -> Response:
    """huggingface_hub's list_spaces: filters, sort, and GitHub-style `Link` pagination."""
    query = select(Space)
    if author:
        query = query.where(Space.owner == author)
    if search:
        query = query.where(col(Space.name).contains(search) | col(Space.owner).contains(search))
    order = {"createdAt": Space.created_at, "lastModified": Space.updated_at}.get(
        sort or "", Space.id
    )
    query = query.order_by(col(order).desc() if direction == -1 else col(order).asc())
    visible = [s for s in session.exec(query).all() if space_access(principal, s) != Access.NONE]
    page_size = min(limit or PAGE_SIZE, PAGE_SIZE)
    page = visible[cursor : cursor + page_size]
    headers = {}
    if cursor + page_size < len(visible) and not limit:
        next_url = request.url.include_query_params(cursor=cursor + page_size)
        headers["Link"] = f'<{next_url}>; rel="next"'
    return JSONResponse([space_json(s) for s in page], headers=headers)


@router.get("/{owner}/{name}")
def space_info(
    owner: str,
    name: str,
    session: Session = Depends(get_session),
    principal: Principal | None = Depends(current_principal),
) -> dict[str, object]:
    return space_json(visible_space(session, principal, owner, name))


@router.put("/{owner}/{name}/settings")
def update_settings(
    owner: str,
    name: str,
    body: dict[str, object] = Body(...),
    session: Session = Depends(get_session),
    principal: Principal | None = Depends(current_principal),
) -> dict[str, object]:
    """huggingface_hub's update_repo_settings: `visibility` (>=1.8) or `private` (older)."""
    bodies.check(bodies.RepoSettings, body)
    space = visible_space(session, principal, owner, name, need=Access.WRITE)
    visibility = body.get("visibility")
    if visibility is None and isinstance(body.get("private"), bool):
        visibility = "private" if body["private"] else "public"
    if visibility == "protected":  # app public, code private: the closest we have
        visibility = "private"
    if visibility is not None:
        if visibility not in (Visibility.PUBLIC, Visibility.PRIVATE):
            raise HubError(400, f"visibility must be 'public' or 'private' (got {visibility!r})")
        space.visibility = Visibility(str(visibility))
        space.updated_at = now()
        session.add(space)
        session.commit()
    return space_json(space)


@router.get("/{owner}/{name}/runtime")
def space_runtime(
    owner: str,
    name: str,
    session: Session = Depends(get_session),
    principal: Principal | None = Depends(current_principal),
) -> dict[str, object]:
    return runtime_json(visible_space(session, principal, owner, name))


@router.get("/{owner}/{name}/builds")
def list_builds(
    owner: str,
    name: str,
    session: Session = Depends(get_session),
    principal: Principal | None = Depends(current_principal),
) -> list[dict[str, object]]:
    space = visible_space(session, principal, owner, name)
    builds = session.exec(
        select(Build).where(Build.space_id == space.id).order_by(col(Build.id).desc())
    ).all()
    return [build_json(b) for b in builds]


@router.get("/{owner}/{name}/builds/{build_id}")
def get_build(
    owner: str,
    name: str,
    build_id: int = Path(ge=0, le=bodies.MAX_INT),
    session: Session = Depends(get_session),
    principal: Principal | None = Depends(current_principal),
) -> dict[str, object]:
    space = visible_space(session, principal, owner, name)
    build = session.get(Build, build_id)
    if build is None or build.space_id != space.id:
        raise HubError(404, f"No build {build_id} for {space.full_name}", "EntryNotFound")
    lines = session.exec(
        select(BuildLogLine.line)
        .where(BuildLogLine.build_id == build_id)
        .order_by(col(BuildLogLine.id))
    ).all()
    return build_json(build) | {"log": list(lines)}
