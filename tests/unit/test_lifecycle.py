"""What owners do to a Space (orchestrator/spaces/lifecycle.py), against a real database:
each action writes only the spec and its event, in one transaction (a failed action leaves
neither), never the observed status, and two concurrent actions both land."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, select

from orchestrator.billing import accounts
from orchestrator.builds import tasks
from orchestrator.builds.deploy import deploy_commit
from orchestrator.core import auth, db, events
from orchestrator.core.models import (
    Build,
    BuildStatus,
    Event,
    Secret,
    Space,
    Stage,
    User,
    Variable,
    Visibility,
)
from orchestrator.core.status import change_spec
from orchestrator.repos import store as repos
from orchestrator.spaces import lifecycle
from orchestrator.spaces import registry as spaces

SECRET_VALUE = "hunter2-very-secret"
SAMPLE = Path(__file__).resolve().parents[2] / "sample_spaces" / "hello"
Action = Callable[[Session, Space], None]


def _space(session: Session, name: str = "demo", sdk: str = "gradio") -> Space:
    """A built, running Space, as the pipeline and the controller leave it."""
    alice = auth.get_or_create_user(session, "alice")
    space = spaces.create_space(session, alice, name, sdk=sdk)
    change_spec(session, space, head_sha="a" * 40, built_sha="a" * 40, built_image="img:a")
    if accounts.balance_of(session, alice.id or 0) <= 0:  # paid tiers need credit (402)
        accounts.grant(session, alice, 10 * accounts.MICRO, actor="admin")
    session.commit()
    space.stage, space.serving_address = Stage.RUNNING, "http://127.0.0.1:1"
    space.observed_spec_version = space.spec_version
    session.add(space)
    session.commit()
    return space


def _events(session: Session, space_id: int | None = None) -> list[Event]:
    return events.after(session, 0, space_id=space_id)


def _new_user(session: Session) -> User:
    return auth.get_or_create_user(session, "bob")


# name -> (action, the event kind it appends, a check of the spec it wrote)
ACTIONS: dict[str, tuple[Action, str, Callable[[Space], bool]]] = {
    "pause": (
        lambda s, sp: lifecycle.pause(s, sp, actor="alice"),
        "paused",
        lambda sp: sp.paused,
    ),
    "restart": (
        lambda s, sp: lifecycle.restart(s, sp, actor="alice"),
        "restarted",
        lambda sp: sp.restart_count == 1 and not sp.paused,
    ),
    "hardware": (
        lambda s, sp: lifecycle.request_hardware(s, sp, "cpu-upgrade", actor="alice"),
        "hardware.requested",
        lambda sp: sp.requested_hardware == "cpu-upgrade",
    ),
    "sleep_time": (
        lambda s, sp: lifecycle.set_sleep_time(s, sp, 600, actor="alice"),
        "sleep_time.changed",
        lambda sp: sp.sleep_time_seconds == 600,
    ),
    "visibility": (
        lambda s, sp: lifecycle.set_visibility(s, sp, Visibility.PRIVATE, actor="alice"),
        "visibility.changed",
        lambda sp: sp.visibility == Visibility.PRIVATE,
    ),
    "secret": (
        lambda s, sp: lifecycle.upsert(s, sp, Secret, "TOKEN", SECRET_VALUE, actor="alice"),
        "secret.set",
        lambda sp: True,
    ),
    "variable": (
        lambda s, sp: lifecycle.upsert(s, sp, Variable, "MODE", "fast", actor="alice"),
        "variable.set",
        lambda sp: True,
    ),
    "move": (
        lambda s, sp: lifecycle.move(s, sp, _new_user(s), "renamed", actor="alice"),
        "space.moved",
        lambda sp: sp.full_name == "bob/renamed",
    ),
}


@pytest.mark.parametrize("name", sorted(ACTIONS))
def test_each_action_writes_its_spec_and_event_and_no_status(database: str, name: str) -> None:
    action, kind, wrote = ACTIONS[name]
    with Session(db.get_engine()) as session:
        space = _space(session)
        before = (space.spec_version, space.status_version, space.stage, space.serving_address)
        seen = events.newest_id(session)
        action(session, space)
        session.expire_all()
        space = session.get(Space, space.id)  # type: ignore[assignment]
        assert space is not None and wrote(space)
        assert space.spec_version > before[0]  # the controller learns the spec moved on
        # No status write: the stage and the serving instance are the controller's.
        assert (space.status_version, space.stage, space.serving_address) == before[1:]
        new = events.after(session, seen)
        assert [(e.kind, e.actor, e.space_id) for e in new] == [(kind, "alice", space.id)]
        assert SECRET_VALUE not in new[0].data


def test_the_events_say_what_changed(session: Session) -> None:
    space = _space(session)
    lifecycle.request_hardware(session, space, "cpu-upgrade", 3600, actor="alice")
    lifecycle.set_visibility(session, space, Visibility.PRIVATE, actor="alice")
    lifecycle.upsert(session, space, Secret, "TOKEN", SECRET_VALUE, actor="alice")
    lifecycle.remove(session, space, Secret, "TOKEN", actor="alice")
    lifecycle.remove(session, space, Secret, "NEVER_SET", actor="alice")  # nothing: no event
    lifecycle.move(session, space, _new_user(session), "renamed", actor="alice")
    got = [(e.kind, json.loads(e.data)) for e in _events(session, space.id)][-6:]
    assert got == [
        ("hardware.requested", {"from": "cpu-basic", "to": "cpu-upgrade"}),
        ("sleep_time.changed", {"to": 3600}),
        ("visibility.changed", {"from": "public", "to": "private"}),
        ("secret.set", {"key": "TOKEN"}),
        ("secret.deleted", {"key": "TOKEN"}),
        ("space.moved", {"from": "alice/demo", "to": "bob/renamed"}),
    ]


def test_asking_for_what_is_already_there_writes_nothing(session: Session) -> None:
    space = _space(session)
    lifecycle.pause(session, space, actor="alice")
    version, seen = space.spec_version, events.newest_id(session)
    lifecycle.pause(session, space, actor="alice")
    lifecycle.request_hardware(session, space, "cpu-basic", actor="alice")
    lifecycle.set_sleep_time(session, space, -1, actor="alice")
    lifecycle.set_visibility(session, space, Visibility.PUBLIC, actor="alice")
    assert space.spec_version == version and events.newest_id(session) == seen


def test_a_restart_unpauses_and_a_push_does_not(session: Session) -> None:
    space = _space(session)
    lifecycle.pause(session, space, actor="alice")
    assert space.paused
    lifecycle.restart(session, space, actor="alice")
    assert not space.paused and space.restart_count == 1


def test_a_factory_reboot_rebuilds_without_the_cache(
    session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    deployed: list[tuple[str, bool, str]] = []

    def deploy(
        session: Session, space: Space, sha: str, *, no_cache: bool = False, actor: str
    ) -> None:
        deployed.append((sha, no_cache, actor))
        session.commit()

    monkeypatch.setattr(lifecycle, "deploy_commit", deploy)
    space = _space(session)
    lifecycle.restart(session, space, actor="alice", factory=True)
    assert deployed == [("a" * 40, True, "alice")]
    last = _events(session, space.id)[-1]
    assert (last.kind, json.loads(last.data)) == ("restarted", {"factory_reboot": True})


@pytest.mark.parametrize("failing", ["event", "spec"])
@pytest.mark.parametrize("name", sorted(ACTIONS))
def test_a_failed_action_leaves_neither_spec_nor_event(
    session: Session, monkeypatch: pytest.MonkeyPatch, name: str, failing: str
) -> None:
    action = ACTIONS[name][0]
    space = _space(session)
    space_id, version, seen = space.id, space.spec_version, events.newest_id(session)

    def fail(*_: Any, **__: Any) -> None:
        raise RuntimeError("the database went away")

    if failing == "event":  # after the spec write
        monkeypatch.setattr(events, "record", fail)
    else:  # after the event, for actions that record first
        monkeypatch.setattr(lifecycle, "change_spec", fail)
    with pytest.raises(RuntimeError, match="went away"):
        action(session, space)
    session.rollback()
    monkeypatch.undo()
    with Session(db.get_engine()) as fresh:
        row = fresh.get(Space, space_id)
        assert row is not None and row.spec_version == version
        assert (row.owner, row.name, row.paused, row.restart_count) == ("alice", "demo", False, 0)
        assert events.newest_id(fresh) == seen
        assert fresh.exec(select(Secret)).first() is None
        assert fresh.exec(select(Variable)).first() is None
    assert repos.repo_path("alice", "demo").exists()  # a failed move leaves the repo


def test_two_concurrent_owner_actions_both_land(database: str) -> None:
    """Each session read the Space before the other wrote: no write undoes the other one,
    and two restarts at once are two restarts (the generation is bumped in SQL)."""
    with Session(db.get_engine()) as setup:
        space_id = _space(setup).id
    with Session(db.get_engine()) as one, Session(db.get_engine()) as two:
        first, second = one.get(Space, space_id), two.get(Space, space_id)
        assert first is not None and second is not None
        version = first.spec_version
        lifecycle.restart(one, first, actor="alice")
        lifecycle.restart(two, second, actor="bob")
        lifecycle.set_sleep_time(one, first, 300, actor="alice")
        lifecycle.request_hardware(two, second, "cpu-upgrade", actor="bob")
    with Session(db.get_engine()) as fresh:
        row = fresh.get(Space, space_id)
        assert row is not None
        assert row.restart_count == 2 and row.spec_version == version + 4
        assert (row.sleep_time_seconds, row.requested_hardware) == (300, "cpu-upgrade")
        kinds = [e.kind for e in _events(fresh, space_id)][-4:]
        assert kinds == ["restarted", "restarted", "sleep_time.changed", "hardware.requested"]


def test_create_and_delete_are_events_and_a_failed_create_leaves_nothing(
    session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = auth.get_or_create_user(session, "alice")
    space = spaces.create_space(
        session, alice, "demo", visibility=Visibility.PRIVATE, actor="admin"
    )
    space_id = space.id
    lifecycle.delete(session, space, actor="alice")
    got = [(e.kind, e.actor, e.space_id, json.loads(e.data)) for e in _events(session)]
    assert got == [
        ("space.created", "admin", space_id, {"visibility": "private", "hardware": "cpu-basic"}),
        ("space.deleted", "alice", space_id, {}),
    ]

    def no_repo(*_: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(repos, "init_bare", no_repo)
    with pytest.raises(OSError):
        spaces.create_space(session, alice, "other")
    assert session.exec(select(Space)).first() is None
    assert len(_events(session)) == 2


def test_a_duplicate_is_created_with_its_origin_and_its_variables(session: Session) -> None:
    source = _space(session)
    lifecycle.upsert(session, source, Variable, "MODE", "fast", actor="alice")
    bob = _new_user(session)
    copy = lifecycle.duplicate(
        session,
        source,
        bob,
        "copy",
        actor="bob",
        sleep_time=600,
        secrets=[{"key": "TOKEN", "value": SECRET_VALUE}],
    )
    got = [(e.kind, e.actor, json.loads(e.data)) for e in _events(session, copy.id)]
    assert got == [
        (
            "space.created",
            "bob",
            {"visibility": "public", "hardware": "cpu-basic", "duplicated_from": "alice/demo"},
        ),
        ("variable.set", "bob", {"key": "MODE"}),
        ("secret.set", "bob", {"key": "TOKEN"}),
        ("sleep_time.changed", "bob", {"to": 600}),
    ]
    assert copy.sleep_time_seconds == 600 and copy.duplicated_from == "alice/demo"
    assert not any(SECRET_VALUE in e.data for e in _events(session))


def _push_sample(space: Space, workdir: Path) -> str:
    """The hello sample committed straight into the Space's bare repo; its sha."""
    work = workdir / "checkout"
    shutil.copytree(SAMPLE, work)
    identity = ["-c", "user.name=t", "-c", "user.email=t@localhost"]
    for command in (
        ["init", "-q", "--initial-branch=main"],
        ["add", "-A"],
        [*identity, "commit", "-q", "-m", "hello"],
        ["push", "-q", str(repos.repo_path(space.owner, space.name)), "main"],
    ):
        subprocess.run(["git", *command], cwd=work, check=True)
    return subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=work, check=True, capture_output=True, text=True
    ).stdout.strip()


