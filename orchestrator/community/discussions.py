"""Discussions and pull requests of a Space, and who may do what with them.

The Hub's rules, which these follow: anyone who can see a Space (signed in, with a write
token) opens discussions and pull requests and comments on them; a comment's author edits
it; the repo's writers (`space_access(...) == Access.WRITE`, which organisation roles
extend) merge, hide comments, and close, reopen and rename any discussion; a discussion's
author may also close, reopen and rename their own. A merged pull request stays merged.

Every change writes its rows and its event (orchestrator/core/events.py) in one
transaction; a pull request's git ref is moved before that transaction commits and put
back when it fails (orchestrator/community/pull_requests.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from orchestrator.api.errors import HubError
from orchestrator.core import events
from orchestrator.core.auth import Access, Principal, space_access
from orchestrator.core.limits import TOO_LARGE
from orchestrator.core.models import (
    Discussion,
    DiscussionEvent,
    DiscussionEventKind,
    DiscussionStatus,
    Space,
    User,
    utcnow,
)
from orchestrator.core.settings import get_settings

PAGE_SIZE = 50  # the Hub's page of get_repo_discussions
OPEN_STATUSES = (DiscussionStatus.OPEN, DiscussionStatus.DRAFT)
CLOSED_STATUSES = (DiscussionStatus.CLOSED, DiscussionStatus.MERGED)
DISCUSSION_NOT_FOUND = "DiscussionNotFound"


def default_description(pull_request: bool) -> str:
    what = "Pull Request" if pull_request else "Discussion"
    return f"{what} opened with the API"


# -- who may do what --------------------------------------------------------------------


def writer_token(principal: Principal | None) -> Principal:
    """A signed-in principal whose token may write (read tokens only read, as on the Hub)."""
    if principal is None:
        raise HubError(401, "Authorization header is required: pass a token as a Bearer token")
    if not principal.can_write:
        raise HubError(403, "Your token is read-only: use a write token to take part")
    return principal


def is_writer(principal: Principal | None, space: Space) -> bool:
    return space_access(principal, space) == Access.WRITE


def _author_or_writer(principal: Principal, space: Space, author_id: int | None, what: str) -> None:
    if principal.user.id != author_id and not is_writer(principal, space):
        raise HubError(
            403, f"Only its author or those with write access to {space.full_name} {what}"
        )


def may_commit(principal: Principal, space: Space, discussion: Discussion) -> None:
    """Commits to refs/pr/{num}: its author or the repo's writers, while it is open."""
    if not discussion.is_pull_request:
        raise HubError(400, f"#{discussion.num} is a discussion, not a pull request")
    if discussion.status not in OPEN_STATUSES:
        raise HubError(
            403, f"Pull request #{discussion.num} is {discussion.status}: reopen it to add commits"
        )
    _author_or_writer(principal, space, discussion.author_id, "may push to its pull request")


# -- limits -----------------------------------------------------------------------------


TITLE_COLUMN = 500  # discussion.title's size: the setting can't take titles past it


def title_limit() -> int:
    return min(get_settings().max_discussion_title_chars, TITLE_COLUMN)


def fitted(title: str, description: str) -> tuple[str, str]:
    """A commit's summary and description as a pull request's title and first comment
    (create_pr=True): cut to the limits rather than refusing a commit that is fine."""
    most_title, most_bytes = title_limit(), get_settings().max_comment_bytes
    title = title.strip() or "Pull request"
    if len(title) > most_title:
        title = title[: most_title - 1] + "\u2026"
    body = description.strip() or default_description(True)
    if len(body.encode()) > most_bytes:
        body = body.encode()[: most_bytes - 3].decode(errors="ignore") + "\u2026"
    return title, body


def clean_title(title: object) -> str:
    most = title_limit()
    text = title.strip() if isinstance(title, str) else ""
    if not text:
        raise HubError(400, "A title is required: give the discussion a few words")
    if len(text) > most:
        raise HubError(
            413,
            f"The title is over {most} characters (SPACEPORT_MAX_DISCUSSION_TITLE_CHARS)",
            TOO_LARGE,
        )
    return text


