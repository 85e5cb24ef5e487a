"""A Space's page (/spaces/{owner}/{name}, the Hub's URL for it): the app in an iframe of
its own host, its stage kept live, README, build and run logs streaming, the activity feed,
clone instructions and Like.

`space_head` is what every tab of a Space shows above itself (templates/_space_head.html):
the Files, Community and Settings tabs build theirs with it too.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlmodel import Session

from orchestrator.community import likes
from orchestrator.core.auth import Access, Principal, space_access
from orchestrator.core.db import get_session
from orchestrator.core.models import Space
from orchestrator.core.settings import get_settings
from orchestrator.repos import store
from orchestrator.spaces import registry
from orchestrator.spaces import tokens as space_tokens
from orchestrator.web import activity, listing, readme, stage_words
from orchestrator.web.errors import not_found
from orchestrator.web.render import done, page
from orchestrator.web.viewer import form_sender, page_viewer

router = APIRouter(include_in_schema=False)


@dataclass(frozen=True)
class SpaceHead:
    space: Space
    card: listing.Card
    tab: str  # app, files, community, settings
    can_write: bool
    liked: bool
    base: str  # the page's path: /spaces/{owner}/{name}


def find(
    session: Session, viewer: Principal | None, owner: str, name: str
) -> tuple[Space | None, Access, str | None]:
    """The Space and the viewer's access; or None and, when it was renamed and the viewer may
    see it, its new page's path to redirect to."""
    space = registry.get_space(session, owner, name)
    if space is None:
        moved = registry.moved_space(session, owner, name)
        if moved is not None and space_access(viewer, moved) != Access.NONE:
            return None, Access.NONE, f"/spaces/{moved.owner}/{moved.name}"
        return None, Access.NONE, None
    access = space_access(viewer, space)
    return (space, access, None) if access != Access.NONE else (None, Access.NONE, None)


def space_head(
    session: Session, viewer: Principal | None, space: Space, access: Access, tab: str
) -> SpaceHead:
    liked = bool(viewer) and likes._find(session, space, viewer.user) is not None  # type: ignore[union-attr]
    return SpaceHead(
        space=space,
        card=listing.card(space, likes.count_of(space)),
        tab=tab,
        can_write=access.value >= Access.WRITE.value,
        liked=liked,
        base=f"/spaces/{space.owner}/{space.name}",
    )


def app_frame_url(space: Space, viewer: Principal | None) -> str:
    """The iframe's source: the app's own host; a private Space opened with a short-lived
    `__sign` token (the gateway trades it for a cookie of that host only)."""
    url = registry.app_url(space) + "/"
    if space.private:
        issued = space_tokens.issue(space, viewer.user.name if viewer else None)
        url += "?__sign=" + quote(issued.token)
    return url


@router.get("/spaces/{owner}/{name}", response_class=HTMLResponse)
def space_page(
    request: Request,
    owner: str,
    name: str,
    session: Session = Depends(get_session),
    viewer: Principal | None = Depends(page_viewer),
) -> Response:
    space, access, moved_to = find(session, viewer, owner, name)
    if moved_to:
        return RedirectResponse(moved_to, status_code=307)
    if space is None:
        return not_found(request, viewer, "Space")
    head = space_head(session, viewer, space, access, "app")
    raw = (
        store.read_file(store.repo_path(space.owner, space.name), space.head_sha, "README.md")
        if space.head_sha
        else None
    )
    feed, newest = activity.recent(session, space)
    public = get_settings().public_url.rstrip("/")
    return page(
        request,
        "space.html",
        viewer,
        head=head,
        frame_url=app_frame_url(space, viewer),
        app_url=registry.app_url(space),
        serving=stage_words.is_serving(space.stage),
        building=space.stage in stage_words.WAITING,
        failed=space.stage in stage_words.ERRORS,
        error_message=stage_words.error_of(space),
        readme_html=readme.render(raw) if raw else "",
        feed=feed,
        newest_event=newest,
        clone_url=f"{public}/spaces/{space.owner}/{space.name}",
    )


@router.post("/spaces/{owner}/{name}/like")
def toggle_like(
    request: Request,
    owner: str,
    name: str,
    session: Session = Depends(get_session),
    sender: Principal = Depends(form_sender),
) -> Response:
    space, _access, _moved = find(session, sender, owner, name)
    if space is None:
        return not_found(request, sender, "Space")
    if likes._find(session, space, sender.user) is None:
        likes.like(session, space, sender.user)
        said = f"You like {space.full_name}."
    else:
        likes.unlike(session, space, sender.user)
        said = f"You no longer like {space.full_name}."
    return done(f"/spaces/{space.owner}/{space.name}", said)
