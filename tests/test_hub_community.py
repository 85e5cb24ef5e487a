"""A Space's Community tab through the unmodified huggingface_hub, against a real Spaceport:
discussions and pull requests (refs/pr/N, reachable with git and with create_pr=True),
comments, status changes, merges that deploy, and likes. Runs on both stacks: discussions
are state. Two users: alice owns the Spaces, bob can only read them.

The Spaces hold the missing_app_file sample: main never builds (NO_APP_FILE), so a merge's
deploy shows as the commit.refused event of the merge commit, with no build to wait for.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from huggingface_hub import HfApi
from huggingface_hub.community import (
    DiscussionComment,
    DiscussionCommit,
    DiscussionStatusChange,
    DiscussionTitleChange,
)
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

from tests.platform import Platform, git, push, sample_checkout

SPACE = "alice/community"


@pytest.fixture(scope="module")
def tokens(platform: Platform) -> dict[str, str]:
    return {"alice": platform.token("alice"), "bob": platform.token("bob")}


@pytest.fixture(scope="module")
def space(
    platform: Platform, tokens: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """alice/community: main holds a README and no app (NO_APP_FILE, never built)."""
    checkout = sample_checkout("missing_app_file", tmp_path_factory.mktemp("community"))
    push(checkout, platform.git_url("alice", "community", tokens["alice"]))
    yield SPACE
    platform.delete_space("alice", "community", tokens["alice"])


def hub(platform: Platform, token: str | None) -> HfApi:
    return HfApi(endpoint=platform.url, token=token or False)


def _status(error: pytest.ExceptionInfo[HfHubHTTPError]) -> int:
    assert error.value.response is not None
    return error.value.response.status_code


def test_a_discussion_from_open_to_closed(
    platform: Platform, tokens: dict[str, str], space: str
) -> None:
    alice, bob = hub(platform, tokens["alice"]), hub(platform, tokens["bob"])
    opened = bob.create_discussion(
        space, "Does it start?", description="It says NO_APP_FILE", repo_type="space"
    )
    assert (opened.num, opened.author, opened.status) == (1, "bob", "open")
    assert not opened.is_pull_request and opened.git_reference is None
    assert isinstance(opened.events[0], DiscussionComment)
    assert opened.events[0].content == "It says NO_APP_FILE"

    said = bob.comment_discussion(space, 1, "More: it never builds", repo_type="space")
    assert isinstance(said, DiscussionComment) and said.author == "bob"
    edited = bob.edit_discussion_comment(space, 1, said.id, "It never builds", repo_type="space")
    assert edited.edited and edited.content == "It never builds"
    assert edited.number_of_edits == 1
    with pytest.raises(HfHubHTTPError) as refused:  # only its author edits a comment
        alice.edit_discussion_comment(space, 1, said.id, "no", repo_type="space")
    assert _status(refused) == 403
    with pytest.warns(UserWarning):
        hidden = alice.hide_discussion_comment(space, 1, said.id, repo_type="space")
    assert hidden.hidden and hidden.content == ""
    with pytest.raises(HfHubHTTPError) as refused, pytest.warns(UserWarning):
        bob.hide_discussion_comment(space, 1, opened.events[0].id, repo_type="space")
    assert _status(refused) == 403  # writers hide, not the author

    renamed = bob.rename_discussion(space, 1, "Why NO_APP_FILE?", repo_type="space")
    assert isinstance(renamed, DiscussionTitleChange)
    assert (renamed.old_title, renamed.new_title) == ("Does it start?", "Why NO_APP_FILE?")
    closed = bob.change_discussion_status(
        space, 1, "closed", comment="Found it: app_file", repo_type="space"
    )
    assert isinstance(closed, DiscussionStatusChange) and closed.new_status == "closed"

    listed = list(alice.get_repo_discussions(space, repo_type="space", discussion_status="closed"))
    assert [(d.num, d.title, d.author) for d in listed] == [(1, "Why NO_APP_FILE?", "bob")]
    assert (
        list(alice.get_repo_discussions(space, repo_type="space", discussion_type="pull_request"))
        == []
    )
    details = alice.get_discussion_details(space, 1, repo_type="space")
    kinds = [e.type for e in details.events]
    assert kinds == ["comment", "comment", "title-change", "status-change", "comment"]
    assert details.status == "closed" and details.target_branch is None
    reopened = alice.change_discussion_status(space, 1, "open", repo_type="space")
    assert reopened.new_status == "open"

    recorded = platform.api(
        f"/api/spaces/{space}/events?kind=discussion.opened,discussion.status_changed",
        tokens["alice"],
    ).json()["events"]
    assert [(e["kind"], e["actor"], e["data"]["num"]) for e in recorded] == [
        ("discussion.opened", "bob", 1),
        ("discussion.status_changed", "bob", 1),
        ("discussion.status_changed", "alice", 1),
    ]
    with pytest.raises(HfHubHTTPError) as missing:
        alice.get_discussion_details(space, 99, repo_type="space")
    assert _status(missing) == 404
    with pytest.raises(HfHubHTTPError) as signed_out:  # taking part needs a token
        hub(platform, None).create_discussion(space, "anon", repo_type="space")
    assert _status(signed_out) == 401
    with pytest.raises(HfHubHTTPError) as refused:
        bob.create_discussion(space, "   ", repo_type="space")
    assert _status(refused) == 400


def test_pull_requests_by_api_and_git_merge_and_deploy(
    platform: Platform, tokens: dict[str, str], space: str, workdir: Path
) -> None:
    alice, bob = hub(platform, tokens["alice"]), hub(platform, tokens["bob"])
    main_before = alice.space_info(space).sha
    draft = bob.create_pull_request(space, "Notes", repo_type="space")
    assert draft.is_pull_request and draft.status == "draft"
    assert draft.git_reference == f"refs/pr/{draft.num}"
    assert draft.target_branch == "refs/heads/main"
    # A reader commits to their own pull request; main does not move.
    added = bob.upload_file(
        path_or_fileobj=b"notes\n",
        path_in_repo="notes.txt",
        repo_id=space,
        repo_type="space",
        revision=draft.git_reference,
    )
    assert alice.space_info(space).sha == main_before
    commits = [
        e
        for e in alice.get_discussion_details(space, draft.num, repo_type="space").events
        if isinstance(e, DiscussionCommit)
    ]
    assert [c.oid for c in commits] == [added.oid]

    # create_pr=True: a new pull request with the commit on it.
    made = bob.upload_file(
        path_or_fileobj=b"two\n",
        path_in_repo="two.txt",
        repo_id=space,
        repo_type="space",
        create_pr=True,
        commit_message="Add two.txt",
    )
    assert made.pr_num == draft.num + 1 and made.pr_revision == f"refs/pr/{made.pr_num}"
    assert made.pr_url == f"{platform.url}/spaces/{space}/discussions/{made.pr_num}"
    pr = alice.get_discussion_details(space, made.pr_num, repo_type="space")
    assert (pr.status, pr.author, pr.title) == ("open", "bob", "Add two.txt")
    assert (
        bob.list_repo_files(space, repo_type="space", revision=made.pr_revision).count("two.txt")
        == 1
    )

    # git agrees: fetch refs/pr/N, push to it as its author; main and others' refs refuse.
    clone = workdir / "clone"
    bob_url = platform.git_url("alice", "community", tokens["bob"])
    git(workdir, "clone", "-q", bob_url, str(clone))
    git(clone, "fetch", "-q", "origin", made.pr_revision)
    assert git(clone, "rev-parse", "FETCH_HEAD").stdout.strip() == made.oid
    git(clone, "checkout", "-q", "FETCH_HEAD")
    (clone / "three.txt").write_text("three\n")
    git(clone, "add", "three.txt")
    git(clone, "commit", "-q", "-m", "Add three.txt")
    pushed = git(clone, "rev-parse", "HEAD").stdout.strip()
    push(clone, bob_url, f"HEAD:{made.pr_revision}")
    events = alice.get_discussion_details(space, made.pr_num, repo_type="space").events
    assert [e.oid for e in events if isinstance(e, DiscussionCommit)] == [made.oid, pushed]
    assert push(clone, bob_url, "HEAD:main", check=False).returncode != 0
    assert push(clone, bob_url, "HEAD:refs/pr/999", check=False).returncode != 0  # none

    # Readers don't merge; writers do, and main deploys like a push.
    with pytest.raises(HfHubHTTPError) as refused:
        bob.merge_pull_request(space, made.pr_num, repo_type="space")
    assert _status(refused) == 403
    alice.merge_pull_request(space, made.pr_num, comment="Thanks!", repo_type="space")
    merged = alice.get_discussion_details(space, made.pr_num, repo_type="space")
    assert merged.status == "merged" and merged.merge_commit_oid == pushed  # a fast-forward
    assert alice.space_info(space).sha == pushed
    assert "three.txt" in alice.list_repo_files(space, repo_type="space")
    refused_commits = platform.api(
        f"/api/spaces/{space}/events?kind=commit.refused", tokens["alice"]
    ).json()["events"]
    assert refused_commits[-1]["data"]["commit"] == pushed  # deployed: NO_APP_FILE again
    assert platform.runtime("alice", "community", tokens["alice"])["stage"] == "NO_APP_FILE"
    with pytest.raises(HfHubHTTPError) as refused:  # a merged pull request takes no more
        bob.upload_file(
            path_or_fileobj=b"late\n",
            path_in_repo="late.txt",
            repo_id=space,
            repo_type="space",
            revision=made.pr_revision,
        )
    assert _status(refused) == 403

    # The draft touched notes.txt; main now changes it too: a conflict, named, and a 409.
    alice.upload_file(
        path_or_fileobj=b"other notes\n", path_in_repo="notes.txt", repo_id=space, repo_type="space"
    )
    conflicted = alice.get_discussion_details(space, draft.num, repo_type="space")
    assert conflicted.conflicting_files == ["notes.txt"]
    assert "notes" in (conflicted.diff or "")
    with pytest.raises(HfHubHTTPError) as conflict:
        alice.merge_pull_request(space, draft.num, repo_type="space")
    assert _status(conflict) == 409
    prs = list(bob.get_repo_discussions(space, repo_type="space", discussion_type="pull_request"))
    assert [(d.num, d.status) for d in prs] == [(made.pr_num, "merged"), (draft.num, "draft")]
    refs = alice.list_repo_refs(space, repo_type="space", include_pull_requests=True)
    assert {r.ref for r in refs.pull_requests or []} == {draft.git_reference, made.pr_revision}

    # A duplicate takes the code, not the Community tab (as on the Hub).
    bob.duplicate_repo(space, "bob/community-copy", repo_type="space")
    try:
        copied = bob.list_repo_refs(
            "bob/community-copy", repo_type="space", include_pull_requests=True
        )
        assert copied.pull_requests == []
        assert list(bob.get_repo_discussions("bob/community-copy", repo_type="space")) == []
    finally:
        platform.delete_space("bob", "community-copy", tokens["bob"])


def test_likes_counts_listings_and_privacy(
    platform: Platform, tokens: dict[str, str], space: str, workdir: Path
) -> None:
    alice, bob = hub(platform, tokens["alice"]), hub(platform, tokens["bob"])
    push(
        sample_checkout("missing_app_file", workdir),
        platform.git_url("alice", "hidden", tokens["alice"]),
    )
    alice.update_repo_settings("alice/hidden", private=True, repo_type="space")

    def like(token: str, repo: str) -> httpx.Response:
        return httpx.post(
            f"{platform.url}/api/spaces/{repo}/like",
            headers={"authorization": f"Bearer {token}"},
            timeout=30,
        )

    try:
        assert like(tokens["bob"], space).status_code == 200
        assert like(tokens["bob"], space).status_code == 200  # once: still one like
        assert like(tokens["bob"], "alice/hidden").status_code == 404  # can't see it
        assert like(tokens["alice"], "alice/hidden").status_code == 200
        assert like(tokens["alice"], space).status_code == 200
        assert bob.space_info(space).likes == 2
        assert bob.list_liked_repos("bob").spaces == [space]
        likers = [u.username for u in bob.list_repo_likers(space, repo_type="space")]
        assert likers == ["alice", "bob"]  # newest first
        # Her private Space stays hidden from others, in every listing.
        assert bob.list_liked_repos("alice").spaces == [space]
        assert alice.list_liked_repos("alice").spaces == [space, "alice/hidden"]
        # alice may own other Spaces of other modules on the shared platform: unliked, so
        # after these two.
        ranked = [(s.id, s.likes) for s in alice.list_spaces(author="alice", sort="likes")]
        assert ranked[:2] == [(space, 2), ("alice/hidden", 1)]
        assert all(likes == 0 for _id, likes in ranked[2:]), ranked
        seen_by_bob = [s.id for s in bob.list_spaces(author="alice", sort="likes")]
        assert seen_by_bob[0] == space and "alice/hidden" not in seen_by_bob
        bob.unlike(space, repo_type="space")
        assert bob.space_info(space).likes == 1
        assert bob.list_liked_repos("bob").spaces == []
        with pytest.raises(RepositoryNotFoundError):
            bob.unlike("alice/hidden", repo_type="space")
        # A private Space's Community tab is as hidden as the Space.
        alice.create_discussion("alice/hidden", "Private notes", repo_type="space")
        with pytest.raises(RepositoryNotFoundError):
            list(bob.get_repo_discussions("alice/hidden", repo_type="space"))
        with pytest.raises(RepositoryNotFoundError):
            bob.comment_discussion("alice/hidden", 1, "let me in", repo_type="space")
    finally:
        platform.delete_space("alice", "hidden", tokens["alice"])


def test_organisation_roles_decide_who_merges(
    platform: Platform, tokens: dict[str, str], workdir: Path
) -> None:
    """An organisation's Space: an outsider opens a pull request, a `read` member may not
    merge or close it, a `write` member merges (core.auth.space_access, by role)."""
    org = "community-lab"
    platform.cli("org", "create", org, "--admin", "alice")
    platform.cli("org", "add-member", org, "carol", "--role", "write")
    platform.cli("org", "add-member", org, "dave", "--role", "read")
    carol, dave = hub(platform, platform.token("carol")), hub(platform, platform.token("dave"))
    push(
        sample_checkout("missing_app_file", workdir), platform.git_url(org, "demo", tokens["alice"])
    )
    repo = f"{org}/demo"
    try:
        made = hub(platform, tokens["bob"]).upload_file(
            path_or_fileobj=b"hi\n",
            path_in_repo="hi.txt",
            repo_id=repo,
            repo_type="space",
            create_pr=True,
        )
        for refused in (
            lambda: dave.merge_pull_request(repo, made.pr_num, repo_type="space"),
            lambda: dave.change_discussion_status(repo, made.pr_num, "closed", repo_type="space"),
        ):
            with pytest.raises(HfHubHTTPError) as caught:
                refused()
            assert _status(caught) == 403
        carol.merge_pull_request(repo, made.pr_num, repo_type="space")
        merged = dave.get_discussion_details(repo, made.pr_num, repo_type="space")
        assert merged.status == "merged" and merged.merge_commit_oid == made.oid
    finally:
        platform.delete_space(org, "demo", tokens["alice"])
