"""The build state machine: queued -> running -> succeeded | failed, or cancelled from
queued or running. Each move is one conditional UPDATE (`... WHERE status = <the state it
leaves>`), so of two writers racing (a cancel and a claim, two deliveries of one task, a
finish and a newer push) exactly one wins and the other sees it lost; each move that
happens appends its event (orchestrator/core/events.py) in the same transaction.

The pipeline writes only Build rows and the Space's spec (orchestrator/core/status.py): the
head commit at deploy, and the built image once a build of the head commit succeeds. The
controller reads the newest build of the head commit to tell BUILDING from BUILD_ERROR.

Lock order, for PostgreSQL: a transaction that writes both takes the Space's row first and
then the builds' (deploy, finish), so two of them never wait on each other.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import update
from sqlmodel import Session, col, select

from builder.logstyle import error
from orchestrator.core import events
from orchestrator.core.changes import Channel, ring
from orchestrator.core.db import session_scope
from orchestrator.core.events import EventKind
from orchestrator.core.models import Build, BuildLogLine, BuildStatus, Space
from orchestrator.core.settings import get_settings
from orchestrator.core.status import change_spec_if

ACTIVE = (BuildStatus.QUEUED, BuildStatus.RUNNING)


def now() -> datetime:
    return datetime.now(UTC)


def worker_id() -> str:
    """Who runs a build: host and process, so a restarted worker on the same host can tell
    that the process that left a build `running` is gone."""
    return f"{socket.gethostname()}:{os.getpid()}"


def queue_build(
    session: Session,
    space: Space,
    sha: str,
    config_json: str,
    *,
    no_cache: bool = False,
    actor: str = events.ACTOR_SYSTEM,
) -> Build:
    """Add a queued build of ``sha`` carrying its parsed config (not committed here)."""
    assert space.id is not None
    build = Build(
        space_id=space.id,
        commit_sha=sha,
        status=BuildStatus.QUEUED,
        no_cache=no_cache,
        config=config_json,
    )
    session.add(build)
    session.flush()  # its id, for the event
    events.record(
        session,
        EventKind.BUILD_QUEUED,
        actor,
        space,
        build_id=build.id,
        commit=sha,
        no_cache=no_cache,
    )
    return build


def cancel_active_builds(
    session: Session, space_id: int, reason: str, *, actor: str = events.ACTOR_SYSTEM
) -> list[int]:
    """Cancel every unfinished build of the Space (not committed here: the caller commits).
    A queued one is then never claimed; a running one's worker notices within a second and
    stops its docker build. Returns the ids of the builds this call cancelled."""
    ids = session.exec(
        select(Build.id).where(Build.space_id == space_id, col(Build.status).in_(ACTIVE))
    ).all()
    space = session.get(Space, space_id)
    cancelled: list[int] = []
    for build_id in ids:
        moved = session.execute(
            update(Build)
            .where(col(Build.id) == build_id, col(Build.status).in_(ACTIVE))
            .values(status=BuildStatus.CANCELLED, error_message=reason, finished_at=now())
        ).rowcount  # type: ignore[attr-defined]
        if not moved or build_id is None:
            continue  # it finished meanwhile
        cancelled.append(build_id)
        session.add(BuildLogLine(build_id=build_id, line=error(reason)))
        events.record(
            session, EventKind.BUILD_CANCELLED, actor, space, build_id=build_id, reason=reason
        )
    if cancelled:
        ring(session, Channel.BUILD_LOGS)  # followers of those logs learn they ended
    return cancelled


def claim_build(session: Session, build_id: int) -> bool:
    """Take a queued build for this worker, and commit. One conditional UPDATE, so that of
    two deliveries of the same build (a re-send, a broker's redelivery) racing on two
    workers exactly one gets it; a build no longer queued (cancelled, already run) is
    refused."""
    started = now()
    worker = worker_id()
    claimed = session.execute(
        update(Build)
        .where(col(Build.id) == build_id, col(Build.status) == BuildStatus.QUEUED)
        .values(status=BuildStatus.RUNNING, started_at=started, worker=worker, heartbeat_at=started)
    ).rowcount  # type: ignore[attr-defined]
    if claimed != 1:
        session.rollback()
        return False
    build = session.get(Build, build_id, populate_existing=True)
    space = session.get(Space, build.space_id) if build else None
    events.record(
        session,
        EventKind.BUILD_STARTED,
        events.ACTOR_WORKER,
        space,
        build_id=build_id,
        worker=worker,
    )
    session.commit()
    return True


def finish(
    build_id: int,
    status: BuildStatus,
    message: str | None,
    image: str | None = None,
    reused: bool = False,
    *,
    actor: str = events.ACTOR_WORKER,
    last_line: str | None = None,
    notes: Sequence[str] = (),
) -> bool:
    """End a running build. False when it is no longer running (cancelled meanwhile, or
    failed by the housekeeping): then nothing is written, ``last_line`` (a log line said
    with the ending) included. A success of the Space's head commit records its image in
    the spec; the controller takes it from there. ``notes`` (what the image differs in from
    the Hub) go on the build, with its image on the Space, and into `build.ended`."""
    stored_notes = json.dumps(list(notes)) if notes else None
    with session_scope() as session:
        build = session.get(Build, build_id)
        if build is None:
            return False
        space = session.get(Space, build.space_id, with_for_update=True, populate_existing=True)
        moved = session.execute(
            update(Build)
            .where(col(Build.id) == build_id, col(Build.status) == BuildStatus.RUNNING)
            .values(
                status=status,
                error_message=message,
                image=image,
                reused_image=reused,
                finished_at=now(),
                notes=stored_notes,
            )
        ).rowcount  # type: ignore[attr-defined]
        if moved != 1:
            session.rollback()
            return False
        if last_line is not None:
            session.add(BuildLogLine(build_id=build_id, line=last_line))
        if status == BuildStatus.SUCCEEDED and space is not None:
            fields: dict[str, Any] = {
                "built_sha": build.commit_sha,
                "built_image": image,
                "built_notes": stored_notes,
            }
            if image == space.built_image and not reused:
                # Rebuilt under the same tag (a factory rebuild): same revision name, new
                # content, so the running instance must be replaced too.
                fields["restart_count"] = Space.restart_count + 1
            # Only while its commit is the head: a newer push owns the Space now.
            change_spec_if(session, space, {"head_sha": build.commit_sha}, **fields)
        events.record(
            session,
            EventKind.BUILD_ENDED,
            actor,
            space,
            build_id=build_id,
            status=str(status),
            error=message.split("\n", 1)[0] if message else None,
            reused_image=reused,
            **({"notes": list(notes)} if notes else {}),
        )
        ring(session, Channel.BUILD_LOGS)  # followers stop once they read it ended
        session.commit()
    return True


def resend_lost_builds() -> int:
    """Send again the task of each build still queued SPACEPORT_BUILD_RESEND_AFTER_SECONDS
    after it was last sent: its message was lost (the broker died, or deploy's send
    failed after the build was committed), or the worker that took it died before
    claiming it, and nothing else would ever start it. While a build is queued its
    heartbeat_at records when its task was last sent. The wait doubles with the build's
    age (up to ten times the setting), so a build merely waiting behind busy workers adds
    few duplicates; a duplicate costs one refused claim. Run by Celery beat."""
    from orchestrator.builds.tasks import build_task

    settings = get_settings()
    base = timedelta(seconds=settings.build_resend_after_seconds)
    current = now()
    due = []
    with session_scope() as session:
        queued = session.exec(select(Build).where(Build.status == BuildStatus.QUEUED)).all()
        for build in queued:
            created = _aware(build.created_at)
            sent = _aware(build.heartbeat_at or build.created_at)
            wait = min(max(base, sent - created), 10 * base)
            if current - sent >= wait and build.id is not None:
                due.append(build.id)
        for build_id in due:
            session.execute(
                update(Build)
                .where(col(Build.id) == build_id, col(Build.status) == BuildStatus.QUEUED)
                .values(heartbeat_at=current)
            )
        session.commit()
    for build_id in due:
        build_task.delay(build_id)
    return len(due)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)  # SQLite: naive UTC


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive, and not ours to judge
    return True


def _worker_gone(build: Build) -> bool:
    """The build's worker ran on this host and its process is no longer there."""
    host, _, pid = (build.worker or "").rpartition(":")
    return host == socket.gethostname() and pid.isdigit() and not _pid_alive(int(pid))


def reap_stale_builds(only_dead_local_workers: bool = False) -> int:
    """Fail builds whose worker died, so their Space leaves BUILDING: a build still
    `running` whose heartbeat is older than SPACEPORT_BUILD_HEARTBEAT_TIMEOUT_SECONDS (its
    worker stopped beating, wherever it ran), or whose worker process on this host is
    gone. Run by Celery beat every few seconds, and with `only_dead_local_workers` when a
    worker or `spaceport up` starts, so a build left behind by a crash fails at once."""
    settings = get_settings()
    limit = now() - timedelta(seconds=settings.build_heartbeat_timeout_seconds)
    with session_scope() as session:
        running = session.exec(select(Build).where(Build.status == BuildStatus.RUNNING)).all()
        ids = []
        for build in running:
            last_sign = _aware(build.heartbeat_at or build.started_at or build.created_at)
            stale = last_sign < limit and not only_dead_local_workers
            if (stale or _worker_gone(build)) and build.id is not None:
                ids.append(build.id)
    reaped = 0
    message = (
        "the worker running this build stopped (it crashed or was killed); "
        "push again or restart the Space"
    )
    for build_id in ids:
        failed = f"Build failed: {message}"
        actor = events.ACTOR_SYSTEM
        if finish(build_id, BuildStatus.FAILED, failed, actor=actor, last_line=error(message)):
            reaped += 1
    return reaped
