"""A build runs exactly once however its task is delivered: claimed with one conditional
UPDATE, and re-sent by the housekeeping when its message never reached a worker; on both
stacks."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlmodel import Session, select

from orchestrator.builds import runner as builds
from orchestrator.builds import tasks
from orchestrator.core import auth, db
from orchestrator.core.models import Build, BuildLogLine, BuildStatus
from orchestrator.core.settings import get_settings
from orchestrator.spaces import registry as spaces


@pytest.fixture
def session(database: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Session]:
    """On each stack (tests/unit/conftest.py's `database`)."""
    monkeypatch.setenv("SPACEPORT_BUILD_RESEND_AFTER_SECONDS", "30")
    get_settings.cache_clear()
    with Session(db.get_engine()) as session:
        yield session


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The build ids whose task was sent, instead of sending them."""
    ids: list[int] = []
    monkeypatch.setattr(tasks.build_task, "delay", lambda build_id: ids.append(build_id))
    return ids


def queued_build(session: Session, age_seconds: float = 0) -> int:
    user = auth.get_or_create_user(session, "alice")
    space = spaces.create_space(session, user, f"demo{age_seconds:g}".replace(".", "-"))
    build = Build(
        space_id=space.id or 0,
        commit_sha="a" * 40,
        status=BuildStatus.QUEUED,
        created_at=builds.now() - timedelta(seconds=age_seconds),
    )
    session.add(build)
    session.commit()
    assert build.id is not None
    return build.id


def status(session: Session, build_id: int) -> BuildStatus:
    session.expire_all()
    build = session.get(Build, build_id)
    assert build is not None
    return BuildStatus(build.status)


def test_a_queued_build_is_claimed_once(session: Session) -> None:
    build_id = queued_build(session)
    assert builds.claim_build(session, build_id)
    assert status(session, build_id) == BuildStatus.RUNNING
    assert not builds.claim_build(session, build_id)  # a second delivery


def test_two_deliveries_racing_claim_it_once(session: Session) -> None:
    build_id = queued_build(session)
    results: list[bool] = []
    barrier = threading.Barrier(4)

    def deliver() -> None:
        with db.session_scope() as own:
            barrier.wait()
            results.append(builds.claim_build(own, build_id))

    threads = [threading.Thread(target=deliver) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False, False, False, True]


def test_a_redelivered_task_of_a_claimed_build_does_nothing(session: Session) -> None:
    build_id = queued_build(session)
    assert builds.claim_build(session, build_id)
    before = session.get(Build, build_id)
    assert before is not None
    started, worker = before.started_at, before.worker
    # The task body: it would build (and fail: no repository here) if it ran the build.
    tasks.build_task.run(build_id)
    session.expire_all()
    after = session.get(Build, build_id)
    assert after is not None
    assert (after.status, after.started_at, after.worker) == (
        BuildStatus.RUNNING,
        started,
        worker,
    )
    assert not session.exec(select(BuildLogLine).where(BuildLogLine.build_id == build_id)).all()


def test_a_cancelled_build_is_not_run(session: Session) -> None:
    build_id = queued_build(session)
    build = session.get(Build, build_id)
    assert build is not None
    builds.cancel_active_builds(session, build.space_id, "cancelled: superseded")
    session.commit()
    assert not builds.claim_build(session, build_id)
    assert status(session, build_id) == BuildStatus.CANCELLED


def test_a_lost_build_is_resent_after_the_setting_and_not_before(
    session: Session, sent: list[int]
) -> None:
    fresh = queued_build(session, age_seconds=5)
    lost = queued_build(session, age_seconds=31)
    assert builds.resend_lost_builds() == 1
    assert sent == [lost]
    # Sent just now: not again on the next housekeeping tick.
    assert builds.resend_lost_builds() == 0
    assert sent == [lost] and status(session, fresh) == BuildStatus.QUEUED


def test_a_build_waiting_long_is_resent_less_often(session: Session, sent: list[int]) -> None:
    build_id = queued_build(session, age_seconds=600)
    build = session.get(Build, build_id)
    assert build is not None
    # Last sent 100 s ago, 500 s after it was queued: it waits 300 s (10 x 30 s) now.
    build.heartbeat_at = builds.now() - timedelta(seconds=100)
    session.add(build)
    session.commit()
    assert builds.resend_lost_builds() == 0
    build.heartbeat_at = builds.now() - timedelta(seconds=301)
    session.add(build)
    session.commit()
    assert builds.resend_lost_builds() == 1 and sent == [build_id]


def test_only_queued_builds_are_resent(session: Session, sent: list[int]) -> None:
    build_id = queued_build(session, age_seconds=120)
    assert builds.claim_build(session, build_id)
    assert builds.resend_lost_builds() == 0 and sent == []
