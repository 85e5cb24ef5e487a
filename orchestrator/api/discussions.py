"""The Hub's discussions and pull requests API, as huggingface_hub's community calls use it
(get_repo_discussions, get_discussion_details, create_discussion, create_pull_request,
comment_discussion, edit_discussion_comment, hide_discussion_comment, rename_discussion,
change_discussion_status, merge_pull_request). Answer shapes: huggingface_hub/community.py.
Who may do what: orchestrator/community/discussions.py."""

from __future__ import annotations

import html
import json
from typing import Any

from fastapi import APIRouter, Body, Depends, Path, Request
from sqlmodel import Session

from orchestrator.api import bodies, wire
from orchestrator.api.deps import current_principal, origin, visible_space
from orchestrator.api.errors import ERROR_RESPONSES
from orchestrator.api.timefmt import hub_time
from orchestrator.community import discussions
from orchestrator.community import pull_requests as prs
from orchestrator.core.auth import Principal
from orchestrator.core.db import get_session
from orchestrator.core.models import (
    Discussion,
    DiscussionEvent,
    DiscussionEventKind,
    Space,
    User,
)
from orchestrator.repos import pull_requests as git_prs
from orchestrator.repos import store as repos

router = APIRouter(prefix="/api/spaces/{owner}/{name}/discussions", responses=ERROR_RESPONSES)
Num = Path(ge=1, le=bodies.MAX_INT)


class NewDiscussion(bodies.StrictBody):
    title: bodies.Text
    description: bodies.Text | None = None
    pullRequest: bool = False  # noqa: N815 - the Hub's name


class NewComment(bodies.StrictBody):
    comment: bodies.Text


class EditedComment(bodies.StrictBody):
    content: bodies.Text


class NewTitleBody(bodies.StrictBody):
    title: bodies.Text


class NewStatusBody(bodies.StrictBody):
    status: bodies.Text
    comment: bodies.Text | None = None


class MergeBody(bodies.StrictBody):
    comment: bodies.Text | None = None


# -- answers -----------------------------------------------------------------------------


def _author(user: User | None, space: Space) -> wire.DiscussionAuthor | None:
    if user is None:
        return None  # a deleted user: the client shows "deleted"
    return wire.DiscussionAuthor(
        name=user.name, fullname=user.name, avatar_url=None, is_owner=user.id == space.owner_id
    )


def _named(user_id: Any, people: dict[int, User]) -> dict[str, str]:
    user = people.get(user_id) if isinstance(user_id, int) else None
    return {"name": user.name} if user else {}


def event_json(
    entry: DiscussionEvent, people: dict[int, User], space: Space
) -> wire.DiscussionEvent:
    data = json.loads(entry.data)
    author = people.get(entry.author_id) if entry.author_id is not None else None
    if entry.kind == DiscussionEventKind.COMMENT:
        history = data.get("history", [])
        raw = entry.content or ""
        shown: dict[str, Any] = {
            "edited": entry.edited,
            "hidden": entry.hidden,
            "latest": {
                "raw": raw,
                "html": f"<p>{html.escape(raw)}</p>" if raw else "",
                "updatedAt": hub_time(entry.updated_at),
                "author": _named(entry.author_id, people),
            },
            "numEdits": len(history),
            "editors": [author.name] if author and entry.edited else [],
            "history": [
                {
                    "raw": old.get("raw", ""),
                    "updatedAt": old.get("updatedAt"),
                    "author": _named(old.get("authorId"), people),
                }
                for old in history
            ],
            "isReport": False,
            "reactions": [],
        }
    else:
        shown = data
    return wire.DiscussionEvent(
        id=entry.uid,
        type=str(entry.kind),
        created_at=hub_time(entry.created_at) or "",
        author=_author(author, space),
        data=shown,
    )


def _summary(
    discussion: Discussion, space: Space, people: dict[int, User], comments: int
) -> dict[str, Any]:
    author = people.get(discussion.author_id) if discussion.author_id else None
    return {
        "num": discussion.num,
        "title": discussion.title,
        "status": str(discussion.status),
        "created_at": hub_time(discussion.created_at) or "",
        "author": _author(author, space),
        "repo": wire.DiscussionRepo(name=space.full_name),
        "is_pull_request": discussion.is_pull_request,
        "num_comments": comments,
        "pinned": discussion.pinned,
    }


