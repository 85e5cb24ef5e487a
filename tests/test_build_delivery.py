"""No build is lost between the database and the broker, and none runs twice, on a real
Spaceport per stack: a build queued without its message (a broker that lost it) is re-sent
by the housekeeping and completes; two deliveries of one build run it once."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlmodel import select

from orchestrator.builds import deploy, tasks
from orchestrator.core import db
from orchestrator.core.models import Space
from orchestrator.core.settings import get_settings
from tests.platform import Platform, push, sample_checkout

RESEND_AFTER = 30  # SPACEPORT_BUILD_RESEND_AFTER_SECONDS' default: what an install gets
SUCCEEDED = "Build succeeded"


@pytest.fixture
def platform_db(platform: Platform, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """This test process speaks to the platform's own database and broker."""
    for key, value in platform.env.items():
        if key.startswith("SPACEPORT_"):
            monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    db.get_engine.cache_clear()
    yield
    db.get_engine().dispose()
    get_settings.cache_clear()
    db.get_engine.cache_clear()


def built_space(platform: Platform, token: str, name: str, workdir: Path) -> str:
    push(sample_checkout("static_site", workdir), platform.git_url("alice", name, token))
    runtime = platform.wait_for_stage("alice", name)
    assert runtime["stage"] == "RUNNING", runtime
    return runtime["sha"]


def queue_without_sending(monkeypatch: pytest.MonkeyPatch, name: str, sha: str) -> int:
    """deploy_commit as a push runs it, with the broker dropping the message."""
    with monkeypatch.context() as patch:
        patch.setattr(tasks.build_task, "delay", lambda build_id: None)
        with db.session_scope() as session:
            space = session.exec(
                select(Space).where(Space.owner == "alice", Space.name == name)
            ).one()
            build = deploy.deploy_commit(session, space, sha)
            assert build is not None and build.id is not None
            return build.id


def wait_for_build(platform: Platform, name: str, build_id: int, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        build = next(b for b in platform.builds("alice", name) if b["id"] == build_id)
        if build["status"] not in ("queued", "running"):
            return build
        time.sleep(0.5)
    raise AssertionError(f"build {build_id} still {build['status']} after {timeout} s")


@pytest.fixture(scope="module")
def alice(platform: Platform) -> str:
    return platform.token("alice")


def test_a_build_whose_message_was_lost_is_resent_and_completes(
    platform: Platform,
    alice: str,
    platform_db: None,
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sha = built_space(platform, alice, "lost-message", workdir)
    queued_at = time.monotonic()
    build_id = queue_without_sending(monkeypatch, "lost-message", sha)
    # The controller derives it from the queued build of the head (the pipeline writes no
    # stage): within its first pass, long before the re-send.
    building = {"RUNNING_BUILDING"}
    assert platform.wait_for_stage("alice", "lost-message", stages=building, timeout=20)
    # Re-sent once it has been queued RESEND_AFTER s, on a housekeeping tick (every third).
    build = wait_for_build(platform, "lost-message", build_id, timeout=RESEND_AFTER * 2 + 120)
    assert build["status"] == "succeeded", build
    assert time.monotonic() - queued_at >= RESEND_AFTER * 0.9
    assert platform.build_log("alice", "lost-message", build_id).count(SUCCEEDED) == 1
    assert platform.wait_for_stage("alice", "lost-message")["stage"] == "RUNNING"


def test_two_deliveries_of_one_build_run_it_once(
    platform: Platform,
    alice: str,
    platform_db: None,
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sha = built_space(platform, alice, "twice-sent", workdir)
    build_id = queue_without_sending(monkeypatch, "twice-sent", sha)
    app = tasks.make_celery(get_settings())
    # Both at once, as a re-send racing the original, or Redis redelivering: the worker's
    # two threads take one each.
    for _ in range(2):
        app.send_task("spaceport.build", args=[build_id])
    build = wait_for_build(platform, "twice-sent", build_id, timeout=120)
    assert build["status"] == "succeeded", build
    log = platform.build_log("alice", "twice-sent", build_id)
    assert log.count(SUCCEEDED) == 1, log