def test_a_push_builds_a_paused_space_but_does_not_wake_it(
    session: Session, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[int] = []
    monkeypatch.setattr(tasks.build_task, "delay", lambda build_id: sent.append(build_id))
    space = _space(session)
    lifecycle.pause(session, space, actor="alice")
    sha = _push_sample(space, tmp_path)
    build = deploy_commit(session, space, sha, actor="alice")
    assert build is not None and sent == [build.id]
    session.expire_all()
    row = session.get(Space, space.id)
    assert row is not None and row.paused and row.head_sha == sha
    lifecycle.restart(session, row, actor="alice")  # only the owner wakes it
    assert not row.paused


@pytest.mark.parametrize(("sdk", "rebuilds"), [("docker", True), ("gradio", False)])
def test_a_variable_rebuilds_a_docker_space_and_restarts_the_others(
    session: Session, monkeypatch: pytest.MonkeyPatch, sdk: str, rebuilds: bool
) -> None:
    """Variables are a docker Space's build args; elsewhere only its environment."""
    deployed: list[str] = []

    def deploy(session: Session, space: Space, sha: str, *, actor: str) -> None:
        deployed.append(actor)
        session.commit()

    monkeypatch.setattr(lifecycle, "deploy_commit", deploy)
    space = _space(session, sdk=sdk)
    version = space.spec_version
    lifecycle.upsert(session, space, Variable, "MODE", "fast", actor="alice")
    assert deployed == (["alice"] if rebuilds else [])
    assert space.spec_version == version + 1


def test_deleting_cancels_its_builds_in_the_name_of_who_deleted(session: Session) -> None:
    space = _space(session)
    session.add(Build(space_id=space.id or 0, commit_sha="a" * 40, status=BuildStatus.QUEUED))
    session.commit()
    space_id = space.id
    lifecycle.delete(session, space, actor="alice")
    got = [(e.kind, e.actor) for e in _events(session, space_id)][-2:]
    assert got == [("build.cancelled", "alice"), ("space.deleted", "alice")]
    assert session.exec(select(Build)).first() is None


def test_a_refused_request_writes_nothing(session: Session) -> None:
    space = _space(session)
    version, seen = space.spec_version, events.newest_id(session)
    with pytest.raises(lifecycle.LifecycleError, match="-1 to never sleep"):
        lifecycle.request_hardware(session, space, "cpu-upgrade", -5, actor="alice")
    with pytest.raises(lifecycle.LifecycleError, match="invalid key"):
        lifecycle.upsert(session, space, Secret, "1BAD", SECRET_VALUE, actor="alice")
    assert not session.new and not session.dirty  # nothing pending for a later commit
    session.rollback()
    assert space.spec_version == version and space.requested_hardware == "cpu-basic"
    assert events.newest_id(session) == seen
