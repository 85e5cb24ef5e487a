"""A Space's Community tab (/spaces/{owner}/{name}/discussions, the Hub's URLs): its
discussions and pull requests listed, a form to open one, and each one's timeline with a
comment form, Close / Reopen and, for an open pull request, Merge; a comment's author edits
it, the Space's writers hide comments, its author or writers rename it.

Every form calls the functions the API calls (community/discussions.py for discussions,
community/pull_requests.py for pull requests), so who may do what is decided in one place;
when they refuse, their HubError's words are what the page says, on the page itself.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlmodel import Session

from orchestrator.api.errors import HubError
from orchestrator.community import discussions
from orchestrator.community import pull_requests as prs
from orchestrator.core.auth import Access, Principal
from orchestrator.core.db import get_session
from orchestrator.core.models import Discussion, DiscussionEventKind, Space, User
from orchestrator.core.settings import get_settings
from orchestrator.repos import pull_requests as git_prs
from orchestrator.repos import store as repos
from orchestrator.web import readme, space_page
from orchestrator.web.errors import not_found, sign_in_redirect
from orchestrator.web.render import done, page
from orchestrator.web.viewer import form_sender, page_viewer

router = APIRouter(include_in_schema=False)
BASE = "/spaces/{owner}/{name}/discussions"
STATUSES = {"open": "Open", "closed": "Closed", "all": "All"}
KINDS = {"all": "Everything", "discussion": "Discussions", "pull_request": "Pull requests"}
# The badge each status wears (classes of static/spaceport.css).
STATUS_BADGE = {
    "open": "stage-running",
    "draft": "stage-off",
    "closed": "stage-error",
    "merged": "status-merged",
}
PAGE_DIFF_BYTES = 200 * 1024  # of a pull request's diff on its page; the API gives more
DELETED_USER = "deleted user"


# -- finding what a URL names -------------------------------------------------------------


def _space(
    request: Request,
    session: Session,
    viewer: Principal | None,
    owner: str,
    name: str,
    rest: str = "",
    moved_code: int = 307,
) -> tuple[Space, Access] | Response:
    """The Space and the viewer's access, or the answer instead: a 404 (missing or private
    to others alike), or a redirect to its new name's same page (a form: 303, to its page,
    since the form's own route is a POST)."""
    space, access, moved_to = space_page.find(session, viewer, owner, name)
    if moved_to:
        return RedirectResponse(f"{moved_to}/discussions{rest}", status_code=moved_code)
    if space is None:
        return not_found(request, viewer, "Space")
    return space, access


def _discussion(
    request: Request, session: Session, viewer: Principal | None, space: Space, num: str
) -> Discussion | Response:
    number = int(num) if num.isdigit() and len(num) <= 9 else 0
    try:
        return discussions.get(session, space, number)
    except HubError:
        return not_found(request, viewer, "discussion")


def _url(space: Space, num: int | None = None) -> str:
    base = f"/spaces/{space.owner}/{space.name}/discussions"
    return base if num is None else f"{base}/{num}"


def _name(user: User | None) -> str:
    return user.name if user else DELETED_USER


# -- the list -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    num: int
    title: str
    is_pull_request: bool
    status: str
    author: str
    comments: int
    created_at: datetime


@router.get(BASE, response_class=HTMLResponse)
def community(
    request: Request,
    owner: str,
    name: str,
    status: str = "open",
    kind: str = Query("all", alias="type"),
    p: str = "0",
    session: Session = Depends(get_session),
    viewer: Principal | None = Depends(page_viewer),
) -> Response:
    found = _space(request, session, viewer, owner, name)
    if isinstance(found, Response):
        return found
    space, access = found
    # Anything else in the query reads as the default rather than an error page.
    status = status if status in STATUSES else "open"
    kind = kind if kind in KINDS else "all"
    last_page = get_settings().max_discussions_per_space // discussions.PAGE_SIZE
    index = min(int(p), last_page) if p.isdigit() and len(p) <= 6 else 0
    listed = discussions.page(session, space, index=index, kind=kind, status=status, author=None)
    people = discussions.users(session, [d.author_id for d in listed.discussions])
    counts = discussions.comment_counts(session, listed.discussions)
    rows = [
        Row(
            num=d.num,
            title=d.title,
            is_pull_request=d.is_pull_request,
            status=str(d.status),
            author=_name(people.get(d.author_id) if d.author_id else None),
            comments=counts.get(d.id or 0, 0),
            created_at=d.created_at,
        )
        for d in listed.discussions
    ]
    return page(
        request,
        "community.html",
        viewer,
        head=space_page.space_head(session, viewer, space, access, "community"),
        rows=rows,
        status=status,
        kind=kind,
        statuses=STATUSES,
        kinds=KINDS,
        status_badge=STATUS_BADGE,
        count=listed.count,
        start=listed.start,
        index=index,
        has_next=listed.start + len(rows) < listed.count,
    )