def clean_comment(text: object, what: str = "comment") -> str:
    most = get_settings().max_comment_bytes
    content = text.strip() if isinstance(text, str) else ""
    if not content:
        raise HubError(400, f"The {what} is empty: write something")
    if len(content.encode()) > most:
        raise HubError(
            413, f"The {what} is over {most} bytes (SPACEPORT_MAX_COMMENT_BYTES)", TOO_LARGE
        )
    return content


def _room_for_event(session: Session, discussion: Discussion) -> None:
    most = get_settings().max_discussion_events
    count = session.exec(
        select(func.count()).where(DiscussionEvent.discussion_id == discussion.id)
    ).one()
    if count >= most:
        raise HubError(
            400,
            f"#{discussion.num} holds {most} events already (SPACEPORT_MAX_DISCUSSION_EVENTS): "
            "open a new discussion",
        )


# -- reading ----------------------------------------------------------------------------


def get(session: Session, space: Space, num: int) -> Discussion:
    found = session.exec(
        select(Discussion).where(Discussion.space_id == space.id, Discussion.num == num)
    ).first()
    if found is None:
        raise HubError(
            404, f"Discussion #{num} not found in {space.full_name}", DISCUSSION_NOT_FOUND
        )
    return found


@dataclass(frozen=True)
class Page:
    discussions: list[Discussion]
    count: int
    start: int
    closed: int


def page(
    session: Session,
    space: Space,
    *,
    index: int,
    kind: str | None,
    status: str | None,
    author: str | None,
) -> Page:
    """Page `index` (from 0) of the Space's discussions, newest first, filtered as
    get_repo_discussions asks: type all|discussion|pull_request, status all|open|closed
    (open counts drafts, closed counts merged ones), author (a user name)."""
    where = [Discussion.space_id == space.id]
    if kind == "discussion":
        where.append(col(Discussion.is_pull_request).is_(False))
    elif kind == "pull_request":
        where.append(col(Discussion.is_pull_request).is_(True))
    elif kind not in (None, "", "all"):
        raise HubError(400, f"type must be all, discussion or pull_request (got {kind!r})")
    if status == "open":
        where.append(col(Discussion.status).in_(list(OPEN_STATUSES)))
    elif status == "closed":
        where.append(col(Discussion.status).in_(list(CLOSED_STATUSES)))
    elif status not in (None, "", "all"):
        raise HubError(400, f"status must be all, open or closed (got {status!r})")
    if author:
        user = session.exec(select(User).where(func.lower(User.name) == author.lower())).first()
        where.append(Discussion.author_id == (user.id if user else -1))
    count = session.exec(select(func.count()).select_from(Discussion).where(*where)).one()
    closed = session.exec(
        select(func.count())
        .select_from(Discussion)
        .where(*where, col(Discussion.status).in_(list(CLOSED_STATUSES)))
    ).one()
    start = index * PAGE_SIZE
    rows = session.exec(
        select(Discussion)
        .where(*where)
        .order_by(col(Discussion.num).desc())
        .offset(start)
        .limit(PAGE_SIZE)
    ).all()
    return Page(list(rows), count, start, closed)


def timeline(session: Session, discussion: Discussion) -> list[DiscussionEvent]:
    return list(
        session.exec(
            select(DiscussionEvent)
            .where(DiscussionEvent.discussion_id == discussion.id)
            .order_by(col(DiscussionEvent.id))
        )
    )


def comment_counts(session: Session, discussions: Iterable[Discussion]) -> dict[int, int]:
    ids = [d.id for d in discussions]
    if not ids:
        return {}
    rows = session.exec(
        select(DiscussionEvent.discussion_id, func.count())
        .where(
            col(DiscussionEvent.discussion_id).in_(ids),
            DiscussionEvent.kind == DiscussionEventKind.COMMENT,
        )
        .group_by(col(DiscussionEvent.discussion_id))
    ).all()
    return dict(rows)


def users(session: Session, ids: Iterable[int | None]) -> dict[int, User]:
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    return {u.id: u for u in session.exec(select(User).where(col(User.id).in_(wanted))) if u.id}


# -- writing ----------------------------------------------------------------------------


