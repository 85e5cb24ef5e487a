"""Space info, runtime, builds and build logs."""

from __future__ import annotations

import json

from fastapi import APIRouter, Body, Depends, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import func
from sqlmodel import Session, col, select

from orchestrator.api import bodies, expand, wire
from orchestrator.api.deps import current_principal, visible_space
from orchestrator.api.errors import ERROR_RESPONSES, HubError
from orchestrator.api.timefmt import hub_time
from orchestrator.community import likes
from orchestrator.core.auth import Access, Principal, space_access
from orchestrator.core.db import get_session
from orchestrator.core.events import ACTOR_SYSTEM
from orchestrator.core.models import Build, BuildLogLine, Space, Visibility
from orchestrator.core.settings import get_settings
from orchestrator.core.stages import shown_error, shown_stage
from orchestrator.spaces import lifecycle, visitor_limit
from orchestrator.spaces import registry as spaces
from orchestrator.volumes import spec as volume_spec
from sandbox.hardware import get_tier

router = APIRouter(prefix="/api/spaces", responses=ERROR_RESPONSES)
PAGE_SIZE = 100


def runtime_json(space: Space) -> wire.SpaceRuntime:
    """The runtime as shown: a RUNNING Space whose newest spec the controller has not
    observed yet (a rename, new hardware) shows RUNNING_APP_STARTING (stages.shown_stage)."""
    return wire.SpaceRuntime(
        stage=shown_stage(space),
        hardware=wire.RuntimeHardware(
            current=space.current_hardware, requested=space.requested_hardware
        ),
        error_message=shown_error(space),
        sha=space.serving_sha,
        gc_timeout=space.sleep_time_seconds
        if space.sleep_time_seconds is not None
        else get_tier(space.requested_hardware).default_sleep_seconds,
        replicas=wire.Replicas(current=1 if space.current_hardware else 0, requested=1),
        dev_mode=False,
        domains=[
            wire.Domain(
                domain=f"{spaces.subdomain(space)}.{get_settings().spaces_domain}", stage="READY"
            )
        ],
        build_notes=_notes(space.built_notes),
        queue=_queue(space),
        sleep=_sleep(space),
        volumes=[wire.Volume.model_validate(v) for v in volume_spec.wire(space) or []] or None,
        hardware_notice=space.hardware_notice,
        volume_notice=space.volume_notice,
        visitor_concurrency=space.visitor_concurrency,
    )


def _queue(space: Space) -> wire.HardwareQueue | None:
    """Its place in the line for hardware, while it waits (the controller's status)."""
    if space.paused or space.waiting_position is None or not space.waiting_hardware:
        return None
    return wire.HardwareQueue(
        position=space.waiting_position,
        hardware=space.waiting_hardware,
        since=hub_time(space.waiting_since),
    )


def _sleep(space: Space) -> wire.SleepState | None:
    """How it sleeps (the controller's status); a paused Space is paused, not asleep."""
    if space.paused or not space.sleep_depth:
        return None
    return wire.SleepState(depth=space.sleep_depth, since=hub_time(space.sleep_since))


def _notes(stored: str | None) -> list[str]:
    """Notes as the build stored them (a JSON list; orchestrator/builds/state.py finish)."""
    return [str(note) for note in json.loads(stored)] if stored else []


def space_json(space: Space, like_count: int | None = None) -> wire.SpaceInfo:
    """The Space in the Hub's shape; `like_count` when the caller counted a page's likes in
    one query (else they are counted here)."""
    return wire.SpaceInfo(
        uid=space.uid,
        id=space.full_name,
        author=space.owner,
        sha=space.head_sha,
        created_at=hub_time(space.created_at),
        last_modified=hub_time(space.updated_at),
        private=space.private,
        gated=False,
        disabled=False,
        host=spaces.app_url(space),
        subdomain=spaces.subdomain(space),
        sdk=space.sdk,
        likes=likes.count_of(space) if like_count is None else like_count,
        tags=[t for t in [space.sdk] if t],
        card_data=json.loads(space.card_data) if space.card_data else {},
        duplicated_from=space.duplicated_from,
        runtime=runtime_json(space),
    )


def build_json(build: Build) -> wire.BuildInfo:
    return wire.BuildInfo(
        id=build.id,
        commit=build.commit_sha,
        status=build.status,
        image=build.image,
        reused_image=build.reused_image,
        error_message=build.error_message,
        created_at=hub_time(build.created_at),
        started_at=hub_time(build.started_at),
        finished_at=hub_time(build.finished_at),
        notes=_notes(build.notes),
    )


