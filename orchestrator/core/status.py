"""Spec and status: who writes which of a Space's columns, and how no write is lost.

* The **spec** is what owners and the pipeline ask for: the head commit and why it can't be
  built, the built image, hardware, paused, sleep time, visibility, the restart generation,
  the run settings. The API, `spaces.lifecycle` and the build pipeline write it through
  `change_spec`, which bumps `spec_version` in the same UPDATE (`spec_version + 1` in SQL,
  so two concurrent bumps both count).
* The **status** is what the controller observes: the stage and its message, the serving
  instance, the current hardware, the revision that failed, its place in a line for
  hardware. Only the controller writes it,
  through `write_status`: one `UPDATE ... WHERE id = :id AND spec_version = :read AND
  status_version = :read`. A write computed from a read that is no longer true (the owner
  paused meanwhile, another controller wrote) matches no row and is dropped; the change
  that made it stale rang the change feed, so the controller looks again at once.

Each status write that changes something appends one event in the same transaction
(stage.changed, or status.changed naming the fields), which also rings the change feed.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event as sa_event
from sqlalchemy import update
from sqlmodel import Session

from orchestrator.core import events
from orchestrator.core.models import Space, Stage, utcnow

_PENDING = "spaceport_spec_changes"  # session.info: Spaces whose spec changed, by id
SPEC_FIELDS = frozenset(
    {
        "head_sha",
        "head_problem",
        "sdk",
        "card_data",
        "app_port",
        "startup_timeout_seconds",
        "built_sha",
        "built_image",
        "built_notes",  # what the built image differs in from the Hub (builder notes)
        "requested_hardware",
        "sleep_time_seconds",
        "visitor_concurrency",  # the owner's visitors at once (gateway/visitor_queue.py)
        "visibility",
        "paused",
        "restart_count",
        "duplicated_from",
        "volumes",  # the owner's volumes (orchestrator/volumes/spec.py)
        "hardware_notice",  # why billing moved it to cpu-basic (orchestrator/billing/)
    }
)
STATUS_FIELDS = frozenset(
    {
        "stage",
        "error_message",
        "serving_sha",
        "serving_image",
        "serving_address",
        "current_hardware",
        "failed_revision",
        "waiting_hardware",
        "waiting_since",
        "waiting_position",
        "sleep_depth",  # asleep for want of visitors (orchestrator/controller/sleep.py)
        "sleep_since",
        "volume_notice",  # a bucket over its quota: read-only from the next start
    }
)


class SpecFieldError(ValueError):
    """A write of a column that is not part of the spec (a bug, not a user error)."""


def change_spec(session: Session, space: Space, **fields: Any) -> None:
    """Set spec fields on ``space`` in ``session``'s transaction and bump its spec version.
    Not committed here; the caller commits (with its events) or rolls back."""
    wrong = set(fields) - SPEC_FIELDS
    if wrong:
        raise SpecFieldError(f"not spec fields: {sorted(wrong)}")
    for name, value in fields.items():
        setattr(space, name, value)
    space.spec_version = Space.spec_version + 1  # type: ignore[assignment]  # SQL, not Python
    space.updated_at = utcnow()
    session.add(space)
    _announce_at_commit(session, space, fields)


def _announce_at_commit(session: Session, space: Space, fields: dict[str, Any]) -> None:
    """Make sure the change feed hears of this Space's spec change. The controller and the
    gateways learn which Spaces to look at from the events of a transaction: a writer that
    records its own event (most do, with its actor) is enough; for one that records none
    (a pushed commit whose README can't be built, once), a `spec.changed` event naming the
    fields is added just before commit, so no spec change is ever left unseen until the
    resync."""
    pending: dict[int, tuple[Space, set[str]]] = session.info.setdefault(_PENDING, {})
    if not pending:
        sa_event.listen(session, "before_commit", _record_unannounced, once=True)
        sa_event.listen(session, "after_rollback", _forget_unannounced, once=True)
    assert space.id is not None
    entry = pending.setdefault(space.id, (space, set()))
    entry[1].update(fields)


def _record_unannounced(session: Session) -> None:
    pending: dict[int, tuple[Space, set[str]]] = session.info.pop(_PENDING, {})
    announced: dict[int, object] = session.info.get(events.ANNOUNCED, {})
    this_transaction = session.get_transaction()
    for space_id, (space, names) in pending.items():
        if announced.get(space_id) is not this_transaction:
            events.record(
                session,
                events.EventKind.SPEC_CHANGED,
                events.ACTOR_SYSTEM,
                space,
                fields=sorted(names),
            )


def _forget_unannounced(session: Session) -> None:
    session.info.pop(_PENDING, None)
    session.info.pop(events.ANNOUNCED, None)


def change_spec_if(session: Session, space: Space, expect: dict[str, Any], **fields: Any) -> bool:
    """`change_spec`, only while the row still holds ``expect`` (one ``UPDATE ... WHERE``):
    a finished build records its image only if its commit is still the head, whatever
    was pushed meanwhile. True when written (not committed here)."""
    wrong = (set(fields) | set(expect)) - SPEC_FIELDS
    if wrong:
        raise SpecFieldError(f"not spec fields: {sorted(wrong)}")
    result = session.execute(
        update(Space)
        .where(
            Space.id == space.id,  # type: ignore[arg-type]
            *(getattr(Space, name) == value for name, value in expect.items()),
        )
        .values(**fields, spec_version=Space.spec_version + 1, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return False
    session.expire(space, [*fields, "spec_version", "updated_at"])
    return True


def write_status(
    session: Session,
    space: Space,
    *,
    actor: str = events.ACTOR_CONTROLLER,
    **fields: Any,
) -> bool:
    """Write observed fields of ``space`` if its spec and status versions are still the
    ones ``space`` was read with (so read it in a session with expire_on_commit=False, as
    db.session_scope gives: an expired object would be re-read now and hide a change made
    since). True when written (not committed: the caller commits);
    False when something changed meanwhile and nothing was written."""
    wrong = set(fields) - STATUS_FIELDS
    if wrong:
        raise SpecFieldError(f"not status fields: {sorted(wrong)}")
    changed = {k: v for k, v in fields.items() if getattr(space, k) != v}
    if not changed:
        return True
    read_spec, read_status = space.spec_version, space.status_version
    result = session.execute(
        update(Space)
        .where(
            Space.id == space.id,  # type: ignore[arg-type]
            Space.spec_version == read_spec,  # type: ignore[arg-type]
            Space.status_version == read_status,  # type: ignore[arg-type]
        )
        .values(
            **changed,
            status_version=read_status + 1,
            observed_spec_version=read_spec,
            updated_at=utcnow(),
        )
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return False
    old_stage = space.stage
    new_stage = changed.get("stage", old_stage)
    # One event per write that changed something, so every reader of the change feed (the
    # gateway's routes above all) learns which Space to look at again.
    if new_stage != old_stage:
        events.record(
            session,
            events.EventKind.STAGE_CHANGED,
            actor,
            space,
            **{"from": str(old_stage), "to": str(new_stage)},
            error=changed.get("error_message"),
        )
    else:
        events.record(
            session, events.EventKind.STATUS_CHANGED, actor, space, fields=sorted(changed)
        )
    # Keep the object in step with the row, without another read.
    for name, value in changed.items():
        setattr(space, name, value)
    session.expire(space, ["status_version", "observed_spec_version", "updated_at"])
    return True


def mark_observed(session: Session, space: Space) -> bool:
    """Record that the status is current for the spec read, when nothing else changed
    (what `stages.shown_stage` waits for)."""
    if space.observed_spec_version == space.spec_version:
        return True
    result = session.execute(
        update(Space)
        .where(
            Space.id == space.id,  # type: ignore[arg-type]
            Space.spec_version == space.spec_version,  # type: ignore[arg-type]
            Space.status_version == space.status_version,  # type: ignore[arg-type]
        )
        .values(status_version=space.status_version + 1, observed_spec_version=space.spec_version)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return False
    session.expire(space, ["status_version", "observed_spec_version"])
    return True


__all__ = [
    "SPEC_FIELDS",
    "STATUS_FIELDS",
    "Stage",
    "change_spec",
    "change_spec_if",
    "mark_observed",
    "write_status",
]
