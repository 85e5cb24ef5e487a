"""Likes as huggingface_hub calls them: POST/DELETE /api/spaces/{id}/like (unlike; the
client has no like() any more, the Hub's web page likes), GET /api/spaces/{id}/likers
(list_repo_likers) and GET /api/users/{user}/likes (list_liked_repos). Pages of 100 with a
`Link: rel="next"` header, which the client's paginate follows."""

from __future__ import annotations

from typing import TypeVar

from fastapi import APIRouter, Depends, Query, Request, Response
from sqlalchemy import func
from sqlmodel import Session, select

from orchestrator.api import wire
from orchestrator.api.deps import current_principal, visible_space
from orchestrator.api.errors import ERROR_RESPONSES, HubError
from orchestrator.api.timefmt import hub_time
from orchestrator.community import discussions, likes
from orchestrator.core.auth import Access, Principal, space_access
from orchestrator.core.db import get_session
from orchestrator.core.models import User

router = APIRouter(prefix="/api", responses=ERROR_RESPONSES)
PAGE_SIZE = 100
Item = TypeVar("Item")


def _page(items: list[Item], cursor: int, request: Request, response: Response) -> list[Item]:
    if cursor + PAGE_SIZE < len(items):
        next_url = request.url.include_query_params(cursor=cursor + PAGE_SIZE)
        response.headers["Link"] = f'<{next_url}>; rel="next"'
    return items[cursor : cursor + PAGE_SIZE]


def _answer(session: Session, space_id: int | None, liked: bool) -> wire.LikeAnswer:
    return wire.LikeAnswer(
        liked=liked, likes=likes.counts(session, [space_id]).get(space_id or 0, 0)
    )


@router.post("/spaces/{owner}/{name}/like", response_model=wire.LikeAnswer)
def like(
    owner: str,
    name: str,
    session: Session = Depends(get_session),
    principal: Principal | None = Depends(current_principal),
) -> wire.LikeAnswer:
    caller = discussions.writer_token(principal)
    space = visible_space(session, caller, owner, name)
    likes.like(session, space, caller.user)
    return _answer(session, space.id, True)


@router.delete("/spaces/{owner}/{name}/like", response_model=wire.LikeAnswer)
def unlike(
    owner: str,
    name: str,
    session: Session = Depends(get_session),
    principal: Principal | None = Depends(current_principal),
) -> wire.LikeAnswer:
    caller = discussions.writer_token(principal)
    space = visible_space(session, caller, owner, name)
    likes.unlike(session, space, caller.user)
    return _answer(session, space.id, False)


@router.get("/spaces/{owner}/{name}/likers", response_model=list[wire.Liker])
def likers(
    owner: str,
    name: str,
    request: Request,
    response: Response,
    cursor: int = Query(default=0, ge=0),
    session: Session = Depends(get_session),
    principal: Principal | None = Depends(current_principal),
) -> list[wire.Liker]:
    space = visible_space(session, principal, owner, name)
    people = [
        wire.Liker(user=u.name, fullname=u.name, avatar_url=None)
        for u in likes.likers(session, space)
    ]
    return _page(people, cursor, request, response)


@router.get("/users/{user}/likes", response_model=list[wire.Like])
def liked_repos(
    user: str,
    request: Request,
    response: Response,
    cursor: int = Query(default=0, ge=0),
    session: Session = Depends(get_session),
    principal: Principal | None = Depends(current_principal),
) -> list[wire.Like]:
    """A user's likes, newest first: only the Spaces the caller may see."""
    found = session.exec(select(User).where(func.lower(User.name) == user.lower())).first()
    if found is None:
        raise HubError(404, f"User not found: {user}")
    shown = [
        wire.Like(
            created_at=hub_time(row.created_at) or "", repo=wire.LikedRepo(name=space.full_name)
        )
        for row, space in likes.liked_by(session, found)
        if space_access(principal, space) != Access.NONE
    ]
    return _page(shown, cursor, request, response)
