"""The git side of pull requests (orchestrator/repos/pull_requests.py): refs/pr/N, and a
merge into main without a checkout: fast-forward, merge commit, conflict, a target that
moved meanwhile."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from orchestrator.repos import pull_requests as prs
from orchestrator.repos import store as repos

AUTHOR = ("alice", "alice@users.noreply.spaceport")


def _git(cwd: Path, *args: str) -> str:
    env = {
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
        "PATH": "/usr/bin:/bin:/usr/local/bin",
        "HOME": str(cwd),
    }
    result = subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True
    )
    return result.stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> tuple[Path, Path]:
    """A bare repo with main (README.md, app.py) and a work tree that pushes to it."""
    bare = tmp_path / "space.git"
    _git(tmp_path, "init", "-q", "--bare", "--initial-branch=main", str(bare))
    work = tmp_path / "work"
    work.mkdir()
    _git(work, "init", "-q", "--initial-branch=main")
    (work / "README.md").write_text("---\nsdk: static\n---\n")
    (work / "app.py").write_text("one\ntwo\nthree\n")
    _git(work, "add", "-A")
    _git(work, "commit", "-q", "-m", "first")
    _git(work, "push", "-q", str(bare), "main")
    return bare, work


def _commit(work: Path, path: str, text: str, message: str) -> str:
    (work / path).write_text(text)
    _git(work, "add", "-A")
    _git(work, "commit", "-q", "-m", message)
    return _git(work, "rev-parse", "HEAD")


def _open_pr(bare: Path, num: int) -> None:
    main = repos.resolve(bare, repos.DEPLOY_REF)
    assert main is not None
    prs.move_ref(bare, prs.ref(num), main, None, "test")


def test_refs_are_numbered_pull_requests() -> None:
    assert prs.number("refs/pr/1") == 1
    assert prs.number("pr/12") == 12
    for other in ("refs/pr/0", "refs/pr/x", "refs/heads/main", "refs/pr/1/extra", "refs/pr/01"):
        assert prs.number(other) is None


def test_a_pull_request_ahead_of_main_fast_forwards(repo: tuple[Path, Path]) -> None:
    bare, work = repo
    _open_pr(bare, 1)
    sha = _commit(work, "new.txt", "hello\n", "add new.txt")
    _git(work, "push", "-q", str(bare), "HEAD:refs/pr/1")
    assert [s for s, _ in prs.commits_between(bare, _git(work, "rev-parse", "HEAD~1"), sha)] == [
        sha
    ]
    assert prs.conflicts(bare, repos.DEPLOY_REF, prs.ref(1)) == []
    merged = prs.merge(bare, repos.DEPLOY_REF, prs.ref(1), "Merge #1\n", AUTHOR)
    assert merged == prs.Merged(sha, fast_forward=True)
    assert repos.resolve(bare, repos.DEPLOY_REF) == sha


def test_diverged_branches_get_a_merge_commit_without_a_checkout(
    repo: tuple[Path, Path],
) -> None:
    bare, work = repo
    _open_pr(bare, 1)
    base = _git(work, "rev-parse", "HEAD")
    pr_head = _commit(work, "app.py", "one\ntwo\nthree\nfour\n", "append")
    _git(work, "push", "-q", str(bare), "HEAD:refs/pr/1")
    _git(work, "reset", "-q", "--hard", base)
    main_head = _commit(work, "other.txt", "x\n", "other")
    _git(work, "push", "-q", str(bare), "HEAD:main")
    assert "four" in prs.diff(bare, repos.DEPLOY_REF, prs.ref(1))
    merged = prs.merge(bare, repos.DEPLOY_REF, prs.ref(1), "Merge #1\n", AUTHOR)
    assert not merged.fast_forward
    parents = repos.git(bare, "rev-list", "--parents", "-n1", merged.sha).decode().split()[1:]
    assert parents == [main_head, pr_head]
    assert repos.read_file(bare, merged.sha, "app.py") == b"one\ntwo\nthree\nfour\n"
    assert repos.read_file(bare, merged.sha, "other.txt") == b"x\n"
    author = repos.git(bare, "log", "-1", "--format=%an", merged.sha).decode().strip()
    assert author == "alice"


def test_a_conflict_names_its_files_and_moves_nothing(repo: tuple[Path, Path]) -> None:
    bare, work = repo
    _open_pr(bare, 2)
    base = _git(work, "rev-parse", "HEAD")
    _commit(work, "app.py", "one\nTWO\nthree\n", "pr side")
    _git(work, "push", "-q", str(bare), "HEAD:refs/pr/2")
    _git(work, "reset", "-q", "--hard", base)
    main_head = _commit(work, "app.py", "one\n2\nthree\n", "main side")
    _git(work, "push", "-q", str(bare), "HEAD:main")
    assert prs.conflicts(bare, repos.DEPLOY_REF, prs.ref(2)) == ["app.py"]
    with pytest.raises(prs.MergeConflict) as caught:
        prs.merge(bare, repos.DEPLOY_REF, prs.ref(2), "Merge #2\n", AUTHOR)
    assert caught.value.files == ["app.py"]
    assert repos.resolve(bare, repos.DEPLOY_REF) == main_head


def test_nothing_to_merge_and_a_moved_target(repo: tuple[Path, Path]) -> None:
    bare, work = repo
    _open_pr(bare, 3)  # no commits of its own: already in main
    head = repos.resolve(bare, repos.DEPLOY_REF)
    merged = prs.merge(bare, repos.DEPLOY_REF, prs.ref(3), "Merge #3\n", AUTHOR)
    assert merged.already_merged and merged.sha == head
    with pytest.raises(prs.RefMoved):
        prs.move_ref(bare, prs.ref(3), head or "", repos.ZERO_SHA.replace("0", "1"), "stale")
