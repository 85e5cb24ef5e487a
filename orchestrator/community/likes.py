"""Likes: a user likes a Space once; counts show in space_info and list_spaces (which sorts
by them), and a user's likes and a Space's likers are listed. Only someone who can see a
Space likes it, and no listing shows a private Space to someone who can't see it."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

from sqlalchemy import func
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import object_session
from sqlmodel import Session, col, select

from orchestrator.core import events
from orchestrator.core.models import Space, SpaceLike, User, utcnow

TRENDING_DAYS = 7  # trendingScore: likes of the last week
# list_spaces(sort=...): all likes, or those of the last TRENDING_DAYS (the Hub's trending
# score weighs recent activity; recent likes are what Spaceport has of it).
SORTS = ("likes", "likes7d", "trendingScore")


def like(session: Session, space: Space, user: User) -> bool:
    """True when this like is new (a second like changes nothing, as on the Hub)."""
    if _find(session, space, user) is not None:
        return False
    session.add(SpaceLike(user_id=user.id or 0, space_id=space.id or 0))
    events.record(session, events.EventKind.SPACE_LIKED, user.name, space)
    try:
        session.commit()
    except IntegrityError:  # the same like a moment ago
        session.rollback()
        return False
    return True


def unlike(session: Session, space: Space, user: User) -> bool:
    found = _find(session, space, user)
    if found is None:
        return False
    session.delete(found)
    events.record(session, events.EventKind.SPACE_UNLIKED, user.name, space)
    session.commit()
    return True


def _find(session: Session, space: Space, user: User) -> SpaceLike | None:
    return session.exec(
        select(SpaceLike).where(SpaceLike.space_id == space.id, SpaceLike.user_id == user.id)
    ).first()


def counts(
    session: Session, space_ids: Iterable[int | None], *, recent: bool = False
) -> dict[int, int]:
    """Likes per Space (recent: of the last TRENDING_DAYS days), in one query."""
    ids = [i for i in space_ids if i is not None]
    if not ids:
        return {}
    query = select(SpaceLike.space_id, func.count()).where(col(SpaceLike.space_id).in_(ids))
    if recent:
        query = query.where(col(SpaceLike.created_at) >= utcnow() - timedelta(days=TRENDING_DAYS))
    return dict(session.exec(query.group_by(col(SpaceLike.space_id))).all())


def count_of(space: Space) -> int:
    """The Space's likes, read in the session it came from (0 when it has none)."""
    session = object_session(space)
    if session is None or space.id is None:
        return 0
    return session.exec(
        select(func.count()).select_from(SpaceLike).where(SpaceLike.space_id == space.id)
    ).one()


def by_likes(
    session: Session, spaces: list[Space], sort: str, *, descending: bool = True
) -> list[Space]:
    """`spaces` ordered by their likes (recent ones for likes7d and trendingScore); ties
    keep their order."""
    tally = counts(session, [s.id for s in spaces], recent=sort != "likes")
    return sorted(spaces, key=lambda s: tally.get(s.id or 0, 0), reverse=descending)


def liked_by(session: Session, user: User) -> list[tuple[SpaceLike, Space]]:
    """The user's likes, newest first, with their Spaces (the caller filters by access)."""
    rows = session.exec(
        select(SpaceLike, Space)
        .join(Space, col(Space.id) == SpaceLike.space_id)
        .where(SpaceLike.user_id == user.id)
        .order_by(col(SpaceLike.created_at).desc(), col(SpaceLike.id).desc())
    ).all()
    return [(like_row, space) for like_row, space in rows]


def likers(session: Session, space: Space) -> list[User]:
    rows = session.exec(
        select(User)
        .join(SpaceLike, col(SpaceLike.user_id) == User.id)
        .where(SpaceLike.space_id == space.id)
        .order_by(col(SpaceLike.created_at).desc(), col(SpaceLike.id).desc())
    ).all()
    return list(rows)


def delete_for_space(session: Session, space_id: int) -> None:
    for row in session.exec(select(SpaceLike).where(SpaceLike.space_id == space_id)):
        session.delete(row)
