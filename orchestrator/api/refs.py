"""Branches, tags and history of a Space through the Hub API, as huggingface_hub calls
them: list_repo_refs, create_branch / delete_branch, create_tag / delete_tag,
list_repo_commits and super_squash_history.

The refs are the Space repo's own git refs (orchestrator/repos/refs.py), so what these
routes make is what `git fetch` sees, and what a `git push` makes is what they list.
Only `main` is deployed: a squash of main deploys its new commit like a push
(deploy.deploy_commit); nothing else here touches the running Space.
"""

from __future__ import annotations

import html
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Body, Depends, Query, Request, Response
from sqlmodel import Session

from orchestrator.api import bodies, wire
from orchestrator.api.bodies import MAX_INT
from orchestrator.api.deps import current_principal, origin, require_principal, visible_space
from orchestrator.api.errors import ERROR_RESPONSES, HubError
from orchestrator.api.files import flag, revision_not_found
from orchestrator.api.timefmt import hub_time
from orchestrator.builds.deploy import deploy_commit
from orchestrator.core import events
from orchestrator.core.auth import Access, Principal
from orchestrator.core.db import get_session
from orchestrator.core.events import EventKind
from orchestrator.core.limits import TOO_MANY, check_build_room
from orchestrator.core.models import Space
from orchestrator.core.settings import get_settings
from orchestrator.repos import history, refs
from orchestrator.repos import store as repos
from orchestrator.repos.refs import RefError

router = APIRouter(prefix="/api/spaces/{owner}/{name}", responses=ERROR_RESPONSES)

# Commits per page of list_repo_commits; the client follows the Link header.
COMMITS_PAGE = 50
EXPANDABLE = {"formatted"}


def _repo(space: Space) -> Path:
    return repos.repo_path(space.owner, space.name)


def _writable(
    session: Session, principal: Principal | None, owner: str, name: str
) -> tuple[Space, Principal]:
    caller = require_principal(principal)
    return visible_space(session, caller, owner, name, need=Access.WRITE), caller


def _refused(exc: RefError) -> HubError:
    return HubError(exc.status, str(exc), exc.code)


def _ref_json(ref: refs.Ref) -> wire.GitRef:
    return wire.GitRef(name=ref.name, ref=ref.ref, target_commit=ref.target)


def _plain_name(kind: str, name: str) -> str:
    """A branch or tag named in a URL to delete or squash: a plain name, as the client
    sends it (`refs/heads/x` is not one)."""
    if not name or name.startswith(("refs/", "-")) or "\0" in name:
        raise HubError(400, f"Invalid reference for a {kind}: {name!r}")
    return name


def _check_room(space: Space, found: refs.Refs) -> None:
    most = get_settings().max_refs_per_space
    if found.count() >= most:
        raise HubError(
            429,
            f"{space.full_name} already has {found.count()} branches and tags, the most "
            "allowed (SPACEPORT_MAX_REFS_PER_SPACE): delete some first",
            TOO_MANY,
        )


def _start(space: Space, rev: str) -> str:
    sha = refs.resolve_commit(_repo(space), rev)
    if sha is None:
        raise revision_not_found(space, rev)
    return sha


@router.get("/refs", response_model=wire.GitRefs)
def list_refs(
    owner: str,
    name: str,
    include_prs: str | None = None,
    session: Session = Depends(get_session),
    principal: Principal | None = Depends(current_principal),
) -> wire.GitRefs:
    """list_repo_refs: branches, tags, converts, and with `include_prs` the pull
    requests' `refs/pr/N`."""
    space = visible_space(session, principal, owner, name)
    found = refs.list_refs(_repo(space))
    return wire.GitRefs(
        branches=[_ref_json(r) for r in found.branches],
        converts=[_ref_json(r) for r in found.converts],
        tags=[_ref_json(r) for r in found.tags],
        pull_requests=[_ref_json(r) for r in found.pull_requests] if flag(include_prs) else None,
    )


