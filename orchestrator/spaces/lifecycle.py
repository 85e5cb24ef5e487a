"""What owners do to a Space besides pushing: pause, restart, change hardware, sleep time,
visibility, variables and secrets, move, delete, duplicate.

Each of these writes only the spec (`core.status.change_spec`) and appends its event
(`core.events.record`, actor = who asked) in one transaction: a failed action leaves
neither. None writes the stage or any other observed field: the controller sees the event
on the change feed, derives the stage from the new spec and carries it out (where an image
must change, through a build). So "changing a variable restarts the Space" holds by
construction: the variable is part of the revision the controller runs.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from typing import Any

from sqlmodel import Session, select

from orchestrator.billing import accounts
from orchestrator.builds.deploy import deploy_commit
from orchestrator.builds.runner import cancel_active_builds, now
from orchestrator.community import discussions, likes
from orchestrator.core import events
from orchestrator.core.events import EventKind
from orchestrator.core.models import (
    Build,
    BuildLogLine,
    LfsObject,
    OAuthCode,
    Secret,
    Space,
    SpaceHostAlias,
    SpaceNameAlias,
    User,
    Variable,
    Visibility,
)
from orchestrator.core.status import change_spec
from orchestrator.repos import lfs
from orchestrator.repos import store as repos
from orchestrator.spaces import registry as spaces
from sandbox.hardware import requestable_tier

EnvKind = type[Secret] | type[Variable]
_SET = {Secret: EventKind.SECRET_SET, Variable: EventKind.VARIABLE_SET}
_DELETED = {Secret: EventKind.SECRET_DELETED, Variable: EventKind.VARIABLE_DELETED}


class LifecycleError(ValueError):
    """A request that can't be carried out; the message says why (HTTP 400 or 409)."""


def _spec(session: Session, space: Space, **fields: Any) -> None:
    """change_spec, flushed at once: the UPDATE (``spec_version + 1`` and any other SQL
    expression in it) runs now, so the object reads plain values again afterwards."""
    change_spec(session, space, **fields)
    session.flush()


def pause(session: Session, space: Space, *, actor: str) -> None:
    """The owner's pause: spec, so a push builds a paused Space but does not wake it."""
    if space.sdk == "static":
        raise LifecycleError("static Spaces can't be paused: they cost nothing to run")
    if space.paused:
        return
    _spec(session, space, paused=True)
    events.record(session, EventKind.PAUSED, actor, space)
    session.commit()


def restart(session: Session, space: Space, *, actor: str, factory: bool = False) -> None:
    """Start the Space again (also after a pause or a crash); `factory` rebuilds it from
    scratch, without the layer cache. Each restart bumps the restart generation, which is
    part of the revision the controller runs: a new instance even when nothing else
    changed, and a revision that failed before is tried again."""
    rebuild = factory or not space.built_image
    if rebuild and not space.head_sha:
        raise LifecycleError("nothing to restart: push a commit first")
    # In SQL, so two restarts at once both count.
    _spec(session, space, paused=False, restart_count=Space.restart_count + 1)
    events.record(session, EventKind.RESTARTED, actor, space, factory_reboot=factory or None)
    if rebuild:
        assert space.head_sha is not None
        deploy_commit(session, space, space.head_sha, no_cache=factory, actor=actor)  # commits
        return
    session.commit()


def request_hardware(
    session: Session,
    space: Space,
    flavor: str | None,
    sleep_time: int | None = None,
    *,
    actor: str,
    notice: str | None = None,
) -> None:
    """A new tier (and sleep time). A paid tier needs the owner's credit (OutOfCredit, the
    API's 402). `notice`: why, when it is not the owner asking (billing's fallback); any
    request of the owner's clears the last one."""
    if sleep_time is not None:
        _check_sleep_time(sleep_time)  # before anything is written
    fields: dict[str, Any] = {}
    if flavor:  # gradio_client's duplicate may send null: keep what is there
        tier = requestable_tier(flavor).name
        if space.hardware_notice != notice:
            fields["hardware_notice"] = notice
        if tier != space.requested_hardware:
            _require_credit(session, space.owner_id, tier)
            fields["requested_hardware"] = tier
            events.record(
                session,
                EventKind.HARDWARE_REQUESTED,
                actor,
                space,
                **{"from": space.requested_hardware, "to": tier},
            )
    if sleep_time is not None:
        fields.update(_sleep_time_fields(session, space, sleep_time, actor))
    if fields:
        _spec(session, space, **fields)
    session.commit()