def _add_event(
    session: Session,
    discussion: Discussion,
    kind: DiscussionEventKind,
    author: User,
    *,
    content: str | None = None,
    **data: Any,
) -> DiscussionEvent:
    _room_for_event(session, discussion)
    entry = DiscussionEvent(
        discussion_id=discussion.id or 0,
        kind=kind,
        author_id=author.id,
        content=content,
        data=json.dumps(data),
    )
    discussion.updated_at = utcnow()
    session.add(entry)
    session.add(discussion)
    return entry


def open_discussion(
    session: Session,
    space: Space,
    author: User,
    title: str,
    description: str,
    *,
    pull_request: bool,
    status: DiscussionStatus = DiscussionStatus.OPEN,
) -> Discussion:
    """A new discussion (or pull request, whose ref the caller makes) with its first
    comment, flushed with the next number of the Space; not committed. It must be the
    first write of its transaction: a number taken meanwhile rolls it back to try again."""
    most = get_settings().max_discussions_per_space
    for _attempt in range(5):
        last = session.exec(
            select(func.max(Discussion.num)).where(Discussion.space_id == space.id)
        ).one()
        if (last or 0) >= most:
            raise HubError(
                400,
                f"{space.full_name} holds {most} discussions already "
                "(SPACEPORT_MAX_DISCUSSIONS_PER_SPACE)",
            )
        discussion = Discussion(
            space_id=space.id or 0,
            num=(last or 0) + 1,
            title=title,
            author_id=author.id,
            is_pull_request=pull_request,
            status=status,
        )
        session.add(discussion)
        try:
            session.flush()
        except IntegrityError:  # another request took the number a moment ago
            session.rollback()  # nothing else is in this transaction yet (see above)
            continue
        _add_event(session, discussion, DiscussionEventKind.COMMENT, author, content=description)
        events.record(
            session,
            events.EventKind.DISCUSSION_OPENED,
            author.name,
            space,
            num=discussion.num,
            pull_request=pull_request,
        )
        return discussion
    raise HubError(409, "Many discussions were opened at once: try again")


def comment(
    session: Session, space: Space, discussion: Discussion, author: User, text: str
) -> DiscussionEvent:
    entry = _add_event(session, discussion, DiscussionEventKind.COMMENT, author, content=text)
    session.flush()
    events.record(
        session,
        events.EventKind.DISCUSSION_COMMENTED,
        author.name,
        space,
        num=discussion.num,
        comment=entry.uid,
    )
    return entry


def find_comment(session: Session, discussion: Discussion, uid: str) -> DiscussionEvent:
    entry = session.exec(
        select(DiscussionEvent).where(
            DiscussionEvent.discussion_id == discussion.id, DiscussionEvent.uid == uid.lower()
        )
    ).first()
    if entry is None or entry.kind != DiscussionEventKind.COMMENT:
        raise HubError(404, f"Comment {uid} not found in #{discussion.num}", "CommentNotFound")
    return entry


def edit_comment(
    session: Session,
    space: Space,
    discussion: Discussion,
    entry: DiscussionEvent,
    principal: Principal,
    text: str,
) -> DiscussionEvent:
    """Only a comment's author edits it; each earlier text is kept in its history."""
    if principal.user.id != entry.author_id:
        raise HubError(403, "Only the author of a comment may edit it")
    if entry.hidden:
        raise HubError(403, "This comment is hidden: it can't be edited")
    data = json.loads(entry.data)
    history = data.get("history", [])
    if len(history) >= get_settings().max_comment_edits:
        raise HubError(
            400,
            f"This comment was edited {len(history)} times (SPACEPORT_MAX_COMMENT_EDITS): "
            "post a new comment instead",
        )
    history.insert(
        0,
        {
            "raw": entry.content or "",
            "updatedAt": entry.updated_at.isoformat(),
            "authorId": entry.author_id,
        },
    )
    data["history"] = history
    entry.data = json.dumps(data)
    entry.content = text
    entry.edited = True
    entry.updated_at = utcnow()
    session.add(entry)
    return entry


def hide_comment(
    session: Session,
    space: Space,
    discussion: Discussion,
    entry: DiscussionEvent,
    principal: Principal,
) -> DiscussionEvent:
    """The repo's writers hide comments, for good: the text and its history are dropped."""
    if not is_writer(principal, space):
        raise HubError(403, f"Only those with write access to {space.full_name} hide comments")
    entry.hidden = True
    entry.content = ""
    entry.data = json.dumps({"history": []})
    entry.updated_at = utcnow()
    session.add(entry)
    return entry


