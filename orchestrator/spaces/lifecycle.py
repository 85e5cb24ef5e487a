"""What owners do to a Space besides pushing: pause, restart, change hardware, sleep time,
variables and secrets, move, delete, duplicate.

These only change the desired state in the database; the reconciler (and, where an image
must change, a build) carries it out. So "changing a variable restarts the Space" holds by
construction: the variable is part of the revision the reconciler runs.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Iterator

from sqlmodel import Session, select

from orchestrator.builds.deploy import deploy_commit
from orchestrator.builds.runner import cancel_active_builds, now
from orchestrator.controller.reconciler import HALTED_STAGES
from orchestrator.core.models import (
    Build,
    BuildLogLine,
    LfsObject,
    Secret,
    Space,
    SpaceHostAlias,
    Stage,
    User,
    Variable,
    Visibility,
)
from orchestrator.repos import lfs
from orchestrator.repos import store as repos
from orchestrator.spaces import registry as spaces
from sandbox.hardware import get_tier


class LifecycleError(ValueError):
    """A request that can't be carried out; the message says why (HTTP 400 or 409)."""


def _touch(session: Session, space: Space) -> None:
    space.updated_at = now()
    session.add(space)
    session.commit()


def pause(session: Session, space: Space) -> None:
    if space.sdk == "static":
        raise LifecycleError("static Spaces can't be paused: they cost nothing to run")
    space.stage = Stage.PAUSED
    _touch(session, space)


def restart(session: Session, space: Space, *, factory: bool = False) -> None:
    """Start the Space again (also after a pause or a crash); `factory` rebuilds it from
    scratch, without the layer cache."""
    space.failed_revision = None
    if factory or not space.built_image:
        if not space.head_sha:
            raise LifecycleError("nothing to restart: push a commit first")
        space.stage = Stage.RUNNING_BUILDING if space.serving_address else Stage.BUILDING
        session.add(space)
        deploy_commit(session, space, space.head_sha, no_cache=factory)
        return
    space.stage = Stage.APP_STARTING
    # A restart means a new container even when nothing else changed.
    space.restart_count += 1
    _touch(session, space)


def request_hardware(
    session: Session, space: Space, flavor: str | None, sleep_time: int | None = None
) -> None:
    if flavor:  # gradio_client's duplicate may send null: keep what is there
        space.requested_hardware = get_tier(flavor).name
    if sleep_time is not None:
        set_sleep_time(session, space, sleep_time, commit=False)
    _touch(session, space)


def set_sleep_time(session: Session, space: Space, seconds: int, commit: bool = True) -> None:
    if seconds < -1:
        raise LifecycleError("sleep time is a number of seconds, or -1 to never sleep")
    space.sleep_time_seconds = None if seconds == -1 else seconds
    if commit:
        _touch(session, space)


def _env_changed(session: Session, space: Space) -> None:
    """Variables are docker Spaces' build args: those need a new image; every other
    Space just restarts with the new environment (the reconciler sees a new revision)."""
    space.failed_revision = None
    if space.sdk == "docker" and space.head_sha:
        deploy_commit(session, space, space.head_sha)
    else:
        _touch(session, space)


def upsert(
    session: Session,
    space: Space,
    kind: type[Secret] | type[Variable],
    key: str,
    value: str,
    description: str | None = None,
) -> None:
    if not key or not key.replace("_", "a").isalnum() or key[0].isdigit():
        raise LifecycleError(
            f"invalid key {key!r}: use letters, digits and underscores, not starting with a digit"
        )
    row = session.exec(select(kind).where(kind.space_id == space.id, kind.key == key)).first()
    if row is None:
        row = kind(space_id=space.id, key=key, value=value, description=description)
    else:
        row.value = value
        row.description = description if description is not None else row.description
        row.updated_at = now()
    session.add(row)
    session.commit()
    _env_changed(session, space)


def remove(session: Session, space: Space, kind: type[Secret] | type[Variable], key: str) -> None:
    row = session.exec(select(kind).where(kind.space_id == space.id, kind.key == key)).first()
    if row is not None:
        session.delete(row)
        session.commit()
        _env_changed(session, space)