def _require_credit(session: Session, owner_id: int, tier: str) -> None:
    owner = session.get(User, owner_id)
    if owner is not None:
        accounts.require_credit(session, owner, tier)


def set_sleep_time(session: Session, space: Space, seconds: int, *, actor: str) -> None:
    fields = _sleep_time_fields(session, space, seconds, actor)
    if fields:
        _spec(session, space, **fields)
    session.commit()


def _sleep_time_fields(
    session: Session, space: Space, seconds: int, actor: str
) -> dict[str, int | None]:
    """The spec a new sleep time writes (none when unchanged), its event recorded."""
    _check_sleep_time(seconds)
    value = None if seconds == -1 else seconds
    if value == space.sleep_time_seconds:
        return {}
    events.record(
        session,
        EventKind.SLEEP_TIME_CHANGED,
        actor,
        space,
        **{"from": space.sleep_time_seconds, "to": value},
    )
    return {"sleep_time_seconds": value}


def _check_sleep_time(seconds: int) -> None:
    if seconds < -1:
        raise LifecycleError("sleep time is a number of seconds, or -1 to never sleep")


def set_visibility(session: Session, space: Space, visibility: Visibility, *, actor: str) -> None:
    if visibility != space.visibility:
        old = space.visibility
        _spec(session, space, visibility=visibility)
        events.record(
            session,
            EventKind.VISIBILITY_CHANGED,
            actor,
            space,
            **{"from": str(old), "to": str(visibility)},
        )
    session.commit()


def _env_changed(session: Session, space: Space, actor: str) -> None:
    """Variables are docker Spaces' build args: those need a new image; every other
    Space just restarts with the new environment (its revision changes). Either way the
    spec moved on, so the Space is not shown RUNNING until the controller caught up."""
    _spec(session, space)
    if space.sdk == "docker" and space.head_sha:
        deploy_commit(session, space, space.head_sha, actor=actor)  # commits
    else:
        session.commit()


def _check_key(key: str) -> None:
    if not key or not key.replace("_", "a").isalnum() or key[0].isdigit():
        raise LifecycleError(
            f"invalid key {key!r}: use letters, digits and underscores, not starting with a digit"
        )


def upsert(
    session: Session,
    space: Space,
    kind: EnvKind,
    key: str,
    value: str,
    description: str | None = None,
    *,
    actor: str,
) -> None:
    _check_key(key)
    _put_row(session, space, kind, key, value, description, actor)
    _env_changed(session, space, actor)


def _put_row(
    session: Session,
    space: Space,
    kind: EnvKind,
    key: str,
    value: str,
    description: str | None,
    actor: str,
) -> None:
    """Add or replace one secret or variable, with its event (its key only: never the value)."""
    row = session.exec(select(kind).where(kind.space_id == space.id, kind.key == key)).first()
    if row is None:
        row = kind(space_id=space.id, key=key, value=value, description=description)
    else:
        row.value = value
        row.description = description if description is not None else row.description
        row.updated_at = now()
    session.add(row)
    session.flush()  # the next lookup of the same key (a list naming it twice) finds it
    events.record(session, _SET[kind], actor, space, key=key)


def remove(session: Session, space: Space, kind: EnvKind, key: str, *, actor: str) -> None:
    row = session.exec(select(kind).where(kind.space_id == space.id, kind.key == key)).first()
    if row is not None:
        session.delete(row)
        events.record(session, _DELETED[kind], actor, space, key=key)
        _env_changed(session, space, actor)


