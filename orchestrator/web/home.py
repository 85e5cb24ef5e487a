"""The listing pages: every Space (/ and /spaces) and a user's or organisation's page
(/{name}), and the small JSON the listing's script polls to keep stage badges live."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse
from sqlalchemy import func
from sqlmodel import Session, select

from orchestrator.core.auth import Access, Principal, space_access
from orchestrator.core.db import get_session
from orchestrator.core.models import User
from orchestrator.spaces import registry
from orchestrator.web import activity, listing, stage_words
from orchestrator.web.render import page
from orchestrator.web.viewer import page_viewer
from sandbox.hardware import CATALOGUE

router = APIRouter(include_in_schema=False)
MAX_POLLED = 60  # Spaces one badge poll may ask about (a page shows PAGE_SIZE)


def _listing_page(
    request: Request,
    session: Session,
    viewer: Principal | None,
    template: str,
    owner: str = "",
    **context: object,
) -> HTMLResponse:
    filters = listing.Filters.read(dict(request.query_params), owner=owner)
    found = listing.spaces(session, viewer, filters)
    return page(
        request,
        template,
        viewer,
        filters=filters,
        listing=found,
        search=filters.search,
        sorts=listing.SORTS,
        sdks=listing.SDKS,
        stage_groups=list(stage_words.GROUPS),
        hardware_names=list(CATALOGUE),
        **context,
    )


@router.get("/", response_class=HTMLResponse)
@router.get("/spaces", response_class=HTMLResponse)
def home(
    request: Request,
    session: Session = Depends(get_session),
    viewer: Principal | None = Depends(page_viewer),
) -> HTMLResponse:
    return _listing_page(request, session, viewer, "home.html")


@router.get("/web/stages")
def stages(
    space: list[str] = Query(default=[], max_length=MAX_POLLED),
    session: Session = Depends(get_session),
    viewer: Principal | None = Depends(page_viewer),
) -> JSONResponse:
    """{"owner/name": {"stage", "words", "badge"}} for the Spaces asked about that the viewer
    may see (the others are left out, as if missing)."""
    answer: dict[str, dict[str, str]] = {}
    for full_name in space[:MAX_POLLED]:
        owner, _, name = full_name.partition("/")
        found = registry.get_space(session, owner, name) if name else None
        if found is None or space_access(viewer, found) == Access.NONE:
            continue
        answer[full_name] = {
            "stage": found.stage,
            "words": stage_words.words(found.stage, found.waiting_hardware),
            "badge": stage_words.badge_class(found.stage),
        }
    return JSONResponse(answer, headers={"Cache-Control": "no-store"})


@router.get("/web/feed")
def feed(
    space: str = Query(max_length=200),
    after: int = Query(default=0, ge=0),
    session: Session = Depends(get_session),
    viewer: Principal | None = Depends(page_viewer),
) -> JSONResponse:
    """What a Space page's script adds when the event stream says something happened: the
    events after `after` in the feed's words (web/activity.py, the one place they are
    written), and the stage now, with the error the page shows when it failed. 404 for a
    Space the viewer may not see."""
    owner, _, name = space.partition("/")
    found = registry.get_space(session, owner, name) if name else None
    if found is None or space_access(viewer, found) == Access.NONE:
        return JSONResponse({"error": "Space not found"}, status_code=404)
    items, newest = activity.since(session, found, after)
    failed = found.stage in stage_words.ERRORS
    return JSONResponse(
        {
            "items": items,
            "newest": max(newest, after),
            "stage": found.stage,
            "words": stage_words.words(found.stage, found.waiting_hardware),
            "badge": stage_words.badge_class(found.stage),
            # The page's error panel, as the page itself shows it to this viewer.
            "failed": failed,
            "errorMessage": stage_words.error_of(found),
        },
        headers={"Cache-Control": "no-store"},
    )


def user_page(
    request: Request, name: str, session: Session, viewer: Principal | None
) -> HTMLResponse | None:
    """A user's or organisation's page with their Spaces; None when no such name exists."""
    user = session.exec(select(User).where(func.lower(User.name) == name.lower())).first()
    if user is None:
        return None
    return _listing_page(request, session, viewer, "user.html", owner=user.name, person=user)