def rename(
    session: Session, space: Space, discussion: Discussion, principal: Principal, title: str
) -> DiscussionEvent:
    _author_or_writer(principal, space, discussion.author_id, "may rename it")
    old = discussion.title
    discussion.title = title
    entry = _add_event(
        session,
        discussion,
        DiscussionEventKind.TITLE_CHANGE,
        principal.user,
        **{"from": old, "to": title},
    )
    events.record(
        session, events.EventKind.DISCUSSION_RENAMED, principal.user.name, space, num=discussion.num
    )
    return entry


def change_status(
    session: Session,
    space: Space,
    discussion: Discussion,
    principal: Principal,
    status: str,
    note: str | None,
) -> DiscussionEvent:
    """open or closed, by its author or the repo's writers; a merged pull request stays
    merged. Opening a draft pull request publishes it."""
    if status not in ("open", "closed"):
        raise HubError(400, f"status must be 'open' or 'closed' (got {status!r})")
    _author_or_writer(principal, space, discussion.author_id, "may change its status")
    if discussion.status == DiscussionStatus.MERGED:
        raise HubError(400, f"Pull request #{discussion.num} is merged: its status can't change")
    if discussion.status == status:
        raise HubError(400, f"#{discussion.num} is {status} already")
    old = discussion.status
    discussion.status = DiscussionStatus(status)
    entry = _add_event(
        session, discussion, DiscussionEventKind.STATUS_CHANGE, principal.user, status=status
    )
    if note:
        _add_event(session, discussion, DiscussionEventKind.COMMENT, principal.user, content=note)
    events.record(
        session,
        events.EventKind.DISCUSSION_STATUS_CHANGED,
        principal.user.name,
        space,
        num=discussion.num,
        **{"from": str(old), "to": status},
    )
    return entry


def add_commits(
    session: Session,
    space: Space,
    discussion: Discussion,
    author: User | None,
    actor: str,
    commits: list[tuple[str, str]],
) -> None:
    """A commit event per commit the pull request's ref gained (newest last)."""
    if not commits:
        return
    for sha, subject in commits:
        if author is not None:
            _add_event(
                session, discussion, DiscussionEventKind.COMMIT, author, subject=subject, oid=sha
            )
        else:
            session.add(
                DiscussionEvent(
                    discussion_id=discussion.id or 0,
                    kind=DiscussionEventKind.COMMIT,
                    data=json.dumps({"subject": subject, "oid": sha}),
                )
            )
    events.record(
        session,
        events.EventKind.PULL_REQUEST_COMMITTED,
        actor,
        space,
        num=discussion.num,
        commit=commits[-1][0],
        commits=len(commits),
    )


def mark_merged(
    session: Session,
    space: Space,
    discussion: Discussion,
    principal: Principal,
    sha: str,
    fast_forward: bool,
    note: str | None,
) -> None:
    discussion.status = DiscussionStatus.MERGED
    discussion.merge_commit = sha
    _add_event(
        session, discussion, DiscussionEventKind.STATUS_CHANGE, principal.user, status="merged"
    )
    if note:
        _add_event(session, discussion, DiscussionEventKind.COMMENT, principal.user, content=note)
    events.record(
        session,
        events.EventKind.PULL_REQUEST_MERGED,
        principal.user.name,
        space,
        num=discussion.num,
        commit=sha,
        fast_forward=fast_forward,
    )


def delete_for_space(session: Session, space_id: int) -> None:
    """A deleted Space's discussions and their events (the rows only: its repo goes too)."""
    ids = list(session.exec(select(Discussion.id).where(Discussion.space_id == space_id)))
    if ids:
        for entry in session.exec(
            select(DiscussionEvent).where(col(DiscussionEvent.discussion_id).in_(ids))
        ):
            session.delete(entry)
        session.flush()  # the events before the discussions they point at
    for discussion in session.exec(select(Discussion).where(Discussion.space_id == space_id)):
        session.delete(discussion)