def fill_new_space(
    session: Session,
    space: Space,
    *,
    actor: str,
    secrets: list[dict[str, Any]] | None = None,
    variables: list[dict[str, Any]] | None = None,
    sleep_time: int | None = None,
) -> None:
    """What a create or a duplicate asks besides the Space itself: its secrets, variables
    and sleep time, each with its event. Not committed."""
    for kind, items in ((Variable, variables), (Secret, secrets)):
        for item in items or []:
            _put_row(
                session, space, kind, item["key"], item["value"], item.get("description"), actor
            )
    if sleep_time is not None:
        fields = _sleep_time_fields(session, space, sleep_time, actor)
        if fields:
            _spec(session, space, **fields)


def delete(session: Session, space: Space, *, actor: str) -> None:
    """Rows and repo go now; the controller stops the instances of a Space it no longer
    finds. The Space's events stay: its history outlives it."""
    assert space.id is not None
    cancel_active_builds(session, space.id, "cancelled: the Space was deleted", actor=actor)
    build_ids = [b.id for b in session.exec(select(Build).where(Build.space_id == space.id))]
    for model, column in ((Secret, Secret.space_id), (Variable, Variable.space_id)):
        for row in session.exec(select(model).where(column == space.id)):
            session.delete(row)
    for line in session.exec(select(BuildLogLine).where(BuildLogLine.build_id.in_(build_ids))):  # type: ignore[attr-defined]
        session.delete(line)
    for build in session.exec(select(Build).where(Build.space_id == space.id)):
        session.delete(build)
    # Its discussions, pull requests and likes go with it, as on the Hub.
    discussions.delete_for_space(session, space.id)
    likes.delete_for_space(session, space.id)
    _delete_extra_rows(session, space.id)
    session.flush()  # the rows that point at the Space go first, whatever the flush order
    events.record(session, EventKind.SPACE_DELETED, actor, space)
    owner, name = space.owner, space.name
    session.delete(space)
    session.commit()
    repos.delete_repo(owner, name)


def _delete_extra_rows(session: Session, space_id: int) -> None:
    """Rows of other modules that point at the Space: its LFS object records (the objects
    stay in the shared store while other Spaces may use them) and its old host labels (free
    again: nothing redirects to a deleted Space)."""
    for row in session.exec(select(LfsObject).where(LfsObject.space_id == space_id)):
        session.delete(row)
    for alias in session.exec(select(SpaceHostAlias).where(SpaceHostAlias.space_id == space_id)):
        session.delete(alias)
    for old in session.exec(select(SpaceNameAlias).where(SpaceNameAlias.space_id == space_id)):
        session.delete(old)  # and its old ids
    for code in session.exec(select(OAuthCode).where(OAuthCode.space_id == space_id)):
        session.delete(code)  # its sign-in's unredeemed codes


def move(session: Session, space: Space, new_owner: User, new_name: str, *, actor: str) -> None:
    """Rename: the old id redirects to the new one (registry.keep_old_name) until another
    Space takes it. A change of case only (`alice/demo` to `alice/Demo`) is a rename too."""
    if spaces.get_space(session, new_owner.name, new_name) not in (None, space):
        raise LifecycleError(f"{new_owner.name}/{new_name} already exists")
    if not spaces.valid_name(new_name):
        raise LifecycleError(f"invalid Space name {new_name!r}")
    old_name = space.full_name
    source = repos.repo_path(space.owner, space.name)
    target = repos.repo_path(new_owner.name, new_name)
    target.parent.mkdir(parents=True, exist_ok=True)
    spaces.rehost(session, space, new_owner.name, new_name)  # the old host redirects
    spaces.keep_old_name(session, space, new_owner.name, new_name)  # and so does the old id
    # Identity, not spec or status: written here, with the spec bumped. SPACE_ID and
    # SPACE_HOST change, so the controller restarts it under its new name, and until it
    # has (observed this spec) a RUNNING Space is shown RUNNING_APP_STARTING
    # (stages.shown_stage): clients that wait for RUNNING and then call the new host find
    # the app that knows it is served there.
    space.owner, space.name, space.owner_id = new_owner.name, new_name, new_owner.id or 0
    _spec(session, space)
    events.record(
        session, EventKind.SPACE_MOVED, actor, space, **{"from": old_name, "to": space.full_name}
    )
    shutil.move(source, target)
    try:
        session.commit()
    except Exception:
        shutil.move(target, source)  # the row kept its old name: so does the repo
        raise