# -- opening one --------------------------------------------------------------------------


def _new_form(
    request: Request,
    session: Session,
    viewer: Principal,
    space: Space,
    access: Access,
    *,
    status_code: int = 200,
    error: str = "",
    title: str = "",
    description: str = "",
    pull_request: bool = False,
) -> HTMLResponse:
    return page(
        request,
        "discussion_new.html",
        viewer,
        status_code=status_code,
        head=space_page.space_head(session, viewer, space, access, "community"),
        error=error,
        title=title,
        description=description,
        pull_request=pull_request,
        title_limit=discussions.title_limit(),
    )


@router.get(BASE + "/new", response_class=HTMLResponse)
def new_discussion_form(
    request: Request,
    owner: str,
    name: str,
    pull_request: str = "",
    session: Session = Depends(get_session),
    viewer: Principal | None = Depends(page_viewer),
) -> Response:
    found = _space(request, session, viewer, owner, name, "/new")
    if isinstance(found, Response):
        return found
    if viewer is None:
        return sign_in_redirect(request.url.path)
    space, access = found
    return _new_form(request, session, viewer, space, access, pull_request=bool(pull_request))


@router.post(BASE + "/new")
def open_discussion(
    request: Request,
    owner: str,
    name: str,
    title: str = Form(default=""),
    description: str = Form(default=""),
    pull_request: str = Form(default=""),
    session: Session = Depends(get_session),
    sender: Principal = Depends(form_sender),
) -> Response:
    found = _space(request, session, sender, owner, name, "/new", moved_code=303)
    if isinstance(found, Response):
        return found
    space, access = found
    wants_pr = bool(pull_request)
    try:
        caller = discussions.writer_token(sender)
        clean_title = discussions.clean_title(title)
        first = discussions.clean_comment(description, "first comment")
        if wants_pr:  # a draft whose refs/pr/N starts at main's head, as create_pull_request
            opened = prs.open_pull_request(session, space, caller.user, clean_title, first)
        else:
            opened = discussions.open_discussion(
                session, space, caller.user, clean_title, first, pull_request=False
            )
            session.commit()
    except HubError as exc:
        session.rollback()
        return _new_form(
            request,
            session,
            sender,
            space,
            access,
            status_code=exc.status_code,
            error=str(exc.detail),
            title=title,
            description=description,
            pull_request=wants_pr,
        )
    if opened.is_pull_request:
        said = (
            f"Pull request #{opened.num} is open as a draft: push commits to it with "
            f"git push origin HEAD:{git_prs.ref(opened.num)}"
        )
    else:
        said = f"Discussion #{opened.num} is open."
    return done(_url(space, opened.num), said)


# -- one discussion -----------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """One event of the timeline, as the page shows it."""

    uid: str
    kind: str  # a DiscussionEventKind's value
    author: str
    author_id: int | None
    by_owner: bool
    at: datetime
    raw: str  # a comment's Markdown as written (its edit form starts with it)
    html: str  # ... made safe to show (web/readme.py)
    hidden: bool
    edited: bool
    data: dict[str, Any]  # status-change: status; title-change: from, to; commit: oid, subject
    words: str = ""  # a status change, said: "closed this", "reopened this", ...


@dataclass(frozen=True)
class PullRequest:
    ref: str
    head_sha: str | None
    commits: list[tuple[str, str]]  # (sha, subject) not on the target yet, oldest first
    conflicts: list[str]
    diff: str
    diff_cut: bool


def _timeline(session: Session, space: Space, discussion: Discussion) -> list[Entry]:
    entries = discussions.timeline(session, discussion)
    people = discussions.users(session, [e.author_id for e in entries])
    shown = []
    closed_before = False  # an "open" after a close reopens; before any, it publishes a draft
    for e in entries:
        author = people.get(e.author_id) if e.author_id is not None else None
        is_comment = e.kind == DiscussionEventKind.COMMENT
        data = json.loads(e.data) if not is_comment else {}
        words = ""
        if e.kind == DiscussionEventKind.STATUS_CHANGE:
            words = _status_words(str(data.get("status")), closed_before)
            closed_before = data.get("status") == "closed"
        shown.append(
            Entry(
                uid=e.uid,
                kind=str(e.kind),
                author=_name(author) if e.author_id is not None else "git push",
                author_id=e.author_id,
                by_owner=author is not None and author.id == space.owner_id,
                at=e.created_at,
                raw=e.content or "",
                html=readme.markdown_html(e.content or "") if is_comment and not e.hidden else "",
                hidden=e.hidden,
                edited=e.edited,
                data=data,
                words=words,
            )
        )
    return shown


