"""Branches and tags of a Space's bare repo, read and written with git's own plumbing
(`for-each-ref`, `update-ref`, `mktag`): the refs the Hub API lists and changes, and
the same refs `git fetch` and `git push` see. Nothing is checked out.

Every change names the value it expects the ref to have (the zero id for "must not
exist"), so a push landing meanwhile makes the change fail instead of being overwritten.
"""

from __future__ import annotations

import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.repos import store as repos
from orchestrator.repos import tree as repo_tree

BRANCHES = "refs/heads/"
TAGS = "refs/tags/"
PULL_REQUESTS = "refs/pr/"
CONVERTS = "refs/convert/"
MAX_NAME_LENGTH = 255
# An abbreviated commit id, as create_tag(revision="1a2b3c4") may send.
SHORT_SHA = re.compile(r"^[0-9a-f]{4,39}$")


class RefError(Exception):
    """A ref change git (or the Hub's rules) refuses; `status` and `code` are for the
    HTTP answer."""

    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


@dataclass(frozen=True)
class Ref:
    name: str  # without its prefix: `main`, `v1`, `1` (a pull request)
    ref: str  # the full ref: `refs/heads/main`
    target: str  # the commit it names (an annotated tag's commit, not the tag object)


@dataclass
class Refs:
    branches: list[Ref] = field(default_factory=list)
    tags: list[Ref] = field(default_factory=list)
    converts: list[Ref] = field(default_factory=list)
    pull_requests: list[Ref] = field(default_factory=list)

    def count(self) -> int:
        """What the per-Space limit counts: branches and tags."""
        return len(self.branches) + len(self.tags)


def list_refs(repo: Path) -> Refs:
    """Every branch, tag, convert and pull-request ref, sorted by name within each kind."""
    found = Refs()
    kinds = {
        BRANCHES: found.branches,
        TAGS: found.tags,
        CONVERTS: found.converts,
        PULL_REQUESTS: found.pull_requests,
    }
    # %(*objectname): what an annotated tag points at (empty for anything else).
    out = repos.git(
        repo,
        "for-each-ref",
        "--format=%(refname)%00%(objectname)%00%(*objectname)%00%(objecttype)",
        *kinds,
    )
    for line in out.decode("utf-8", errors="surrogateescape").splitlines():
        ref, oid, peeled, kind = line.split("\0")
        if kind not in ("commit", "tag") or (kind == "tag" and not peeled):
            continue  # a tag of a tree or blob: not a revision the Hub API knows
        for prefix, listed in kinds.items():
            if ref.startswith(prefix):
                listed.append(Ref(ref.removeprefix(prefix), ref, peeled or oid))
    # Pull requests in their numeric order (refs/pr/10 after refs/pr/9).
    found.pull_requests.sort(
        key=lambda r: (0, int(r.name), "") if r.name.isdigit() else (1, 0, r.name)
    )
    return found


def check_name(kind: str, name: str) -> str:
    """`name` as a new branch or tag name (`kind`), or RefError 400 that says what to fix.

    git's own rules (`git check-ref-format`), plus what the Hub API can address later:
    no `refs/...` (the Hub: "Invalid reference for a branch"), no name that reads as a
    commit id or as `HEAD`, and only the characters revisions may have in its URLs
    (orchestrator/repos/tree.REF_PATTERN), so every ref made here resolves there.
    """
    problem = None
    if not name:
        problem = "is empty"
    elif len(name) > MAX_NAME_LENGTH:
        problem = f"is longer than {MAX_NAME_LENGTH} characters"
    elif name.startswith("refs/") or name == "HEAD":
        problem = "is a full ref or HEAD, not a plain name (use e.g. 'feature' or 'v1.0')"
    elif repo_tree.SHA_PATTERN.match(name):
        problem = "reads as a commit id"
    elif not repo_tree.REF_PATTERN.match(name) or not _git_accepts(f"{BRANCHES}{name}"):
        problem = (
            "is not a valid git ref name: use letters, digits and . _ - + /, with no "
            "'..', '//', leading '-', trailing '/' or '.', or '.lock' ending"
        )
    if problem:
        raise RefError(400, f"Invalid reference for a {kind}: {name!r} {problem}")
    return name