@router.get("", response_model=list[wire.SpaceInfo])
def list_spaces(
    request: Request,
    response: Response,
    author: str | None = None,
    search: str | None = None,
    sort: str | None = None,
    direction: int = -1,
    limit: int | None = Query(default=None, ge=1),
    cursor: int = Query(default=0, ge=0),
    session: Session = Depends(get_session),
    principal: Principal | None = Depends(current_principal),
) -> list[wire.SpaceInfo]:
    """huggingface_hub's list_spaces: filters, sort, and GitHub-style `Link` pagination;
    with `expand=`, only the properties it names (siblings: at most max_tree_entries files
    per Space, else left out)."""
    wanted = expand.asked(request)
    query = select(Space)
    if author:  # names are compared regardless of case, as on the Hub
        query = query.where(func.lower(Space.owner) == author.lower())
    if search:  # regardless of case too (PostgreSQL's LIKE, unlike SQLite's, minds it)
        term = search.lower()
        query = query.where(
            func.lower(Space.name).contains(term, autoescape=True)
            | func.lower(Space.owner).contains(term, autoescape=True)
        )
    order = {"createdAt": Space.created_at, "lastModified": Space.updated_at}.get(
        sort or "", Space.id
    )
    query = query.order_by(col(order).desc() if direction == -1 else col(order).asc())
    visible = [s for s in session.exec(query).all() if space_access(principal, s) != Access.NONE]
    if sort in likes.SORTS:  # most liked first (trendingScore, likes7d: of the last week)
        visible = likes.by_likes(session, visible, sort, descending=direction == -1)
    page_size = min(limit or PAGE_SIZE, PAGE_SIZE)
    page = visible[cursor : cursor + page_size]
    if cursor + page_size < len(visible) and not limit:
        next_url = request.url.include_query_params(cursor=cursor + page_size)
        response.headers["Link"] = f'<{next_url}>; rel="next"'
    if wanted is not None:
        # Imported here: space_info's routes build on this module's space_json.
        from orchestrator.api import space_info

        expanded = [space_info.expanded(s, session, request, wanted) for s in page]
        link = {"Link": response.headers["Link"]} if "Link" in response.headers else None
        return JSONResponse(expanded, headers=link)  # type: ignore[return-value]
    tally = likes.counts(session, [s.id for s in page])  # one query for the page
    return [space_json(s, tally.get(s.id or 0, 0)) for s in page]


@router.put("/{owner}/{name}/settings", response_model=wire.SpaceInfo)
def update_settings(
    owner: str,
    name: str,
    body: dict[str, object] = Body(...),
    session: Session = Depends(get_session),
    principal: Principal | None = Depends(current_principal),
) -> wire.SpaceInfo:
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
        actor = principal.user.name if principal is not None else ACTOR_SYSTEM
        lifecycle.set_visibility(session, space, Visibility(str(visibility)), actor=actor)
    if "visitorConcurrency" in body:  # Spaceport's own (gateway/visitor_queue.py)
        actor = principal.user.name if principal is not None else ACTOR_SYSTEM
        concurrency = body["visitorConcurrency"]
        try:
            visitor_limit.set_visitor_concurrency(
                session, space, concurrency if isinstance(concurrency, int) else None, actor=actor
            )
        except lifecycle.LifecycleError as exc:
            raise HubError(400, str(exc)) from exc
        session.commit()
    return space_json(space)


@router.get("/{owner}/{name}/runtime", response_model=wire.SpaceRuntime)
def space_runtime(
    owner: str,
    name: str,
    session: Session = Depends(get_session),
    principal: Principal | None = Depends(current_principal),
) -> wire.SpaceRuntime:
    return runtime_json(visible_space(session, principal, owner, name))


@router.get("/{owner}/{name}/builds", response_model=list[wire.BuildInfo])
def list_builds(
    owner: str,
    name: str,
    session: Session = Depends(get_session),
    principal: Principal | None = Depends(current_principal),
) -> list[wire.BuildInfo]:
    space = visible_space(session, principal, owner, name)
    builds = session.exec(
        select(Build).where(Build.space_id == space.id).order_by(col(Build.id).desc())
    ).all()
    return [build_json(b) for b in builds]


@router.get("/{owner}/{name}/builds/{build_id}", response_model=wire.BuildWithLog)
def get_build(
    owner: str,
    name: str,
    build_id: int = Path(ge=0, le=bodies.MAX_INT),
    session: Session = Depends(get_session),
    principal: Principal | None = Depends(current_principal),
) -> wire.BuildWithLog:
    space = visible_space(session, principal, owner, name)
    build = session.get(Build, build_id)
    if build is None or build.space_id != space.id:
        raise HubError(404, f"No build {build_id} for {space.full_name}", "EntryNotFound")
    lines = session.exec(
        select(BuildLogLine.line)
        .where(BuildLogLine.build_id == build_id)
        .order_by(col(BuildLogLine.id))
    ).all()
    return wire.BuildWithLog(**build_json(build).model_dump(by_alias=False), log=list(lines))
