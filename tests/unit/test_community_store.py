"""Migration 0010 and the community rows on both databases: discussions and pull requests
share one number per Space, a like is once per user, a comment's edits are kept, and a
deleted Space takes its discussions, events and likes with it (lifecycle.delete)."""

from __future__ import annotations

import pytest
from alembic import command
from sqlalchemy import inspect
from sqlmodel import Session, select

from orchestrator.api.errors import HubError
from orchestrator.community import discussions, likes
from orchestrator.core import db
from orchestrator.core.auth import Principal, get_or_create_user
from orchestrator.core.models import (
    Discussion,
    DiscussionEvent,
    DiscussionStatus,
    SpaceLike,
    TokenRole,
)
from orchestrator.core.settings import get_settings
from orchestrator.spaces import lifecycle
from orchestrator.spaces import registry as spaces

TABLES = {"discussion", "discussionevent", "spacelike"}


def test_migration_0010_adds_the_tables_and_goes_back(database: str) -> None:
    assert TABLES <= set(inspect(db.get_engine()).get_table_names())
    config = db.alembic_config(get_settings().sqlalchemy_url)
    command.downgrade(config, "0009")
    assert not TABLES & set(inspect(db.get_engine()).get_table_names())
    command.upgrade(config, "head")
    assert TABLES <= set(inspect(db.get_engine()).get_table_names())


def test_numbers_edits_likes_and_cleanup(database: str) -> None:
    with Session(db.get_engine()) as session:
        alice = get_or_create_user(session, "alice")
        bob = get_or_create_user(session, "bob")
        space = spaces.create_space(session, alice, "demo")
        first = discussions.open_discussion(
            session, space, bob, "Hello", "first words", pull_request=False
        )
        session.commit()
        second = discussions.open_discussion(
            session,
            space,
            alice,
            "A change",
            "desc",
            pull_request=True,
            status=DiscussionStatus.DRAFT,
        )
        session.commit()
        assert (first.num, second.num) == (1, 2)  # one sequence for both, from 1

        bob_says = Principal(user=bob, role=TokenRole.WRITE, token_name="t")
        said = discussions.comment(session, space, first, bob, "more")
        session.commit()
        discussions.edit_comment(session, space, first, said, bob_says, "more, edited")
        session.commit()
        assert said.edited and said.content == "more, edited"
        alice_says = Principal(user=alice, role=TokenRole.WRITE, token_name="t")
        with pytest.raises(HubError) as refused:  # only the author edits a comment
            discussions.edit_comment(session, space, first, said, alice_says, "mine now")
        assert refused.value.status_code == 403

        found = discussions.page(
            session, space, index=0, kind="pull_request", status="open", author=None
        )
        assert [d.num for d in found.discussions] == [2] and found.count == 1
        found = discussions.page(session, space, index=0, kind=None, status=None, author="BOB")
        assert [d.num for d in found.discussions] == [1]

        assert likes.like(session, space, bob) is True
        assert likes.like(session, space, bob) is False  # once per user
        assert likes.counts(session, [space.id]) == {space.id: 1}
        assert [u.name for u in likes.likers(session, space)] == ["bob"]

        lifecycle.delete(session, space, actor="alice")
        for model in (Discussion, DiscussionEvent, SpaceLike):
            assert session.exec(select(model)).all() == []


def test_who_may_push_to_a_pull_request_ref(database: str) -> None:
    """git_http's admit check (community.pull_requests.check_push): refs/pr/N of an open
    pull request only, never deleted; a reader only their own and nothing else."""
    from orchestrator.community import pull_requests

    with Session(db.get_engine()) as session:
        alice = get_or_create_user(session, "alice")
        bob = get_or_create_user(session, "bob")
        carol = get_or_create_user(session, "carol")
        space = spaces.create_space(session, alice, "demo")
        talk = discussions.open_discussion(session, space, bob, "Talk", "t", pull_request=False)
        session.commit()
        pr = discussions.open_discussion(session, space, bob, "PR", "p", pull_request=True)
        session.commit()
        sha, zero = "1" * 40, "0" * 40
        ok = [(sha, "2" * 40, f"refs/pr/{pr.num}")]
        pull_requests.check_push(session, space, bob, False, ok)  # its author
        pull_requests.check_push(session, space, alice, True, ok)  # a writer
        refused = [
            (carol, False, ok),  # someone else's
            (bob, False, [(sha, "2" * 40, "refs/heads/main")]),  # a reader, not a PR
            (alice, True, [(sha, zero, f"refs/pr/{pr.num}")]),  # deleting it
            (alice, True, [(zero, sha, "refs/pr/99")]),  # no such pull request
            (alice, True, [(zero, sha, f"refs/pr/{talk.num}")]),  # a discussion
            (alice, True, [(zero, sha, "refs/pr/x")]),
        ]
        for user, writer, refs in refused:
            with pytest.raises(HubError) as caught:
                pull_requests.check_push(session, space, user, writer, refs)
            assert caught.value.status_code == 403, refs
        pull_requests.check_push(session, space, alice, True, [(sha, "2" * 40, "refs/heads/x")])
        pr.status = DiscussionStatus.MERGED
        session.add(pr)
        session.commit()
        with pytest.raises(HubError):
            pull_requests.check_push(session, space, bob, False, ok)


def test_a_long_commit_summary_is_cut_to_a_title(spaceport_home: object) -> None:
    title, body = discussions.fitted("x" * 1000, "")
    assert len(title) == 200 and title.endswith("\u2026")
    assert body == discussions.default_description(True)
    _, body = discussions.fitted("t", "é" * 40_000)  # 80,000 bytes: cut on a character
    assert len(body.encode()) <= 64 << 10 and body.endswith("\u2026")
    with pytest.raises(HubError) as refused:
        discussions.clean_title("y" * 201)
    assert refused.value.status_code == 413