@router.post("/branch/{branch:path}", response_model=wire.GitRef)
def create_branch(
    owner: str,
    name: str,
    branch: str,
    body: dict[str, Any] | None = Body(default=None),
    session: Session = Depends(get_session),
    principal: Principal | None = Depends(current_principal),
) -> wire.GitRef:
    """create_branch: from `startingPoint` (a branch, tag or commit; default main). An
    existing branch is a 409, which the client's `exist_ok` reads."""
    asked = bodies.check(bodies.CreateBranch, body or {})
    space, caller = _writable(session, principal, owner, name)
    try:
        refs.check_name("branch", branch)
    except RefError as exc:
        raise _refused(exc) from exc
    repo = _repo(space)
    start = asked.startingPoint or "main"
    sha = _start(space, start)
    ref = f"{refs.BRANCHES}{branch}"
    if refs.value(repo, ref) is not None:
        raise HubError(409, f"Reference {ref} already exists")
    _check_room(space, refs.list_refs(repo))
    try:
        refs.create(repo, ref, sha, "branch (api)")
    except RefError as exc:
        raise _refused(exc) from exc
    events.record(
        session,
        EventKind.BRANCH_CREATED,
        caller.user.name,
        space,
        ref=ref,
        commit=sha,
        **{"from": start},
    )
    session.commit()
    return wire.GitRef(name=branch, ref=ref, target_commit=sha)


@router.delete("/branch/{branch:path}", response_model=wire.GitRef)
def delete_branch(
    owner: str,
    name: str,
    branch: str,
    session: Session = Depends(get_session),
    principal: Principal | None = Depends(current_principal),
) -> wire.GitRef:
    """delete_branch; never main, the branch the Space is deployed from."""
    space, caller = _writable(session, principal, owner, name)
    ref = f"{refs.BRANCHES}{_plain_name('branch', branch)}"
    if ref == repos.DEPLOY_REF:
        raise HubError(
            403, f"Cannot delete {ref}: it is the branch {space.full_name} is deployed from"
        )
    try:
        old = refs.delete(_repo(space), ref)
    except RefError as exc:
        raise _refused(exc) from exc
    events.record(session, EventKind.BRANCH_DELETED, caller.user.name, space, ref=ref, commit=old)
    session.commit()
    return wire.GitRef(name=branch, ref=ref, target_commit=old)


@router.post("/tag/{revision:path}", response_model=wire.GitRef)
def create_tag(
    owner: str,
    name: str,
    revision: str,
    body: dict[str, Any] = Body(...),
    session: Session = Depends(get_session),
    principal: Principal | None = Depends(current_principal),
) -> wire.GitRef:
    """create_tag: `tag` on `revision`; with a `message`, an annotated tag. An existing
    tag is a 409 (the client's `exist_ok`)."""
    asked = bodies.check(bodies.CreateTag, body)
    space, caller = _writable(session, principal, owner, name)
    try:
        refs.check_name("tag", asked.tag)
    except RefError as exc:
        raise _refused(exc) from exc
    repo = _repo(space)
    sha = _start(space, revision)
    ref = f"{refs.TAGS}{asked.tag}"
    if refs.value(repo, ref) is not None:
        raise HubError(409, f"Reference {ref} already exists")
    _check_room(space, refs.list_refs(repo))
    tagger = repos.identity(caller.user.name)
    try:
        refs.create_tag(repo, asked.tag, sha, asked.message, tagger)
    except RefError as exc:
        raise _refused(exc) from exc
    events.record(
        session,
        EventKind.TAG_CREATED,
        caller.user.name,
        space,
        ref=ref,
        commit=sha,
        **{"from": revision},
    )
    session.commit()
    return wire.GitRef(name=asked.tag, ref=ref, target_commit=sha)


@router.delete("/tag/{tag:path}", response_model=wire.GitRef)
def delete_tag(
    owner: str,
    name: str,
    tag: str,
    session: Session = Depends(get_session),
    principal: Principal | None = Depends(current_principal),
) -> wire.GitRef:
    space, caller = _writable(session, principal, owner, name)
    ref = f"{refs.TAGS}{_plain_name('tag', tag)}"
    repo = _repo(space)
    target = refs.resolve_commit(repo, ref)
    try:
        old = refs.delete(repo, ref)
    except RefError as exc:
        raise _refused(exc) from exc
    events.record(
        session, EventKind.TAG_DELETED, caller.user.name, space, ref=ref, commit=target or old
    )
    session.commit()
    return wire.GitRef(name=tag, ref=ref, target_commit=target or old)


