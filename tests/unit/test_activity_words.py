"""The activity feed's sentences say what happened in words, from the event's own fields."""

from __future__ import annotations

from orchestrator.web.activity import describe


def test_an_opened_thread_says_whether_it_is_a_discussion_or_a_pull_request() -> None:
    assert describe("discussion.opened", "ann", {"num": 1, "pull_request": False}) == (
        "ann opened discussion #1"
    )
    assert describe("discussion.opened", "ann", {"num": 2, "pull_request": True}) == (
        "ann opened pull request #2"
    )


def test_a_refused_commit_says_why_it_was_not_built() -> None:
    text = describe(
        "commit.refused",
        "ann",
        {"commit": "abcdef0123", "stage": "NO_APP_FILE", "message": "app.py not found\nmore"},
    )
    assert text == "Commit abcdef0 not built: app.py not found"


def test_an_unknown_kind_is_still_a_sentence() -> None:
    assert describe("branch.created", "ann", {}) == "branch created by ann"
