"""Branches, tags and history of a bare repo (orchestrator/repos/refs.py, history.py),
against a real temporary bare repo, with git itself."""

from __future__ import annotations

import os
import subprocess
from datetime import datetime
from pathlib import Path

import pytest

from orchestrator.push import ref_limit
from orchestrator.repos import history, refs
from orchestrator.repos import store as repos
from orchestrator.repos.refs import RefError


def _git(cwd: Path, *args: str) -> str:
    env = dict(
        os.environ,
        GIT_AUTHOR_NAME="Tester",
        GIT_AUTHOR_EMAIL="t@example.com",
        GIT_COMMITTER_NAME="Tester",
        GIT_COMMITTER_EMAIL="t@example.com",
    )
    result = subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True
    )
    return result.stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> tuple[Path, list[str]]:
    """A bare repo whose main has three commits (oldest first in the list)."""
    bare = tmp_path / "space.git"
    work = tmp_path / "work"
    subprocess.run(["git", "init", "-q", "--bare", "--initial-branch=main", str(bare)], check=True)
    subprocess.run(["git", "init", "-q", "--initial-branch=main", str(work)], check=True)
    shas = []
    for number in range(3):
        (work / "file.txt").write_text(f"version {number}\n")
        _git(work, "add", "file.txt")
        _git(work, "commit", "-q", "-m", f"change {number}\n\nbody of {number}")
        shas.append(_git(work, "rev-parse", "HEAD"))
    _git(work, "push", "-q", str(bare), "main")
    return bare, shas


@pytest.mark.parametrize(
    "name",
    ["feature", "feature/x", "v1.0", "release-2_b+c"],
)
def test_valid_names_pass(name: str) -> None:
    assert refs.check_name("branch", name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "refs/pr/5",
        "refs/something/random",
        "HEAD",
        "a" * 40,
        "-x",
        "a..b",
        "a//b",
        "a/",
        "x.lock",
        "invalid tag",
        "a~1",
        "main@{1}",
        "é",
        "x" * 256,
    ],
)
def test_invalid_names_are_refused_with_400(name: str) -> None:
    with pytest.raises(RefError) as caught:
        refs.check_name("tag", name)
    assert caught.value.status == 400
    assert "Invalid reference for a tag" in str(caught.value)


def test_create_list_and_delete_branches_and_tags(repo: tuple[Path, list[str]]) -> None:
    bare, shas = repo
    refs.create(bare, "refs/heads/feature", shas[0], "test")
    with pytest.raises(RefError) as caught:
        refs.create(bare, "refs/heads/feature", shas[1], "test")
    assert caught.value.status == 409 and "refs/heads/feature already exists" in str(caught.value)
    with pytest.raises(RefError) as conflict:
        refs.create(bare, "refs/heads/feature/sub", shas[1], "test")
    assert conflict.value.status == 409

    light = refs.create_tag(bare, "v1", shas[1], None, ("alice", "alice@x"))
    annotated = refs.create_tag(bare, "v2", shas[0], "release two", ("alice", "alice@x"))
    assert light == shas[1] and annotated != shas[0]  # a tag object
    assert _git(bare, "cat-file", "-t", annotated) == "tag"
    assert "release two" in _git(bare, "cat-file", "-p", annotated)
    with pytest.raises(RefError) as again:
        refs.create_tag(bare, "v1", shas[0], None, ("alice", "alice@x"))
    assert again.value.status == 409

    # Someone else's refs: a pull request, a convert.
    _git(bare, "update-ref", "refs/pr/10", shas[2])
    _git(bare, "update-ref", "refs/pr/9", shas[1])
    _git(bare, "update-ref", "refs/convert/build", shas[0])
    found = refs.list_refs(bare)
    assert [(r.name, r.ref, r.target) for r in found.branches] == [
        ("feature", "refs/heads/feature", shas[0]),
        ("main", "refs/heads/main", shas[2]),
    ]
    # An annotated tag lists the commit it tags, not the tag object.
    assert [(r.name, r.target) for r in found.tags] == [("v1", shas[1]), ("v2", shas[0])]
    assert [r.name for r in found.pull_requests] == ["9", "10"]
    assert [r.ref for r in found.converts] == ["refs/convert/build"]
    assert found.count() == 4

    assert refs.delete(bare, "refs/tags/v2") == annotated
    assert refs.delete(bare, "refs/heads/feature") == shas[0]
    with pytest.raises(RefError) as missing:
        refs.delete(bare, "refs/heads/feature")
    assert missing.value.status == 404 and missing.value.code == "RevisionNotFound"
    assert [r.name for r in refs.list_refs(bare).branches] == ["main"]