def _status_words(status: str, closed_before: bool) -> str:
    if status == "merged":
        return "merged this pull request"
    if status == "closed":
        return "closed this"
    return "reopened this" if closed_before else "published this pull request"


def _pull_request(space: Space, discussion: Discussion) -> PullRequest | None:
    if not discussion.is_pull_request:
        return None
    repo = repos.repo_path(space.owner, space.name)
    ref = git_prs.ref(discussion.num)
    head_sha = repos.resolve(repo, ref)
    commits: list[tuple[str, str]] = []
    conflicts: list[str] = []
    diff = ""
    if discussion.status in discussions.OPEN_STATUSES and head_sha:
        commits = git_prs.commits_between(
            repo, repos.resolve(repo, discussion.target_branch), head_sha
        )
        conflicts = git_prs.conflicts(repo, discussion.target_branch, ref)
        diff = git_prs.diff(repo, discussion.target_branch, ref)
    return PullRequest(
        ref=ref,
        head_sha=head_sha,
        commits=commits,
        conflicts=conflicts,
        diff=diff[:PAGE_DIFF_BYTES],
        diff_cut=len(diff) > PAGE_DIFF_BYTES,
    )


def _discussion_page(
    request: Request,
    session: Session,
    viewer: Principal | None,
    space: Space,
    access: Access,
    discussion: Discussion,
    *,
    status_code: int = 200,
    error: str = "",
    draft: str = "",
) -> HTMLResponse:
    writer = discussions.is_writer(viewer, space)
    is_open = discussion.status in discussions.OPEN_STATUSES
    author = discussions.users(session, [discussion.author_id]).get(discussion.author_id or 0)
    mine = viewer is not None and viewer.user.id == discussion.author_id
    public = get_settings().public_url.rstrip("/")
    return page(
        request,
        "discussion.html",
        viewer,
        status_code=status_code,
        head=space_page.space_head(session, viewer, space, access, "community"),
        discussion=discussion,
        status=str(discussion.status),
        status_badge=STATUS_BADGE,
        author=_name(author),
        timeline=_timeline(session, space, discussion),
        pr=_pull_request(space, discussion),
        # What the forms offer; the domain functions check again when they are sent.
        writer=writer,
        may_rename=mine or writer,
        title_limit=discussions.title_limit(),
        may_change_status=(mine or writer) and str(discussion.status) != "merged",
        is_open=is_open,
        may_merge=writer and discussion.is_pull_request and is_open,
        error=error,
        draft=draft,
        clone_url=f"{public}/spaces/{space.owner}/{space.name}",
        list_url=_url(space),
    )


@router.get(BASE + "/{num}", response_class=HTMLResponse)
def discussion_page(
    request: Request,
    owner: str,
    name: str,
    num: str,
    session: Session = Depends(get_session),
    viewer: Principal | None = Depends(page_viewer),
) -> Response:
    found = _space(request, session, viewer, owner, name, f"/{num}")
    if isinstance(found, Response):
        return found
    space, access = found
    discussion = _discussion(request, session, viewer, space, num)
    if isinstance(discussion, Response):
        return discussion
    return _discussion_page(request, session, viewer, space, access, discussion)


def _posted(
    request: Request, session: Session, sender: Principal, owner: str, name: str, num: str
) -> tuple[Space, Access, Discussion] | Response:
    found = _space(request, session, sender, owner, name, f"/{num}", moved_code=303)
    if isinstance(found, Response):
        return found
    space, access = found
    discussion = _discussion(request, session, sender, space, num)
    if isinstance(discussion, Response):
        return discussion
    return space, access, discussion


def _refused(
    request: Request,
    session: Session,
    sender: Principal,
    target: tuple[Space, Access, Discussion],
    exc: HubError,
    draft: str = "",
) -> HTMLResponse:
    """The discussion again, saying why the form was refused (and keeping what was typed)."""
    session.rollback()
    space, access, discussion = target
    return _discussion_page(
        request,
        session,
        sender,
        space,
        access,
        discussion,
        status_code=exc.status_code,
        error=str(exc.detail),
        draft=draft,
    )


