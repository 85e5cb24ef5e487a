"""The git side of pull requests: each is the ref refs/pr/{num} in the Space's bare repo
(as on the Hub, so `git fetch origin refs/pr/1` and `git push origin HEAD:refs/pr/1` work),
and merging one moves main without a checkout.

A merge fast-forwards main when the pull request's head descends from it; otherwise git
merges the two trees in memory (`git merge-tree --write-tree`, git >= 2.38) and a merge
commit is written with commit-tree. Every ref is moved with update-ref naming its old
value, so a push that lands meanwhile makes the merge fail instead of being overwritten.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from orchestrator.repos import store as repos

PR_REF = re.compile(r"^refs/pr/([1-9][0-9]{0,8})$")
DIFF_LIMIT = 1 << 20  # bytes of diff a discussion's details carry at most


class MergeConflict(Exception):
    """The pull request and its target changed the same lines: `files` says which."""

    def __init__(self, files: list[str]) -> None:
        super().__init__(", ".join(files))
        self.files = files


class RefMoved(Exception):
    """A ref moved while it was being updated (a push or a commit landed first)."""


@dataclass(frozen=True)
class Merged:
    sha: str  # main's new head
    fast_forward: bool
    already_merged: bool = False  # nothing to merge: the PR's commits are in main already


def ref(num: int) -> str:
    return f"refs/pr/{num}"


def number(refname: str) -> int | None:
    """N of `refs/pr/N` (also accepted without `refs/`), else None."""
    match = PR_REF.match(refname if refname.startswith("refs/") else f"refs/{refname}")
    return int(match.group(1)) if match else None


def _run(repo: Path, *args: str, data: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["git", "-C", str(repo), *args], input=data, capture_output=True, check=False
    )


def move_ref(repo: Path, refname: str, new: str, old: str | None, reason: str) -> None:
    """Point `refname` at `new`, provided it is still at `old` (None: must not exist)."""
    result = _run(repo, "update-ref", "-m", reason, refname, new, old or repos.ZERO_SHA)
    if result.returncode != 0:
        raise RefMoved(result.stderr.decode(errors="replace").strip())


def is_ancestor(repo: Path, ancestor: str, descendant: str) -> bool:
    return _run(repo, "merge-base", "--is-ancestor", ancestor, descendant).returncode == 0


def commits_between(
    repo: Path, old: str | None, new: str, limit: int = 100
) -> list[tuple[str, str]]:
    """(sha, subject) of the commits `new` adds to `old` (None: to nothing), oldest first;
    at most `limit`, the newest ones."""
    span = [new, f"^{old}"] if old else [new]
    result = _run(repo, "log", f"--max-count={limit}", "--format=%H%x00%s", *span, "--")
    if result.returncode != 0:
        return []
    lines = [line.split("\0", 1) for line in result.stdout.decode(errors="replace").splitlines()]
    return [(sha, subject) for sha, subject in reversed([tuple(p) for p in lines if len(p) == 2])]


def merge_tree(repo: Path, base: str, head: str) -> tuple[str | None, list[str]]:
    """The tree of `base` and `head` merged, or (None, the conflicted paths)."""
    result = _run(repo, "merge-tree", "--write-tree", "--name-only", "-z", base, head)
    if result.returncode == 0:
        return result.stdout.split(b"\0", 1)[0].decode().strip(), []
    if result.returncode == 1:  # conflicts: the tree, then the conflicted paths, then messages
        fields = result.stdout.decode(errors="replace").split("\0")
        files: list[str] = []
        for path in fields[1:]:
            if not path:  # an empty field ends the list of paths
                break
            files.append(path)
        return None, sorted(set(files))
    raise repos.GitError(f"git merge-tree: {result.stderr.decode(errors='replace').strip()}")


def conflicts(repo: Path, base_ref: str, head_ref: str) -> list[str]:
    """The files that would conflict if `head_ref` were merged into `base_ref` now."""
    base, head = repos.resolve(repo, base_ref), repos.resolve(repo, head_ref)
    if base is None or head is None or is_ancestor(repo, base, head):
        return []
    return merge_tree(repo, base, head)[1]


def diff(repo: Path, base_ref: str, head_ref: str) -> str:
    """What the pull request changes: `git diff base...head`, cut at DIFF_LIMIT bytes."""
    base, head = repos.resolve(repo, base_ref), repos.resolve(repo, head_ref)
    if base is None or head is None:
        return ""
    result = _run(repo, "diff", "--no-color", "--no-ext-diff", f"{base}...{head}")
    return result.stdout[:DIFF_LIMIT].decode(errors="replace") if result.returncode == 0 else ""


def merge(
    repo: Path, base_ref: str, head_ref: str, message: str, author: tuple[str, str]
) -> Merged:
    """Merge `head_ref` into `base_ref`: a fast-forward when possible, else a merge commit
    made without a checkout. MergeConflict when the trees conflict, RefMoved when the
    target moved meanwhile."""
    base, head = repos.resolve(repo, base_ref), repos.resolve(repo, head_ref)
    if head is None:
        raise repos.GitError(f"{head_ref} does not exist")
    if base is None:  # an empty main: the pull request becomes it
        move_ref(repo, base_ref, head, None, f"merge {head_ref} (api)")
        return Merged(head, fast_forward=True)
    if is_ancestor(repo, head, base):
        return Merged(base, fast_forward=True, already_merged=True)
    if is_ancestor(repo, base, head):
        move_ref(repo, base_ref, head, base, f"merge {head_ref}: fast-forward (api)")
        return Merged(head, fast_forward=True)
    tree, conflicted = merge_tree(repo, base, head)
    if tree is None:
        raise MergeConflict(conflicted)
    sha = repos.commit_tree(repo, tree, [base, head], message, author)
    move_ref(repo, base_ref, sha, base, f"merge {head_ref} (api)")
    return Merged(sha, fast_forward=False)
