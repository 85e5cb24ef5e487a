"""Which Spaces a listing shows: search, filters and sort done in the database, one page at a
time, so a listing costs the same with ten Spaces or ten thousand (bench/pages_bench.py).

Visibility is in the query too (public Spaces, and the private ones of the viewer's own
namespaces), and each row is checked again with the one access rule (core/auth.space_access)
before it is shown.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import func, or_, true
from sqlmodel import Session, col, select

from orchestrator.community.likes import TRENDING_DAYS
from orchestrator.core.auth import Access, Principal, space_access
from orchestrator.core.models import Space, SpaceLike, Visibility, utcnow
from orchestrator.spaces import registry
from orchestrator.web import stage_words

PAGE_SIZE = 30
MAX_SEARCH = 100  # characters of a search a listing uses
SORTS = {"trending": "Trending", "likes": "Most likes", "updated": "Recently updated"}
SDKS = ("gradio", "docker", "static", "streamlit")
MAX_PAGE = 1000  # pages past this are not offered: search or filter instead


@dataclass(frozen=True)
class Filters:
    search: str = ""
    sdk: str = ""
    stage: str = ""  # a key of stage_words.GROUPS
    hardware: str = ""
    sort: str = "trending"
    page: int = 1
    owner: str = ""  # a user's page: only their Spaces

    @classmethod
    def read(cls, params: dict[str, str], owner: str = "") -> Filters:
        """From a request's query, anything unknown dropped rather than refused: a listing
        link someone edited by hand still shows something."""
        sort = params.get("sort", "trending")
        try:
            page = max(1, min(MAX_PAGE, int(params.get("p", "1"))))
        except ValueError:
            page = 1
        return cls(
            search=params.get("search", "").strip()[:MAX_SEARCH],
            sdk=params.get("sdk", "") if params.get("sdk", "") in SDKS else "",
            stage=params.get("stage", "") if params.get("stage", "") in stage_words.GROUPS else "",
            hardware=params.get("hardware", "")[:64],
            sort=sort if sort in SORTS else "trending",
            page=page,
            owner=owner,
        )


@dataclass(frozen=True)
class Card:
    """What a card shows of a Space."""

    owner: str
    name: str
    title: str
    emoji: str
    color_from: str
    color_to: str
    description: str
    sdk: str
    stage: str
    stage_words: str
    badge: str
    hardware: str
    likes: int
    private: bool
    updated: str

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"


@dataclass
class Listing:
    cards: list[Card] = field(default_factory=list)
    has_next: bool = False


# The Hub's card colours (front matter colorFrom / colorTo) as CSS colours.
COLOURS = {
    "red": "#ef4444",
    "yellow": "#eab308",
    "green": "#22c55e",
    "blue": "#3b82f6",
    "indigo": "#6366f1",
    "purple": "#a855f7",
    "pink": "#ec4899",
    "gray": "#6b7280",
}


def _visible(principal: Principal | None) -> Any:
    public = col(Space.visibility) == Visibility.PUBLIC.value
    if principal is None:
        return public
    if principal.is_admin:
        return true()
    mine = [principal.user.id, *(s.org_id for s in principal.seats)]
    return or_(public, col(Space.owner_id).in_(mine))


def spaces(session: Session, principal: Principal | None, filters: Filters) -> Listing:
    query = select(Space).where(_visible(principal))
    if filters.owner:
        query = query.where(func.lower(Space.owner) == filters.owner.lower())
    if filters.search:
        term = filters.search.lower()
        query = query.where(
            func.lower(Space.name).contains(term, autoescape=True)
            | func.lower(Space.owner).contains(term, autoescape=True)
        )
    if filters.sdk:
        query = query.where(Space.sdk == filters.sdk)
    if filters.stage:
        query = query.where(col(Space.stage).in_(stage_words.GROUPS[filters.stage]))
    if filters.hardware:
        query = query.where(Space.requested_hardware == filters.hardware)
    if filters.sort == "updated":
        query = query.order_by(col(Space.updated_at).desc(), col(Space.id).desc())
    else:
        tally = select(SpaceLike.space_id, func.count().label("n")).group_by(SpaceLike.space_id)
        if filters.sort == "trending":
            since = utcnow() - timedelta(days=TRENDING_DAYS)
            tally = tally.where(col(SpaceLike.created_at) >= since)
        likes = tally.subquery()
        query = query.outerjoin(likes, likes.c.space_id == Space.id).order_by(
            func.coalesce(likes.c.n, 0).desc(), col(Space.updated_at).desc(), col(Space.id).desc()
        )
    offset = (filters.page - 1) * PAGE_SIZE
    rows = session.exec(query.offset(offset).limit(PAGE_SIZE + 1)).all()
    shown = [s for s in rows[:PAGE_SIZE] if space_access(principal, s) != Access.NONE]
    counts = like_counts(session, [s.id for s in shown if s.id is not None])
    return Listing(
        cards=[card(s, counts.get(s.id or 0, 0)) for s in shown],
        has_next=len(rows) > PAGE_SIZE,
    )


def like_counts(session: Session, ids: list[int]) -> dict[int, int]:
    if not ids:
        return {}
    query = (
        select(SpaceLike.space_id, func.count())
        .where(col(SpaceLike.space_id).in_(ids))
        .group_by(col(SpaceLike.space_id))
    )
    return dict(session.exec(query).all())


card_data = registry.front_matter


def card(space: Space, likes: int) -> Card:
    data = card_data(space)
    return Card(
        owner=space.owner,
        name=space.name,
        title=str(data.get("title") or space.name)[:120],
        emoji=str(data.get("emoji") or "🚀")[:8],
        color_from=COLOURS.get(str(data.get("colorFrom")), COLOURS["indigo"]),
        color_to=COLOURS.get(str(data.get("colorTo")), COLOURS["purple"]),
        description=str(data.get("short_description") or "")[:200],
        sdk=space.sdk or str(data.get("sdk") or ""),
        stage=space.stage,
        stage_words=stage_words.words(space.stage, space.waiting_hardware),
        badge=stage_words.badge_class(space.stage),
        hardware=space.current_hardware or space.requested_hardware,
        likes=likes,
        private=space.private,
        updated=space.updated_at.strftime("%Y-%m-%d"),
    )