def delete(session: Session, space: Space) -> None:
    """Rows and repo go now; the reconciler stops the containers of a Space it no longer
    finds."""
    assert space.id is not None
    cancel_active_builds(session, space.id, "cancelled: the Space was deleted")
    build_ids = [b.id for b in session.exec(select(Build).where(Build.space_id == space.id))]
    for model, column in ((Secret, Secret.space_id), (Variable, Variable.space_id)):
        for row in session.exec(select(model).where(column == space.id)):
            session.delete(row)
    for line in session.exec(select(BuildLogLine).where(BuildLogLine.build_id.in_(build_ids))):  # type: ignore[attr-defined]
        session.delete(line)
    for build in session.exec(select(Build).where(Build.space_id == space.id)):
        session.delete(build)
    _delete_extra_rows(session, space.id)
    session.flush()  # the rows that point at the Space go first, whatever the flush order
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


def move(session: Session, space: Space, new_owner: User, new_name: str) -> None:
    if spaces.get_space(session, new_owner.name, new_name) is not None:
        raise LifecycleError(f"{new_owner.name}/{new_name} already exists")
    if not spaces.valid_name(new_name):
        raise LifecycleError(f"invalid Space name {new_name!r}")
    source = repos.repo_path(space.owner, space.name)
    target = repos.repo_path(new_owner.name, new_name)
    target.parent.mkdir(parents=True, exist_ok=True)
    spaces.rehost(session, space, new_owner.name, new_name)  # the old host redirects
    space.owner, space.name, space.owner_id = new_owner.name, new_name, new_owner.id or 0
    # SPACE_ID and SPACE_HOST change: the reconciler restarts it under its new name. Until
    # that instance answers, the Space is not RUNNING: clients that wait for RUNNING and
    # then call the new host must find the app that knows it is served there.
    space.failed_revision = None
    if space.built_image and space.head_sha == space.built_sha and space.stage not in HALTED_STAGES:
        space.stage = Stage.RUNNING_APP_STARTING if space.serving_address else Stage.APP_STARTING
    shutil.move(source, target)
    try:
        _touch(session, space)
    except Exception:
        shutil.move(target, source)  # the row kept its old name: so does the repo
        raise


@contextlib.contextmanager
def undone_on_failure(session: Session, space: Space) -> Iterator[None]:
    """The steps that complete a just-created Space (its secrets, variables, history, LFS
    records, first build): if one fails, the Space goes again, row and repo, so a failed
    create or duplicate leaves nothing behind and can simply be retried."""
    try:
        yield
    except BaseException:
        session.rollback()
        with contextlib.suppress(Exception):  # the first failure is the one to report
            delete(session, space)
        raise


def duplicate(
    session: Session,
    source: Space,
    owner: User,
    name: str,
    *,
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
    copy = spaces.create_space(
        session,
        owner,
        name,
        sdk=source.sdk,
        visibility=visibility or source.visibility,
        hardware=get_tier(hardware).name if hardware else "cpu-basic",
        duplicated_from=source.full_name,
    )
    with undone_on_failure(session, copy):
        _fill_duplicate(session, source, copy, sleep_time, secrets, variables)
    return copy


def _fill_duplicate(
    session: Session,
    source: Space,
    copy: Space,
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
            "+refs/*:refs/*",
        ],
        check=True,
        capture_output=True,
    )
    if sleep_time is not None:
        copy.sleep_time_seconds = None if sleep_time == -1 else sleep_time
    assert source.id is not None and copy.id is not None
    for row in session.exec(select(Variable).where(Variable.space_id == source.id)):
        session.add(
            Variable(space_id=copy.id, key=row.key, value=row.value, description=row.description)
        )
    for item in variables or []:
        _set_row(session, copy.id, Variable, item)
    for item in secrets or []:
        _set_row(session, copy.id, Secret, item)
    _copy_lfs(session, source.id, copy.id)
    session.add(copy)
    session.commit()
    head = repos.resolve(target, repos.DEPLOY_REF)
    if head:
        deploy_commit(session, copy, head)


def _set_row(
    session: Session, space_id: int, kind: type[Secret] | type[Variable], item: dict[str, str]
) -> None:
    session.flush()
    existing = session.exec(
        select(kind).where(kind.space_id == space_id, kind.key == item["key"])
    ).first()
    if existing is not None:
        existing.value = item["value"]
        session.add(existing)
    else:
        session.add(
            kind(
                space_id=space_id,
                key=item["key"],
                value=item["value"],
                description=item.get("description"),
            )
        )


def _copy_lfs(session: Session, from_id: int, to_id: int) -> None:
    lfs.copy_records(session, from_id, to_id)