@contextlib.contextmanager
def undone_on_failure(session: Session, space: Space, *, actor: str) -> Iterator[None]:
    """The steps that complete a just-created Space (its secrets, variables, history, LFS
    records, first build): if one fails, the Space goes again, row and repo, so a failed
    create or duplicate leaves nothing behind and can simply be retried."""
    try:
        yield
    except BaseException:
        session.rollback()
        with contextlib.suppress(Exception):  # the first failure is the one to report
            delete(session, space, actor=actor)
        raise


def duplicate(
    session: Session,
    source: Space,
    owner: User,
    name: str,
    *,
    actor: str,
    visibility: Visibility | None = None,
    hardware: str | None = None,
    sleep_time: int | None = None,
    secrets: list[dict[str, str]] | None = None,
    variables: list[dict[str, str]] | None = None,
) -> Space:
    """A new Space with the source's full history, LFS objects and variables (secrets only
    when given). Its tree is the source's, so its build reuses the source's image."""
    if spaces.get_space(session, owner.name, name) is not None:
        raise LifecycleError(f"{owner.name}/{name} already exists")
    if hardware:
        accounts.require_credit(session, owner, requestable_tier(hardware).name)
    copy = spaces.create_space(
        session,
        owner,
        name,
        sdk=source.sdk,
        visibility=visibility or source.visibility,
        hardware=requestable_tier(hardware).name if hardware else "cpu-basic",
        duplicated_from=source.full_name,
        actor=actor,
    )
    with undone_on_failure(session, copy, actor=actor):
        _fill_duplicate(session, source, copy, actor, sleep_time, secrets, variables)
    return copy


def _fill_duplicate(
    session: Session,
    source: Space,
    copy: Space,
    actor: str,
    sleep_time: int | None,
    secrets: list[dict[str, str]] | None,
    variables: list[dict[str, str]] | None,
) -> None:
    target = repos.repo_path(copy.owner, copy.name)
    # Every ref and object of the source, into the empty bare repo create_space made.
    subprocess.run(
        [
            "git",
            "-C",
            str(target),
            "fetch",
            "--quiet",
            str(repos.repo_path(source.owner, source.name)),
            # Branches and tags; not refs/pr/*: a duplicate has none of the source's
            # pull requests (nor discussions, nor likes), as on the Hub.
            "+refs/heads/*:refs/heads/*",
            "+refs/tags/*:refs/tags/*",
        ],
        check=True,
        capture_output=True,
    )
    assert source.id is not None and copy.id is not None
    # The source's variables, then what the request asks (which wins on a shared key).
    inherited = {
        row.key: {"key": row.key, "value": row.value, "description": row.description}
        for row in session.exec(select(Variable).where(Variable.space_id == source.id))
    }
    wanted: Mapping[str, dict[str, Any]] = inherited | {v["key"]: v for v in variables or []}
    fill_new_space(
        session,
        copy,
        actor=actor,
        secrets=secrets,
        variables=list(wanted.values()),
        sleep_time=sleep_time,
    )
    lfs.copy_records(session, source.id, copy.id)
    session.commit()
    head = repos.resolve(target, repos.DEPLOY_REF)
    if head:
        deploy_commit(session, copy, head, actor=actor)