def _git_accepts(ref: str) -> bool:
    result = subprocess.run(["git", "check-ref-format", ref], capture_output=True, check=False)
    return result.returncode == 0


def resolve_commit(repo: Path, rev: str) -> str | None:
    """The commit `rev` names: a branch, tag, `refs/...` ref, full commit id, or an
    abbreviated one (as create_tag accepts); None if none."""
    if sha := repo_tree.resolve_revision(repo, rev):
        return sha
    if SHORT_SHA.match(rev):
        return repos.resolve(repo, rev)
    return None


def value(repo: Path, ref: str) -> str | None:
    """The object `ref` holds now (a tag object for an annotated tag), or None."""
    try:
        out = repos.git(repo, "rev-parse", "--verify", "--quiet", "--end-of-options", ref)
    except repos.GitError:
        return None
    return out.decode().strip() or None


def create(repo: Path, ref: str, target: str, reason: str) -> None:
    """Make `ref` point at `target`, provided it does not exist yet (RefError 409)."""
    try:
        repos.git(repo, "update-ref", "-m", reason, "--", ref, target, repos.ZERO_SHA)
    except repos.GitError as exc:
        if value(repo, ref) is not None:
            raise RefError(409, f"Reference {ref} already exists") from exc
        # refs/heads/a when refs/heads/a/b exists, or the other way round.
        raise RefError(409, f"Reference {ref} conflicts with an existing ref ({exc})") from exc


def move(repo: Path, ref: str, target: str, expected: str, reason: str) -> None:
    """Point `ref` at `target` if it still points at `expected` (RefError 409 if not)."""
    try:
        repos.git(repo, "update-ref", "-m", reason, "--", ref, target, expected)
    except repos.GitError as exc:
        raise RefError(
            409,
            f"{ref} moved while this was done (a push or a commit landed first); "
            f"nothing was changed, retry ({exc})",
        ) from exc


def delete(repo: Path, ref: str) -> str:
    """Delete `ref`; returns the value it had. RefError 404 RevisionNotFound if missing."""
    current = value(repo, ref)
    if current is None:
        raise RefError(404, f"Invalid rev id: {ref} does not exist", "RevisionNotFound")
    try:
        repos.git(repo, "update-ref", "-d", "--", ref, current)
    except repos.GitError as exc:
        raise RefError(409, f"{ref} changed while it was deleted; retry ({exc})") from exc
    return current


def pushed_changes(updates: list[list[str]]) -> list[tuple[str, str, str]]:
    """(change, ref, commit) for each branch or tag other than main that a push created
    or deleted, from post-receive's `old new ref` lines: change is "branch.created",
    "branch.deleted", "tag.created" or "tag.deleted" (the event kinds); commit is the new
    value, or the old one for a deletion. Main is left out: its push deploys."""
    found = []
    for old, new, ref in updates:
        kind = "branch" if ref.startswith(BRANCHES) else "tag" if ref.startswith(TAGS) else None
        if kind is None or ref == repos.DEPLOY_REF or (old == new):
            continue
        if old == repos.ZERO_SHA:
            found.append((f"{kind}.created", ref, new))
        elif new == repos.ZERO_SHA:
            found.append((f"{kind}.deleted", ref, old))
    return found


def create_tag(
    repo: Path, name: str, target: str, message: str | None, tagger: tuple[str, str]
) -> str:
    """Tag commit `target`: an annotated tag (a tag object with `message`, by `tagger`)
    when a message is given, else a lightweight one. Returns the ref's new value."""
    ref = f"{TAGS}{name}"
    if value(repo, ref) is not None:
        raise RefError(409, f"Reference {ref} already exists")
    obj = target
    if message is not None:
        who, email = tagger
        text = (
            f"object {target}\ntype commit\ntag {name}\n"
            f"tagger {who} <{email}> {int(time.time())} +0000\n\n{message.rstrip()}\n"
        )
        obj = repos.git(repo, "mktag", input_bytes=text.encode()).decode().strip()
    create(repo, ref, obj, "tag (api)")
    return obj