def details_json(
    session: Session, space: Space, discussion: Discussion, *, with_diff: bool
) -> wire.DiscussionDetails:
    entries = discussions.timeline(session, discussion)
    people = discussions.users(
        session, [discussion.author_id, *[e.author_id for e in entries], *_history_authors(entries)]
    )
    comments = sum(1 for e in entries if e.kind == DiscussionEventKind.COMMENT)
    extra: dict[str, Any] = {}
    if discussion.is_pull_request:
        repo = repos.repo_path(space.owner, space.name)
        pr_ref = git_prs.ref(discussion.num)
        still_open = discussion.status in discussions.OPEN_STATUSES
        extra = {
            "changes": wire.PullRequestChanges(
                base=discussion.target_branch,
                head_sha=repos.resolve(repo, pr_ref),
                merge_commit_id=discussion.merge_commit,
            ),
            "files_with_conflicts": (
                git_prs.conflicts(repo, discussion.target_branch, pr_ref) if still_open else []
            ),
            "git_reference": pr_ref,
        }
        if with_diff:
            extra["diff"] = git_prs.diff(repo, discussion.target_branch, pr_ref)
    return wire.DiscussionDetails(
        **_summary(discussion, space, people, comments),
        events=[event_json(e, people, space) for e in entries],
        **extra,
    )


def _history_authors(entries: list[DiscussionEvent]) -> list[int | None]:
    found: list[int | None] = []
    for entry in entries:
        if entry.kind == DiscussionEventKind.COMMENT and entry.edited:
            found.extend(old.get("authorId") for old in json.loads(entry.data).get("history", []))
    return found


def _one_event(session: Session, space: Space, entry: DiscussionEvent) -> wire.DiscussionEvent:
    return event_json(entry, discussions.users(session, [entry.author_id]), space)


# -- routes ------------------------------------------------------------------------------


@router.get("", response_model=wire.DiscussionPage)
def list_discussions(
    owner: str,
    name: str,
    p: int = 0,
    type: str | None = None,  # noqa: A002 - the client's parameter
    status: str | None = None,
    author: str | None = None,
    session: Session = Depends(get_session),
    principal: Principal | None = Depends(current_principal),
) -> wire.DiscussionPage:
    space = visible_space(session, principal, owner, name)
    found = discussions.page(
        session, space, index=max(p, 0), kind=type, status=status, author=author
    )
    people = discussions.users(session, [d.author_id for d in found.discussions])
    counts = discussions.comment_counts(session, found.discussions)
    return wire.DiscussionPage(
        discussions=[
            wire.DiscussionSummary(**_summary(d, space, people, counts.get(d.id or 0, 0)))
            for d in found.discussions
        ],
        count=found.count,
        start=found.start,
        num_closed_discussions=found.closed,
    )


@router.post("", response_model=wire.DiscussionCreated)
def create_discussion(
    owner: str,
    name: str,
    request: Request,
    body: dict[str, Any] = Body(...),
    session: Session = Depends(get_session),
    principal: Principal | None = Depends(current_principal),
) -> wire.DiscussionCreated:
    """create_discussion / create_pull_request (`pullRequest: true`: a draft whose ref
    refs/pr/N starts at main's head)."""
    asked = bodies.check(NewDiscussion, body)
    caller = discussions.writer_token(principal)
    space = visible_space(session, caller, owner, name)
    title = discussions.clean_title(asked.title)
    description = (
        discussions.clean_comment(asked.description, "description")
        if asked.description and asked.description.strip()
        else discussions.default_description(asked.pullRequest)
    )
    if asked.pullRequest:
        discussion = prs.open_pull_request(session, space, caller.user, title, description)
    else:
        discussion = discussions.open_discussion(
            session, space, caller.user, title, description, pull_request=False
        )
        session.commit()
    return wire.DiscussionCreated(
        num=discussion.num,
        pull_request=discussion.is_pull_request,
        url=f"{origin(request)}/spaces/{space.full_name}/discussions/{discussion.num}",
        reference=git_prs.ref(discussion.num) if discussion.is_pull_request else None,
    )


@router.get("/{num}", response_model=wire.DiscussionDetails)
def discussion_details(
    owner: str,
    name: str,
    num: int = Num,
    diff: str | None = None,
    session: Session = Depends(get_session),
    principal: Principal | None = Depends(current_principal),
) -> wire.DiscussionDetails:
    space = visible_space(session, principal, owner, name)
    discussion = discussions.get(session, space, num)
    return details_json(session, space, discussion, with_diff=diff in ("1", "true"))