def test_resolve_commit_takes_refs_and_short_ids(repo: tuple[Path, list[str]]) -> None:
    bare, shas = repo
    refs.create_tag(bare, "v1", shas[0], "annotated", ("a", "a@x"))
    assert refs.resolve_commit(bare, "main") == shas[2]
    assert refs.resolve_commit(bare, "v1") == shas[0]
    assert refs.resolve_commit(bare, "refs/tags/v1") == shas[0]
    assert refs.resolve_commit(bare, shas[1]) == shas[1]
    assert refs.resolve_commit(bare, shas[1][:7]) == shas[1]
    assert refs.resolve_commit(bare, "nope") is None
    assert refs.resolve_commit(bare, "main~1") is None  # not a revision the API knows


def test_history_pages_newest_first(repo: tuple[Path, list[str]]) -> None:
    bare, shas = repo
    first, more = history.page(bare, shas[2], 0, 2)
    assert [c.id for c in first] == [shas[2], shas[1]] and more
    assert first[0].title == "change 2" and first[0].message == "body of 2"
    assert first[0].authors == ["Tester"]
    assert datetime.fromisoformat(first[0].date).tzinfo is not None
    rest, more = history.page(bare, shas[2], 2, 2)
    assert [c.id for c in rest] == [shas[0]] and not more


def test_api_commits_name_their_spaceport_user() -> None:
    assert history.author_name("alice", "alice@users.noreply.spaceport") == "alice"
    assert history.author_name("Tester", "t@example.com") == "Tester"


def test_squash_keeps_the_tree_and_drops_the_history(repo: tuple[Path, list[str]]) -> None:
    bare, shas = repo
    sha = history.squash(bare, "refs/heads/main", shas[2], "squashed", ("alice", "alice@x"))
    assert repos.resolve(bare, "refs/heads/main") == sha
    assert repos.tree_id(bare, sha) == repos.tree_id(bare, shas[2])
    commits, more = history.page(bare, sha, 0, 10)
    assert [c.id for c in commits] == [sha] and not more
    assert commits[0].title == "squashed" and commits[0].authors == ["alice"]
    # The head moved meanwhile: nothing is changed.
    with pytest.raises(RefError) as moved:
        history.squash(bare, "refs/heads/main", shas[2], "again", ("alice", "alice@x"))
    assert moved.value.status == 409
    assert repos.resolve(bare, "refs/heads/main") == sha


def test_pushed_changes_name_created_and_deleted_refs_but_not_main() -> None:
    zero, a, b = repos.ZERO_SHA, "a" * 40, "b" * 40
    updates = [
        [zero, a, "refs/heads/main"],
        [zero, a, "refs/heads/feature"],
        [a, zero, "refs/heads/old"],
        [a, b, "refs/heads/moved"],
        [zero, b, "refs/tags/v1"],
        [b, zero, "refs/tags/v0"],
        [zero, a, "refs/pr/1"],
    ]
    assert refs.pushed_changes(updates) == [
        ("branch.created", "refs/heads/feature", a),
        ("branch.deleted", "refs/heads/old", a),
        ("tag.created", "refs/tags/v1", b),
        ("tag.deleted", "refs/tags/v0", b),
    ]


def test_the_pre_receive_hook_keeps_the_branch_and_tag_limit(
    repo: tuple[Path, list[str]], tmp_path: Path
) -> None:
    bare, shas = repo
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    hook = hooks / ref_limit.HOOK_NAME
    hook.write_text(ref_limit.script(3))  # main + two more
    hook.chmod(0o755)
    _git(bare, "config", "core.hooksPath", str(hooks))
    work = tmp_path / "work"

    def pushed(*refspecs: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["git", "push", "--force", str(bare), *refspecs],
            cwd=work,
            capture_output=True,
            text=True,
        )

    assert pushed("main:a", "main:b").returncode == 0
    refused = pushed("main:c")
    assert refused.returncode != 0
    assert "over the limit of 3 (SPACEPORT_MAX_REFS_PER_SPACE)" in refused.stderr
    assert repos.resolve(bare, "refs/heads/c") is None  # nothing changed
    # Moving and deleting refs is never refused; deleting one makes room.
    assert pushed(f"{shas[0]}:refs/heads/a").returncode == 0
    assert pushed(":a", "main:refs/tags/t").returncode == 0
    assert repos.resolve(bare, "refs/tags/t") == shas[2]