def _expand(request: Request) -> set[str]:
    asked = {
        item
        for key in ("expand[]", "expand")
        for value in request.query_params.getlist(key)
        for item in value.split(",")
        if item
    }
    unknown = asked - EXPANDABLE
    if unknown:
        raise HubError(
            400,
            f"Unknown expand value(s) {sorted(unknown)}: list_repo_commits expands only "
            f"{sorted(EXPANDABLE)}",
        )
    return asked


def _formatted(text: str) -> str:
    """A title or message as HTML: escaped, paragraphs and line breaks kept."""
    paragraphs = [p for p in text.split("\n\n") if p.strip()]
    return "".join(f"<p>{html.escape(p.strip()).replace(chr(10), '<br>')}</p>" for p in paragraphs)


@router.get("/commits/{revision:path}", response_model=list[wire.GitCommit])
def list_commits(
    owner: str,
    name: str,
    revision: str,
    request: Request,
    response: Response,
    p: int = Query(default=0, ge=0, le=MAX_INT // COMMITS_PAGE),
    session: Session = Depends(get_session),
    principal: Principal | None = Depends(current_principal),
) -> list[wire.GitCommit]:
    """list_repo_commits: `revision`'s history, newest first, a page at a time (`?p=`).
    While more follow, `Link: <...>; rel="next"` names the next page of the same commit,
    so a branch that moves meanwhile doesn't shift the pages."""
    space = visible_space(session, principal, owner, name)
    expand = _expand(request)
    repo = _repo(space)
    sha = refs.resolve_commit(repo, revision)
    if sha is None:
        if revision == "main" and repos.resolve(repo, repos.DEPLOY_REF) is None:
            return []  # a Space created without files: no commit yet
        raise revision_not_found(space, revision)
    commits, more = history.page(repo, sha, p * COMMITS_PAGE, COMMITS_PAGE)
    if more:
        query = [("p", str(p + 1))] + [("expand[]", e) for e in sorted(expand)]
        url = f"{origin(request)}/api/spaces/{quote(space.owner)}/{quote(space.name)}"
        response.headers["Link"] = f'<{url}/commits/{sha}?{urlencode(query)}>; rel="next"'
    return [
        wire.GitCommit(
            id=c.id,
            authors=[wire.CommitAuthor(user=a) for a in c.authors],
            date=_date(c.date),
            title=c.title,
            message=c.message,
            formatted=wire.CommitFormatted(title=_formatted(c.title), message=_formatted(c.message))
            if "formatted" in expand
            else None,
        )
        for c in commits
    ]


def _date(iso: str) -> str:
    return hub_time(datetime.fromisoformat(iso)) or iso


@router.post("/super-squash/{branch:path}", response_model=wire.GitRef)
def super_squash(
    owner: str,
    name: str,
    branch: str,
    body: dict[str, Any] | None = Body(default=None),
    session: Session = Depends(get_session),
    principal: Principal | None = Depends(current_principal),
) -> wire.GitRef:
    """super_squash_history: the branch becomes one commit of its current tree. Squashing
    main deploys that commit like a push; its tree is unchanged, so its image is reused."""
    asked = bodies.check(bodies.SuperSquash, body or {})
    space, caller = _writable(session, principal, owner, name)
    repo = _repo(space)
    ref = f"{refs.BRANCHES}{_plain_name('branch', branch)}"
    head = repos.resolve(repo, ref)
    if head is None:
        if refs.value(repo, f"{refs.TAGS}{branch}") is not None:
            raise HubError(
                400, f"Invalid reference for a branch: {branch} is a tag; tags can't be squashed"
            )
        raise revision_not_found(space, branch)
    if ref == repos.DEPLOY_REF:
        check_build_room(session, space)
    message = asked.message or f"Super-squash branch '{branch}'"
    author = repos.identity(caller.user.name)
    try:
        sha = history.squash(repo, ref, head, message, author)
    except RefError as exc:
        raise _refused(exc) from exc
    events.record(
        session,
        EventKind.BRANCH_SQUASHED,
        caller.user.name,
        space,
        ref=ref,
        commit=sha,
        **{"from": head},
    )
    if ref == repos.DEPLOY_REF:
        deploy_commit(session, space, sha, actor=caller.user.name)  # commits the event too
    else:
        session.commit()
    return wire.GitRef(name=branch, ref=ref, target_commit=sha)