def _writing(
    session: Session, principal: Principal | None, owner: str, name: str, num: int
) -> tuple[Space, Discussion, Principal]:
    caller = discussions.writer_token(principal)
    space = visible_space(session, caller, owner, name)
    return space, discussions.get(session, space, num), caller


@router.post("/{num}/comment", response_model=wire.NewMessage)
def comment(
    owner: str,
    name: str,
    num: int = Num,
    body: dict[str, Any] = Body(...),
    session: Session = Depends(get_session),
    principal: Principal | None = Depends(current_principal),
) -> wire.NewMessage:
    text = discussions.clean_comment(bodies.check(NewComment, body).comment)
    space, discussion, caller = _writing(session, principal, owner, name, num)
    entry = discussions.comment(session, space, discussion, caller.user, text)
    session.commit()
    session.refresh(entry)
    return wire.NewMessage(new_message=_one_event(session, space, entry))


@router.post("/{num}/comment/{comment_id}/edit", response_model=wire.UpdatedComment)
def edit_comment(
    owner: str,
    name: str,
    comment_id: str,
    num: int = Num,
    body: dict[str, Any] = Body(...),
    session: Session = Depends(get_session),
    principal: Principal | None = Depends(current_principal),
) -> wire.UpdatedComment:
    text = discussions.clean_comment(bodies.check(EditedComment, body).content)
    space, discussion, caller = _writing(session, principal, owner, name, num)
    entry = discussions.find_comment(session, discussion, comment_id)
    discussions.edit_comment(session, space, discussion, entry, caller, text)
    session.commit()
    session.refresh(entry)
    return wire.UpdatedComment(updated_comment=_one_event(session, space, entry))


@router.post("/{num}/comment/{comment_id}/hide", response_model=wire.UpdatedComment)
def hide_comment(
    owner: str,
    name: str,
    comment_id: str,
    num: int = Num,
    session: Session = Depends(get_session),
    principal: Principal | None = Depends(current_principal),
) -> wire.UpdatedComment:
    space, discussion, caller = _writing(session, principal, owner, name, num)
    entry = discussions.find_comment(session, discussion, comment_id)
    discussions.hide_comment(session, space, discussion, entry, caller)
    session.commit()
    session.refresh(entry)
    return wire.UpdatedComment(updated_comment=_one_event(session, space, entry))


@router.post("/{num}/title", response_model=wire.NewTitle)
def rename(
    owner: str,
    name: str,
    num: int = Num,
    body: dict[str, Any] = Body(...),
    session: Session = Depends(get_session),
    principal: Principal | None = Depends(current_principal),
) -> wire.NewTitle:
    title = discussions.clean_title(bodies.check(NewTitleBody, body).title)
    space, discussion, caller = _writing(session, principal, owner, name, num)
    entry = discussions.rename(session, space, discussion, caller, title)
    session.commit()
    session.refresh(entry)
    return wire.NewTitle(new_title=_one_event(session, space, entry))


@router.post("/{num}/status", response_model=wire.NewStatus)
def change_status(
    owner: str,
    name: str,
    num: int = Num,
    body: dict[str, Any] = Body(...),
    session: Session = Depends(get_session),
    principal: Principal | None = Depends(current_principal),
) -> wire.NewStatus:
    asked = bodies.check(NewStatusBody, body)
    note = discussions.clean_comment(asked.comment) if asked.comment else None
    space, discussion, caller = _writing(session, principal, owner, name, num)
    entry = discussions.change_status(session, space, discussion, caller, asked.status, note)
    session.commit()
    session.refresh(entry)
    return wire.NewStatus(new_status=_one_event(session, space, entry))


@router.post("/{num}/merge", response_model=wire.Merged)
def merge(
    owner: str,
    name: str,
    num: int = Num,
    body: dict[str, Any] | None = Body(default=None),
    session: Session = Depends(get_session),
    principal: Principal | None = Depends(current_principal),
) -> wire.Merged:
    """merge_pull_request: main moves (fast-forward, else a merge commit; 409 on a
    conflict) and deploys as a push to main does."""
    asked = bodies.check(MergeBody, body or {})
    note = discussions.clean_comment(asked.comment) if asked.comment else None
    space, discussion, caller = _writing(session, principal, owner, name, num)
    merged = prs.merge(session, space, discussion, caller, note)
    return wire.Merged(merged=True, merge_commit_id=merged.sha, fast_forward=merged.fast_forward)
