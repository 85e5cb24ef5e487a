"""Branches, tags and history through the unmodified huggingface_hub client, and git
agreeing with them both ways, against a real Spaceport (sqlite-embedded: the refs are git's,
nothing stack-specific).

Every Space here is the missing_app_file sample (a README, no app.py) pushed to main: it
stays NO_APP_FILE, so nothing builds; files go to other branches.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.errors import (
    BadRequestError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from tests.platform import Platform, commit_change, git, push, sample_checkout

pytestmark = pytest.mark.parametrize("platform", ["sqlite-embedded"], indirect=True)


@pytest.fixture(scope="module")
def tokens(platform: Platform) -> dict[str, str]:
    return {
        "alice": platform.token("alice"),
        "alice-read": platform.token("alice", "--role", "read"),
        "bob": platform.token("bob"),
    }


def hub(platform: Platform, token: str | None) -> HfApi:
    return HfApi(endpoint=platform.url, token=token or False)


@pytest.fixture
def space(
    platform: Platform, tokens: dict[str, str], workdir: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[str, Path]]:
    """alice's Space (named for the test) with main pushed from a local checkout, which
    the test may go on using; deleted after."""
    name = "refs-" + request.node.name.removeprefix("test_").split("[")[0][:40].replace("_", "-")
    checkout = sample_checkout("missing_app_file", workdir)
    push(checkout, platform.git_url("alice", name, tokens["alice"]), "main")
    try:
        yield f"alice/{name}", checkout
    finally:
        platform.delete_space("alice", name, tokens["alice"])


def _events(platform: Platform, repo_id: str, token: str, kinds: str) -> list[dict]:
    response = platform.api(f"/api/spaces/{repo_id}/events?kind={kinds}", token)
    response.raise_for_status()
    return response.json()["events"]


def test_branches_and_tags_through_the_client(
    platform: Platform, tokens: dict[str, str], space: tuple[str, Path], workdir: Path
) -> None:
    repo_id, _ = space
    api = hub(platform, tokens["alice"])
    main = api.space_info(repo_id).sha
    assert main is not None
    listed = api.list_repo_refs(repo_id, repo_type="space")
    assert [(r.name, r.ref, r.target_commit) for r in listed.branches] == [
        ("main", "refs/heads/main", main)
    ]
    assert listed.tags == [] and listed.converts == [] and listed.pull_requests is None
    assert (
        api.list_repo_refs(repo_id, repo_type="space", include_pull_requests=True).pull_requests
        == []
    )

    api.create_branch(repo_id, repo_type="space", branch="feature")
    with pytest.raises(
        HfHubHTTPError, match="Reference refs/heads/feature already exists"
    ) as twice:
        api.create_branch(repo_id, repo_type="space", branch="feature")
    assert twice.value.response.status_code == 409
    with pytest.raises(HfHubHTTPError, match="Reference refs/heads/main already exists"):
        api.create_branch(repo_id, repo_type="space", branch="main")
    api.create_branch(repo_id, repo_type="space", branch="feature", exist_ok=True)
    for bad in ("refs/pr/5", "bad name", "a..b"):
        with pytest.raises(BadRequestError, match="Invalid reference for a branch"):
            api.create_branch(repo_id, repo_type="space", branch=bad)
    with pytest.raises(RevisionNotFoundError):
        api.create_branch(repo_id, repo_type="space", branch="other", revision="nope")

    # An upload to the branch commits there; main (the deployed branch) is untouched.
    info = api.upload_file(
        repo_id=repo_id,
        repo_type="space",
        path_in_repo="notes/new.txt",
        path_or_fileobj=b"on the feature branch\n",
        revision="feature",
        commit_message="Add notes on feature",
    )
    assert api.space_info(repo_id).sha == main
    assert api.space_info(repo_id, revision="feature").sha == info.oid
    assert "notes/new.txt" in api.list_repo_files(repo_id, repo_type="space", revision="feature")
    assert "notes/new.txt" not in api.list_repo_files(repo_id, repo_type="space")
    assert platform.runtime(*repo_id.split("/"), tokens["alice"])["stage"] == "NO_APP_FILE"
    assert platform.builds(*repo_id.split("/"), tokens["alice"]) == []

    # A branch from a branch, a tag from a short commit id, an annotated tag on a branch.
    api.create_branch(repo_id, repo_type="space", branch="from/main", revision=main)
    api.create_tag(repo_id, repo_type="space", tag="v1", revision="feature", tag_message="first")
    api.create_tag(repo_id, repo_type="space", tag="v0", revision=main[:7])
    with pytest.raises(HfHubHTTPError) as again:
        api.create_tag(repo_id, repo_type="space", tag="v1")
    assert again.value.response.status_code == 409
    api.create_tag(repo_id, repo_type="space", tag="v1", exist_ok=True)
    with pytest.raises(RevisionNotFoundError):
        api.create_tag(repo_id, repo_type="space", tag="v2", revision="nope")
    with pytest.raises(HfHubHTTPError) as invalid:
        api.create_tag(repo_id, repo_type="space", tag="invalid tag")
    assert invalid.value.response.status_code == 400

    listed = api.list_repo_refs(repo_id, repo_type="space")
    assert {r.name: r.target_commit for r in listed.branches} == {
        "feature": info.oid,
        "from/main": main,
        "main": main,
    }
    assert {r.name: r.target_commit for r in listed.tags} == {"v0": main, "v1": info.oid}

    # Files at a tag, as hf_hub_download and the revision view read them.
    path = hf_hub_download(
        repo_id,
        "notes/new.txt",
        repo_type="space",
        revision="v1",
        endpoint=platform.url,
        token=tokens["alice"],
        cache_dir=str(workdir / "cache"),
    )
    assert Path(path).read_bytes() == b"on the feature branch\n"
    assert api.space_info(repo_id, revision="v1").sha == info.oid

    api.delete_tag(repo_id, repo_type="space", tag="v1")
    with pytest.raises(RevisionNotFoundError):
        api.delete_tag(repo_id, repo_type="space", tag="v1")
    with pytest.raises(RevisionNotFoundError):
        api.space_info(repo_id, revision="v1")
    api.delete_branch(repo_id, repo_type="space", branch="feature")
    with pytest.raises(HfHubHTTPError, match="Invalid rev id"):
        api.delete_branch(repo_id, repo_type="space", branch="feature")
    with pytest.raises(HfHubHTTPError, match="Invalid rev id"):
        api.delete_branch(repo_id, repo_type="space", branch="v0")  # a tag, not a branch
    with pytest.raises(HfHubHTTPError, match="Cannot delete refs/heads/main") as protected:
        api.delete_branch(repo_id, repo_type="space", branch="main")
    assert protected.value.response.status_code == 403
    with pytest.raises(RevisionNotFoundError):
        api.space_info(repo_id, revision="feature")

    kinds = "branch.created,branch.deleted,tag.created,tag.deleted"
    recorded = [
        (e["kind"], e["data"]["ref"], e["actor"])
        for e in _events(platform, repo_id, tokens["alice"], kinds)
    ]
    assert recorded == [
        ("branch.created", "refs/heads/feature", "alice"),
        ("branch.created", "refs/heads/from/main", "alice"),
        ("tag.created", "refs/tags/v1", "alice"),
        ("tag.created", "refs/tags/v0", "alice"),
        ("tag.deleted", "refs/tags/v1", "alice"),
        ("branch.deleted", "refs/heads/feature", "alice"),
    ]


def test_who_may_list_and_change_refs(
    platform: Platform, tokens: dict[str, str], space: tuple[str, Path]
) -> None:
    repo_id, _ = space
    alice, bob = hub(platform, tokens["alice"]), hub(platform, tokens["bob"])
    reader = hub(platform, tokens["alice-read"])
    # Anyone who can read lists; only writers change.
    assert [r.name for r in bob.list_repo_refs(repo_id, repo_type="space").branches] == ["main"]
    assert [
        r.name for r in hub(platform, None).list_repo_refs(repo_id, repo_type="space").branches
    ] == ["main"]
    assert len(bob.list_repo_commits(repo_id, repo_type="space")) == 1
    for who in (bob, reader):
        with pytest.raises(HfHubHTTPError) as refused:
            who.create_branch(repo_id, repo_type="space", branch="feature")
        assert refused.value.response.status_code == 403
        with pytest.raises(HfHubHTTPError) as refused:
            who.create_tag(repo_id, repo_type="space", tag="v1")
        assert refused.value.response.status_code == 403
        with pytest.raises(HfHubHTTPError) as refused:
            who.super_squash_history(repo_id, repo_type="space")
        assert refused.value.response.status_code == 403
    alice.create_tag(repo_id, repo_type="space", tag="v1")
    with pytest.raises(HfHubHTTPError) as refused:
        bob.delete_tag(repo_id, repo_type="space", tag="v1")
    assert refused.value.response.status_code == 403
    with pytest.raises(HfHubHTTPError) as unsigned:
        hub(platform, None).create_branch(repo_id, repo_type="space", branch="x")
    assert unsigned.value.response.status_code == 401

    # A private Space is, to others, a Space that does not exist.
    alice.update_repo_settings(repo_id, repo_type="space", private=True)
    for call in (
        lambda: bob.list_repo_refs(repo_id, repo_type="space"),
        lambda: bob.list_repo_commits(repo_id, repo_type="space"),
        lambda: bob.create_branch(repo_id, repo_type="space", branch="x"),
        lambda: bob.delete_branch(repo_id, repo_type="space", branch="main"),
        lambda: bob.create_tag(repo_id, repo_type="space", tag="x"),
        lambda: bob.delete_tag(repo_id, repo_type="space", tag="v1"),
        lambda: bob.super_squash_history(repo_id, repo_type="space"),
        lambda: hub(platform, None).list_repo_refs(repo_id, repo_type="space"),
    ):
        with pytest.raises(RepositoryNotFoundError):
            call()
    assert [r.name for r in reader.list_repo_refs(repo_id, repo_type="space").tags] == ["v1"]


def test_commit_history_pages_newest_first(
    platform: Platform, tokens: dict[str, str], space: tuple[str, Path]
) -> None:
    repo_id, checkout = space
    for number in range(60):
        git(checkout, "commit", "-q", "--allow-empty", "-m", f"step {number}\n\nbody {number}")
    push(checkout, platform.git_url(*repo_id.split("/"), tokens["alice"]), "main:history")
    api = hub(platform, tokens["alice"])
    expected = git(checkout, "log", "--format=%H", "HEAD").stdout.split()

    commits = api.list_repo_commits(repo_id, repo_type="space", revision="history")
    assert [c.commit_id for c in commits] == expected  # 61, over two pages
    newest = commits[0]
    assert newest.title == "step 59" and newest.message == "body 59"
    assert newest.authors == ["Tester"] and newest.created_at.tzinfo is not None
    assert newest.formatted_title is None
    formatted = api.list_repo_commits(
        repo_id, repo_type="space", revision="history", formatted=True
    )
    assert formatted[0].formatted_title == "<p>step 59</p>"
    assert len(formatted) == 61

    # An API commit names its Spaceport user; main has its own history.
    api.upload_file(
        repo_id=repo_id,
        repo_type="space",
        path_in_repo="data.txt",
        path_or_fileobj=b"x",
        revision="history",
        commit_message="Upload data",
    )
    top = api.list_repo_commits(repo_id, repo_type="space", revision="history")[0]
    assert top.authors == ["alice"] and top.title == "Upload data"
    assert len(api.list_repo_commits(repo_id, repo_type="space")) == 1
    with pytest.raises(RevisionNotFoundError):
        api.list_repo_commits(repo_id, repo_type="space", revision="nope")
    with pytest.raises(RepositoryNotFoundError):
        api.list_repo_commits("alice/refs-nothing-here", repo_type="space")
    unknown = httpx.get(
        f"{platform.url}/api/spaces/{repo_id}/commits/main?expand[]=everything", timeout=30
    )
    assert unknown.status_code == 400 and unknown.headers["x-error-message"]


def test_super_squash(platform: Platform, tokens: dict[str, str], space: tuple[str, Path]) -> None:
    repo_id, checkout = space
    owner, name = repo_id.split("/")
    api = hub(platform, tokens["alice"])
    commit_change(checkout, "notes.txt", "one\n", "one")
    commit_change(checkout, "notes.txt", "two\n", "two")
    push(checkout, platform.git_url(owner, name, tokens["alice"]), "main")
    main = api.space_info(repo_id).sha
    files = api.list_repo_files(repo_id, repo_type="space")
    api.create_branch(repo_id, repo_type="space", branch="side")
    api.create_tag(repo_id, repo_type="space", tag="v1")

    api.super_squash_history(repo_id, repo_type="space", branch="side", commit_message="Squashed")
    side = api.list_repo_commits(repo_id, repo_type="space", revision="side")
    assert len(side) == 1 and side[0].title == "Squashed" and side[0].authors == ["alice"]
    assert api.list_repo_files(repo_id, repo_type="space", revision="side") == files
    assert api.space_info(repo_id).sha == main  # main untouched
    with pytest.raises(BadRequestError):
        api.super_squash_history(repo_id, repo_type="space", branch="v1")
    with pytest.raises(RevisionNotFoundError):
        api.super_squash_history(repo_id, repo_type="space", branch="nope")

    # main squashed is a new head, deployed like a push: here the README still names a
    # missing app.py, so the deploy refuses it (NO_APP_FILE) for the new commit.
    api.super_squash_history(repo_id, repo_type="space")
    history = api.list_repo_commits(repo_id, repo_type="space")
    assert (
        len(history) == 1 and history[0].title == "Super-squash branch 'main' using huggingface_hub"
    )
    squashed = history[0].commit_id
    assert api.space_info(repo_id).sha == squashed
    assert api.list_repo_files(repo_id, repo_type="space") == files
    assert platform.runtime(owner, name, tokens["alice"])["stage"] == "NO_APP_FILE"
    refused = _events(platform, repo_id, tokens["alice"], "commit.refused")
    assert refused[-1]["data"]["commit"] == squashed
    squashes = _events(platform, repo_id, tokens["alice"], "branch.squashed")
    assert [(e["data"]["ref"], e["data"]["from"]) for e in squashes] == [
        ("refs/heads/side", main),
        ("refs/heads/main", main),
    ]
    # The tag still names the old history, which stays reachable through it.
    assert api.space_info(repo_id, revision="v1").sha == main


def test_git_and_the_api_agree(
    platform: Platform, tokens: dict[str, str], space: tuple[str, Path], workdir: Path
) -> None:
    repo_id, checkout = space
    owner, name = repo_id.split("/")
    url = platform.git_url(owner, name, tokens["alice"])
    api = hub(platform, tokens["alice"])

    # Made through the API, fetched with git.
    api.create_branch(repo_id, repo_type="space", branch="api-branch")
    api.upload_file(
        repo_id=repo_id,
        repo_type="space",
        path_in_repo="api.txt",
        path_or_fileobj=b"from the api\n",
        revision="api-branch",
    )
    api.create_tag(
        repo_id, repo_type="space", tag="api-tag", revision="api-branch", tag_message="m"
    )
    clone = workdir / "clone"
    git(workdir, "clone", "-q", url, str(clone))
    git(clone, "fetch", "-q", "origin", "api-branch", "--tags")
    head = api.list_repo_refs(repo_id, repo_type="space")
    by_name = {r.name: r.target_commit for r in head.branches}
    assert git(clone, "rev-parse", "FETCH_HEAD").stdout.strip() == by_name["api-branch"]
    assert git(clone, "rev-parse", "api-tag^{commit}").stdout.strip() == by_name["api-branch"]
    assert git(clone, "cat-file", "-t", "api-tag").stdout.strip() == "tag"  # annotated
    assert git(clone, "show", "FETCH_HEAD:api.txt").stdout == "from the api\n"

    # Pushed with git, listed by the API; only main deploys.
    pushed = commit_change(checkout, "feature.txt", "feature\n", "feature work")
    push(checkout, url, "HEAD:refs/heads/feature")
    git(checkout, "tag", "v1")
    push(checkout, url, "v1")
    listed = api.list_repo_refs(repo_id, repo_type="space")
    assert {r.name: r.target_commit for r in listed.branches}["feature"] == pushed
    assert {r.name: r.target_commit for r in listed.tags} == {
        "api-tag": by_name["api-branch"],
        "v1": pushed,
    }
    assert api.space_info(repo_id, revision="feature").sha == pushed
    assert api.space_info(repo_id).sha != pushed
    assert platform.builds(owner, name, tokens["alice"]) == []

    push(checkout, url, ":feature")
    push(checkout, url, ":refs/tags/v1")
    listed = api.list_repo_refs(repo_id, repo_type="space")
    assert sorted(r.name for r in listed.branches) == ["api-branch", "main"]
    assert [r.name for r in listed.tags] == ["api-tag"]
    kinds = "branch.created,branch.deleted,tag.created,tag.deleted"
    pushed_events = [
        (e["kind"], e["data"]["ref"])
        for e in _events(platform, repo_id, tokens["alice"], kinds)
        if e["actor"] == "alice"
    ][-4:]
    assert pushed_events == [
        ("branch.created", "refs/heads/feature"),
        ("tag.created", "refs/tags/v1"),
        ("branch.deleted", "refs/heads/feature"),
        ("tag.deleted", "refs/tags/v1"),
    ]


def test_squashing_main_deploys_it_with_the_image_it_had(
    platform: Platform, tokens: dict[str, str], workdir: Path
) -> None:
    """The one build of this module: a static Space, built once; its squashed main is a new
    commit of the same tree, deployed like a push, and the build reuses the image."""
    name, token = "refs-squash-deploy", tokens["alice"]
    checkout = sample_checkout("static_site", workdir)
    commit_change(checkout, "notes.txt", "a second commit\n", "second")
    push(checkout, platform.git_url("alice", name, token), "main")
    try:
        running = platform.wait_for_stage("alice", name, token, timeout=300)
        assert running["stage"] == "RUNNING", running
        before = running["sha"]
        api = hub(platform, token)
        api.super_squash_history(f"alice/{name}", repo_type="space")
        squashed = api.list_repo_commits(f"alice/{name}", repo_type="space")
        assert len(squashed) == 1
        build = platform.builds("alice", name, token)[0]  # newest first
        assert build["commit"] == squashed[0].commit_id
        for _ in range(240):
            build = platform.builds("alice", name, token)[0]
            if build["status"] not in ("queued", "running"):
                break
            time.sleep(0.5)
        assert build["status"] == "succeeded" and build["reusedImage"] is True, build
        assert api.space_info(f"alice/{name}").sha == squashed[0].commit_id
        # Nothing the app runs changed (same image, environment and hardware): the running
        # container goes on serving, started from the commit before the squash.
        runtime = platform.wait_for_stage("alice", name, token, timeout=60, stages={"RUNNING"})
        assert runtime["sha"] == before, runtime
    finally:
        platform.delete_space("alice", name, token)
