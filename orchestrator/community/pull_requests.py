"""Pull requests: a discussion with commits, kept as refs/pr/{num} in the Space's repo.

How one gets commits: `create_pull_request` opens a draft whose ref starts at main's head;
`create_commit(..., create_pr=True)` opens one (open, not draft) and commits to it; a
commit with `revision="refs/pr/N"` and `git push origin HEAD:refs/pr/N` add to it (its
author or the repo's writers, while it is open or a draft). Each commit adds a `commit`
event. Nothing on refs/pr/* deploys; merging does (`merge`: main moves, then
deploy_commit, exactly as a push to main).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sqlmodel import Session, select

from orchestrator.api.deps import visible_space
from orchestrator.api.errors import HubError
from orchestrator.builds.deploy import deploy_commit
from orchestrator.community import discussions
from orchestrator.core.auth import Access, Principal
from orchestrator.core.limits import check_build_room
from orchestrator.core.models import Discussion, DiscussionStatus, Space, User
from orchestrator.repos import pull_requests as git_prs
from orchestrator.repos import store as repos


def open_pull_request(
    session: Session, space: Space, author: User, title: str, description: str
) -> Discussion:
    """create_pull_request: a draft whose ref starts at main's head. Committed."""
    repo = repos.repo_path(space.owner, space.name)
    head = repos.resolve(repo, repos.DEPLOY_REF)
    if head is None:
        raise HubError(400, f"{space.full_name} has no commit on main to open a pull request from")
    discussion = discussions.open_discussion(
        session,
        space,
        author,
        title,
        description,
        pull_request=True,
        status=DiscussionStatus.DRAFT,
    )
    with _ref_undone_on_failure(session, repo, discussion.num):
        git_prs.move_ref(repo, git_prs.ref(discussion.num), head, None, "pull request (api)")
        session.commit()
    return discussion


@contextlib.contextmanager
def _ref_undone_on_failure(session: Session, repo: Path, num: int) -> Iterator[None]:
    try:
        yield
    except BaseException:
        session.rollback()
        with contextlib.suppress(repos.GitError):
            repos.git(repo, "update-ref", "-d", git_prs.ref(num))
        raise


# -- commits through the Hub API ---------------------------------------------------------


@dataclass
class CommitTarget:
    """Where a create_commit that concerns a pull request writes: a new one
    (create_pr=True) or refs/pr/N."""

    space: Space
    caller: Principal
    repo: Path
    discussion: Discussion | None  # None until `begin` opens it (create_pr)
    head: str | None
    created: bool = field(default=False)

    @property
    def ref(self) -> str:
        assert self.discussion is not None
        return git_prs.ref(self.discussion.num)

    def url(self, origin: str) -> str:
        """pullRequestUrl: huggingface_hub takes the number from `.../discussions/N`."""
        assert self.discussion is not None
        space, num = self.space, self.discussion.num
        return f"{origin}/spaces/{space.owner}/{space.name}/discussions/{num}"


def commit_target(
    session: Session,
    principal: Principal | None,
    owner: str,
    name: str,
    rev: str,
    create_pr: str | None,
) -> CommitTarget | None:
    """The pull request a commit (or its preupload) goes to, or None for a branch commit.
    Anyone who can see the Space may open one; refs/pr/N takes its author or writers."""
    creates = bool(create_pr) and create_pr.lower() in ("1", "true")
    num = git_prs.number(rev)
    if not creates and num is None:
        return None
    caller = discussions.writer_token(principal)
    space = visible_space(session, caller, owner, name, need=Access.READ)
    repo = repos.repo_path(space.owner, space.name)
    if creates:
        if rev not in ("main", repos.DEPLOY_REF):
            raise HubError(400, f"create_pr opens a pull request against main, not {rev!r}")
        return CommitTarget(space, caller, repo, None, repos.resolve(repo, repos.DEPLOY_REF))
    assert num is not None
    discussion = discussions.get(session, space, num)
    discussions.may_commit(caller, space, discussion)
    return CommitTarget(space, caller, repo, discussion, repos.resolve(repo, git_prs.ref(num)))


def begin(
    target: CommitTarget, session: Session, title: str, description: str, parent: str | None
) -> None:
    """For create_pr: open the pull request and make its ref at `parent` (the commit's
    parentCommit) or main's head. Flushed, not committed: `finish` or `abort` follow."""
    if target.discussion is not None:
        return
    start = target.head
    if parent:
        start = repos.resolve(target.repo, parent)
        if start is None:
            raise HubError(404, f"parentCommit {parent} is not in the repo", "RevisionNotFound")
    if start is None:
        raise HubError(
            400, f"{target.space.full_name} has no commit on main to open a pull request from"
        )
    title, description = discussions.fitted(title, description)
    target.discussion = discussions.open_discussion(
        session, target.space, target.caller.user, title, description, pull_request=True
    )
    git_prs.move_ref(target.repo, target.ref, start, None, "pull request (api)")
    target.head, target.created = start, True


