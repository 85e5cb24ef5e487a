"""Bare git repositories of Spaces, read and written with git itself.

Every Space is one bare repo at $SPACEPORT_HOME/repos/{owner}/{name}.git. Hooks are not
copied into each repo: git is pointed at Spaceport's hooks folder by configuration, so an
upgrade of Spaceport upgrades every repo's hooks at once.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from orchestrator.core.settings import get_settings

ZERO_SHA = "0" * 40
DEPLOY_REF = "refs/heads/main"


class GitError(Exception):
    pass


def repo_path(owner: str, name: str) -> Path:
    return get_settings().repos_dir / owner / f"{name}.git"


def git(repo: Path, *args: str, input_bytes: bytes | None = None) -> bytes:
    result = subprocess.run(
        ["git", "-C", str(repo), *args], input=input_bytes, capture_output=True, check=False
    )
    if result.returncode != 0:
        raise GitError(f"git {' '.join(args)}: {result.stderr.decode(errors='replace').strip()}")
    return result.stdout


def init_bare(owner: str, name: str) -> Path:
    path = repo_path(owner, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["git", "init", "--quiet", "--bare", "--initial-branch=main", str(path)], check=True
    )
    # Pushes may rewrite history (Hugging Face allows force pushes); http-backend
    # needs receivepack enabled because it cannot see our token-based authentication.
    git(path, "config", "http.receivepack", "true")
    git(path, "config", "receive.denyDeleteCurrent", "warn")
    return path


def delete_repo(owner: str, name: str) -> None:
    shutil.rmtree(repo_path(owner, name), ignore_errors=True)


def resolve(repo: Path, rev: str) -> str | None:
    try:
        return git(repo, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}").decode().strip()
    except GitError:
        return None


# Commits Spaceport writes carry their user as `{user}@users.noreply.spaceport`.
NOREPLY = "@users.noreply.spaceport"


def identity(user: str) -> tuple[str, str]:
    """The (name, email) of commits and tags Spaceport writes for `user`."""
    return user, f"{user}{NOREPLY}"


def commit_tree(
    repo: Path, tree: str, parents: Sequence[str], message: str, author: tuple[str, str]
) -> str:
    """A new commit object of `tree` with `parents`, by `author` (name, email) as author
    and committer; its id. No ref moves: callers move theirs with an update-ref that names
    the old value, so a push landing meanwhile makes them fail instead of being lost."""
    name, email = author
    identity = {
        "GIT_AUTHOR_NAME": name,
        "GIT_AUTHOR_EMAIL": email,
        "GIT_COMMITTER_NAME": name,
        "GIT_COMMITTER_EMAIL": email,
    }
    with_parents = [arg for parent in parents for arg in ("-p", parent)]
    result = subprocess.run(
        ["git", "-C", str(repo), "commit-tree", tree, *with_parents, "-F", "-"],
        input=message.encode(),
        capture_output=True,
        env={**os.environ, **identity},
        check=False,
    )
    if result.returncode != 0:
        raise GitError(f"git commit-tree: {result.stderr.decode(errors='replace').strip()}")
    return result.stdout.decode().strip()


def tree_id(repo: Path, sha: str) -> str:
    return git(repo, "rev-parse", f"{sha}^{{tree}}").decode().strip()


def list_files(repo: Path, sha: str) -> set[str]:
    out = git(repo, "ls-tree", "-r", "--name-only", "-z", sha)
    return {p for p in out.decode().split("\0") if p}


def read_file(repo: Path, sha: str, path: str) -> bytes | None:
    try:
        return git(repo, "show", f"{sha}:{path}")
    except GitError:
        return None


def archive(repo: Path, sha: str) -> bytes:
    """The commit's files as an uncompressed tar, the build context of its image. LFS files
    come out as pointers (orchestrator.repos.lfs.smudge_tar fills them in): git-lfs' filter, which
    Debian's package turns on machine-wide, would try to download them and fail."""
    return git(
        repo,
        "-c",
        "filter.lfs.process=",
        "-c",
        "filter.lfs.smudge=cat",
        "-c",
        "filter.lfs.required=false",
        "archive",
        "--format=tar",
        sha,
    )