@router.post(BASE + "/{num}/comment")
def comment(
    request: Request,
    owner: str,
    name: str,
    num: str,
    text: str = Form(default="", alias="comment"),
    session: Session = Depends(get_session),
    sender: Principal = Depends(form_sender),
) -> Response:
    target = _posted(request, session, sender, owner, name, num)
    if isinstance(target, Response):
        return target
    space, _access, discussion = target
    try:
        caller = discussions.writer_token(sender)
        discussions.comment(
            session, space, discussion, caller.user, discussions.clean_comment(text)
        )
        session.commit()
    except HubError as exc:
        return _refused(request, session, sender, target, exc, draft=text)
    return done(_url(space, discussion.num), "Your comment is posted.")


@router.post(BASE + "/{num}/status")
def change_status(
    request: Request,
    owner: str,
    name: str,
    num: str,
    status: str = Form(default=""),
    session: Session = Depends(get_session),
    sender: Principal = Depends(form_sender),
) -> Response:
    target = _posted(request, session, sender, owner, name, num)
    if isinstance(target, Response):
        return target
    space, _access, discussion = target
    was_draft = str(discussion.status) == "draft"
    try:
        caller = discussions.writer_token(sender)
        discussions.change_status(session, space, discussion, caller, status, None)
        session.commit()
    except HubError as exc:
        return _refused(request, session, sender, target, exc)
    what = "Pull request" if discussion.is_pull_request else "Discussion"
    if status == "closed":
        said = f"{what} #{discussion.num} is closed."
    elif was_draft:
        said = f"{what} #{discussion.num} is published: it is open for review."
    else:
        said = f"{what} #{discussion.num} is open again."
    return done(_url(space, discussion.num), said)


@router.post(BASE + "/{num}/merge")
def merge(
    request: Request,
    owner: str,
    name: str,
    num: str,
    session: Session = Depends(get_session),
    sender: Principal = Depends(form_sender),
) -> Response:
    target = _posted(request, session, sender, owner, name, num)
    if isinstance(target, Response):
        return target
    space, _access, discussion = target
    try:
        caller = discussions.writer_token(sender)
        merged = prs.merge(session, space, discussion, caller, None)
    except HubError as exc:
        return _refused(request, session, sender, target, exc)
    if merged.already_merged:
        how = "main had its commits already"
    else:
        how = "fast-forward" if merged.fast_forward else "a merge commit"
    return done(
        _url(space, discussion.num),
        f"Pull request #{discussion.num} is merged into main ({how}, {merged.sha[:7]}); "
        "the Space builds it as it would a push.",
    )


@router.post(BASE + "/{num}/comment/{uid}/edit")
def edit_comment(
    request: Request,
    owner: str,
    name: str,
    num: str,
    uid: str,
    text: str = Form(default="", alias="comment"),
    session: Session = Depends(get_session),
    sender: Principal = Depends(form_sender),
) -> Response:
    """Its author's new text; the old one stays in its history (as edit_discussion_comment)."""
    target = _posted(request, session, sender, owner, name, num)
    if isinstance(target, Response):
        return target
    space, _access, discussion = target
    try:
        caller = discussions.writer_token(sender)
        entry = discussions.find_comment(session, discussion, uid[:64])
        discussions.edit_comment(
            session, space, discussion, entry, caller, discussions.clean_comment(text)
        )
        session.commit()
    except HubError as exc:
        return _refused(request, session, sender, target, exc)
    return done(_url(space, discussion.num), "Your comment is changed.")


@router.post(BASE + "/{num}/comment/{uid}/hide")
def hide_comment(
    request: Request,
    owner: str,
    name: str,
    num: str,
    uid: str,
    session: Session = Depends(get_session),
    sender: Principal = Depends(form_sender),
) -> Response:
    """A writer hides a comment for good (as hide_discussion_comment)."""
    target = _posted(request, session, sender, owner, name, num)
    if isinstance(target, Response):
        return target
    space, _access, discussion = target
    try:
        caller = discussions.writer_token(sender)
        entry = discussions.find_comment(session, discussion, uid[:64])
        discussions.hide_comment(session, space, discussion, entry, caller)
        session.commit()
    except HubError as exc:
        return _refused(request, session, sender, target, exc)
    return done(_url(space, discussion.num), "The comment is hidden.")


@router.post(BASE + "/{num}/title")
def rename(
    request: Request,
    owner: str,
    name: str,
    num: str,
    title: str = Form(default=""),
    session: Session = Depends(get_session),
    sender: Principal = Depends(form_sender),
) -> Response:
    target = _posted(request, session, sender, owner, name, num)
    if isinstance(target, Response):
        return target
    space, _access, discussion = target
    try:
        caller = discussions.writer_token(sender)
        discussions.rename(session, space, discussion, caller, discussions.clean_title(title))
        session.commit()
    except HubError as exc:
        return _refused(request, session, sender, target, exc)
    return done(_url(space, discussion.num), f"#{discussion.num} is renamed.")
