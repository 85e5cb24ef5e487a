"""A branch's history for the Hub API: pages of `git log` (list_repo_commits), and the
super-squash that replaces a branch's history with one commit of its current tree.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from orchestrator.repos import refs
from orchestrator.repos import store as repos
from orchestrator.repos.tree import BACKGROUND

# Fields and records of the `git log` output: unit and record separators, which a commit
# message can hold only if someone put them there on purpose (then the record is skipped).
_FIELD, _RECORD = "\x1f", "\x1e"
_FORMAT = _FIELD.join(["%H", "%an", "%ae", "%cI", "%B"]) + _RECORD


@dataclass(frozen=True)
class Commit:
    id: str
    authors: list[str]
    date: str  # ISO 8601, as git prints it (the caller formats it)
    title: str  # the message's first line
    message: str  # the rest, without the blank line after the title


def author_name(name: str, email: str) -> str:
    """Who a commit is by, as the Hub lists it: the Spaceport user of an API commit,
    else the name git recorded."""
    if email.endswith(repos.NOREPLY):
        return email.removesuffix(repos.NOREPLY)
    return name or email


def page(repo: Path, sha: str, offset: int, limit: int) -> tuple[list[Commit], bool]:
    """Commits `offset` to `offset + limit` of `sha`'s history, newest first, and whether
    more follow. git stops after them: a page costs its own commits (and the skipped)."""
    result = subprocess.run(
        [*BACKGROUND, "git", "-C", str(repo), "log", f"--format={_FORMAT}"]
        + [f"--skip={offset}", f"--max-count={limit + 1}", sha, "--"],
        capture_output=True,
        check=False,
    )
    if result.returncode != 0:
        raise repos.GitError(f"git log {sha}: {result.stderr.decode(errors='replace').strip()}")
    commits = []
    for record in result.stdout.decode("utf-8", errors="replace").split(_RECORD):
        parts = record.lstrip("\n").split(_FIELD)
        if len(parts) != 5:
            continue
        oid, name, email, date, text = parts
        title, _, rest = text.strip().partition("\n")
        commits.append(Commit(oid, [author_name(name, email)], date, title.strip(), rest.strip()))
    return commits[:limit], len(commits) > limit


def squash(repo: Path, ref: str, head: str, message: str, author: tuple[str, str]) -> str:
    """Replace `ref`'s history with one commit (no parent) of `head`'s tree, provided
    `ref` still points at `head`. Returns the new commit's id. The tree is the same, so
    a Space's image built for it is reused."""
    tree = repos.tree_id(repo, head)
    sha = repos.commit_tree(repo, tree, [], message.rstrip() + "\n", author)
    refs.move(repo, ref, sha, head, "super-squash (api)")
    return sha