def finish(target: CommitTarget, session: Session, sha: str) -> None:
    """The commit landed on the ref: its event, and the transaction committed."""
    assert target.discussion is not None
    subject = git_prs.commits_between(target.repo, target.head, sha)
    discussions.add_commits(
        session,
        target.space,
        target.discussion,
        target.caller.user,
        target.caller.user.name,
        subject,
    )
    session.commit()


def abort(target: CommitTarget, session: Session) -> None:
    session.rollback()
    if target.created and target.discussion is not None:
        with contextlib.suppress(repos.GitError):
            repos.git(target.repo, "update-ref", "-d", target.ref)


# -- git pushes --------------------------------------------------------------------------


def check_push(
    session: Session,
    space: Space,
    principal_user: User,
    writer: bool,
    refs: list[tuple[str, str, str]],
) -> None:
    """Before git takes a push: refs/pr/N must be an open (or draft) pull request of this
    Space, updated (never deleted) by its author or a writer; a reader may push nothing
    else. HubError says why."""
    for _old, new, refname in refs:
        num = git_prs.number(refname) if refname.startswith("refs/pr/") else None
        if num is None:
            if refname.startswith("refs/pr/"):
                raise HubError(403, f"{refname} is not a pull request ref (refs/pr/<number>)")
            if not writer:
                raise HubError(
                    403,
                    f"You don't have write access to {space.full_name}: push only to a pull "
                    "request of yours (git push origin HEAD:refs/pr/<number>)",
                )
            continue
        if new == repos.ZERO_SHA:
            raise HubError(403, f"{refname} can't be deleted: close pull request #{num} instead")
        try:
            discussion = discussions.get(session, space, num)
        except HubError as exc:
            raise HubError(
                403, f"{refname}: there is no pull request #{num}; open one first"
            ) from exc
        if discussion.status not in discussions.OPEN_STATUSES or not discussion.is_pull_request:
            raise HubError(403, f"{refname}: #{num} is not an open pull request")
        if not writer and discussion.author_id != principal_user.id:
            raise HubError(403, f"{refname}: pull request #{num} is not yours")


def pushed(session: Session, space: Space, updates: list[list[str]], pusher: str) -> None:
    """After a push (the post-receive hook): the commits each refs/pr/N gained, as commit
    events of its pull request, committed (nothing to do for a push without refs/pr/*)."""
    if not any(refname.startswith("refs/pr/") for _old, _new, refname in updates):
        return  # most pushes: nothing to look up
    repo = repos.repo_path(space.owner, space.name)
    user = session.exec(select(User).where(User.name == pusher)).first()
    for old, new, refname in updates:
        num = git_prs.number(refname) if refname.startswith("refs/pr/") else None
        if num is None or new == repos.ZERO_SHA:
            continue
        try:
            discussion = discussions.get(session, space, num)
        except HubError:
            continue
        commits = git_prs.commits_between(repo, None if old == repos.ZERO_SHA else old, new)
        discussions.add_commits(session, space, discussion, user, pusher, commits)
    session.commit()


# -- merging -----------------------------------------------------------------------------


def merge(
    session: Session, space: Space, discussion: Discussion, principal: Principal, note: str | None
) -> git_prs.Merged:
    """refs/pr/N into main, by the repo's writers: a fast-forward or a merge commit (409 on
    a conflict), then the deploy a push to main makes."""
    if not discussion.is_pull_request:
        raise HubError(400, f"#{discussion.num} is a discussion, not a pull request")
    if not discussions.is_writer(principal, space):
        raise HubError(
            403, f"Only those with write access to {space.full_name} merge pull requests"
        )
    if discussion.status not in discussions.OPEN_STATUSES:
        raise HubError(
            400, f"Pull request #{discussion.num} is {discussion.status}: reopen it to merge"
        )
    check_build_room(session, space)
    repo = repos.repo_path(space.owner, space.name)
    message = f"Merge pull request #{discussion.num}: {discussion.title}\n"
    author = repos.identity(principal.user.name)
    try:
        merged = git_prs.merge(
            repo, discussion.target_branch, git_prs.ref(discussion.num), message, author
        )
    except git_prs.MergeConflict as exc:
        raise HubError(
            409,
            f"Pull request #{discussion.num} conflicts with main in {', '.join(exc.files)}: "
            "merge main into it and push again",
        ) from exc
    except git_prs.RefMoved as exc:
        raise HubError(
            409, f"main moved while #{discussion.num} was merged: try again ({exc})"
        ) from exc
    discussions.mark_merged(
        session, space, discussion, principal, merged.sha, merged.fast_forward, note
    )
    session.commit()
    if not merged.already_merged:
        deploy_commit(session, space, merged.sha, actor=principal.user.name)  # as a push to main
    return merged
