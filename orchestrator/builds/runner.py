"""Builds as the control plane sees them: queued by a push, run by a Celery worker, logged
line by line into the database (so the API and the pusher can follow them live), cancelled
when a newer commit of the same Space arrives."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import docker
from sqlalchemy import update
from sqlmodel import Session, select

from builder.base_image import BaseImageUnavailable
from builder.build import BuildFailed, BuildInput, BuildStopped, build_image
from builder.logstyle import error, step
from builder.recipe import RecipeError
from orchestrator.core.db import session_scope
from orchestrator.core.models import Build, BuildLogLine, BuildStatus, Space, Stage, Variable
from orchestrator.core.redaction import Redactor, space_secret_values
from orchestrator.core.settings import get_settings
from orchestrator.repos import lfs
from orchestrator.repos import store as repos
from orchestrator.spaces.config import parse_readme

ACTIVE = (BuildStatus.QUEUED, BuildStatus.RUNNING)
SERVING_STAGES = (Stage.RUNNING, Stage.RUNNING_BUILDING, Stage.RUNNING_APP_STARTING)


def now() -> datetime:
    return datetime.now(UTC)


def cancel_active_builds(session: Session, space_id: int, reason: str) -> list[int]:
    """Mark every unfinished build of the Space cancelled; a running one notices within a
    second and stops its docker build. Caller commits."""
    builds = session.exec(
        select(Build).where(Build.space_id == space_id, Build.status.in_(ACTIVE))  # type: ignore[attr-defined]
    ).all()
    for build in builds:
        build.status = BuildStatus.CANCELLED
        build.error_message = reason
        build.finished_at = now()
        session.add(build)
        session.add(BuildLogLine(build_id=build.id, line=error(reason)))
    return [b.id for b in builds if b.id is not None]


class BuildLog:
    """Writes a build's lines to the store as they come, with the Space's secrets masked."""

    def __init__(self, build_id: int, secrets: list[str]) -> None:
        self.build_id = build_id
        # Secrets and anything shaped like a platform token (orchestrator/core/redaction.py).
        self.mask = Redactor(secrets)
        self.tail: list[str] = []
        self.stored = 0

    def __call__(self, line: str) -> None:
        line = self.mask(line)
        settings = get_settings()
        self.tail = (self.tail + [line])[-settings.build_log_tail_lines :]
        # A build that prints without end must not fill the database: past the limit one
        # line says so, and the rest is dropped (the tail above still feeds the error).
        self.stored += 1
        if self.stored > settings.max_build_log_lines + 1:
            return
        if self.stored == settings.max_build_log_lines + 1:
            line = error(
                f"log truncated: more than {settings.max_build_log_lines} lines "
                "(SPACEPORT_MAX_BUILD_LOG_LINES); the rest of this build's output is not kept"
            )
        with session_scope() as session:
            session.add(BuildLogLine(build_id=self.build_id, line=line))
            session.commit()


def _stop_reason(build_id: int, deadline: float) -> str | None:
    if time.monotonic() > deadline:
        return (
            f"the build took longer than {get_settings().build_timeout_seconds} s and was stopped"
        )
    with session_scope() as session:
        build = session.get(Build, build_id)
        if build is None or build.status == BuildStatus.CANCELLED:
            return (build.error_message if build else None) or "cancelled"
    return None


def _finish(
    build_id: int, status: BuildStatus, message: str | None, image: str | None, reused: bool = False
) -> None:
    with session_scope() as session:
        build = session.get(Build, build_id)
        assert build is not None
        if build.status == BuildStatus.CANCELLED:
            return  # superseded meanwhile: the newer build owns the Space's stage
        build.status = status
        build.error_message = message
        build.image = image
        build.reused_image = reused
        build.finished_at = now()
        session.add(build)
        space = session.get(Space, build.space_id)
        if space is not None and space.head_sha == build.commit_sha:
            if status == BuildStatus.SUCCEEDED:
                # The reconciler takes it from here: it starts the new revision and moves
                # visitors over once it answers.
                if image == space.built_image and not reused:
                    # Rebuilt under the same tag (a factory rebuild): same revision name,
                    # new content, so the running container must be replaced too.
                    space.restart_count += 1
                space.built_sha = build.commit_sha
                space.built_image = image
                space.failed_revision = None
                space.error_message = None
                if space.stage != Stage.PAUSED:  # a paused Space stays paused
                    space.stage = (
                        Stage.RUNNING_APP_STARTING if space.serving_address else Stage.APP_STARTING
                    )
            else:
                if space.stage != Stage.PAUSED:
                    space.stage = Stage.BUILD_ERROR
                space.error_message = message
            space.updated_at = now()
            session.add(space)
        session.commit()


def run_build(build_id: int) -> None:
    """The body of the Celery build task."""
    settings = get_settings()
    with session_scope() as session:
        if not claim_build(session, build_id):
            return  # cancelled before it started, or a second delivery of the same build
        build = session.get(Build, build_id)
        assert build is not None
        space = session.get(Space, build.space_id)
        assert space is not None
        start_heartbeat(build_id)
        secrets = space_secret_values(session, space.id)
        variables = {
            v.key: v.value
            for v in session.exec(select(Variable).where(Variable.space_id == space.id))
        }
        owner, name, sha, no_cache = space.owner, space.name, build.commit_sha, build.no_cache
        space_id = space.id or 0

    log = BuildLog(build_id, secrets)
    deadline = time.monotonic() + settings.build_timeout_seconds
    try:
        repo = repos.repo_path(owner, name)
        readme = repos.read_file(repo, sha, "README.md") or b""
        item = BuildInput(
            space_hint=f"{owner}/{name}",
            repo_tar=lfs.smudge_tar(space_id, repos.archive(repo, sha)),
            files=frozenset(repos.list_files(repo, sha)),
            tree=repos.tree_id(repo, sha),
            config=parse_readme(readme.decode(errors="replace")),
            variables=variables,
            no_cache=no_cache,
        )
        client = docker.from_env(timeout=600)
        output = build_image(client, item, settings, log, lambda: _stop_reason(build_id, deadline))
    except BuildStopped as stopped:
        log(error(f"Build stopped: {stopped.reason}"))
        if "longer than" in stopped.reason:
            _finish(build_id, BuildStatus.FAILED, _failure(stopped.reason, log), None)
        return
    except (BuildFailed, BaseImageUnavailable, RecipeError) as exc:
        log(error(f"Build failed: {exc}"))
        _finish(build_id, BuildStatus.FAILED, _failure(str(exc), log), None)
        return
    except Exception as exc:  # noqa: BLE001 - a broken build must never wedge the Space
        log(error(f"Build failed unexpectedly: {type(exc).__name__}: {exc}"))
        _finish(build_id, BuildStatus.FAILED, _failure(f"internal error: {exc}", log), None)
        raise
    log(step("Build succeeded" + (" (image reused, nothing rebuilt)" if output.reused else "")))
    _finish(build_id, BuildStatus.SUCCEEDED, None, output.image, output.reused)


def claim_build(session: Session, build_id: int) -> bool:
    """Take a queued build for this worker. One conditional UPDATE, so that of two
    deliveries of the same build (a re-send, a broker's redelivery) racing on two workers
    exactly one gets it; a build no longer queued (cancelled, already run) is refused."""
    started = now()
    claimed = session.execute(
        update(Build)
        .where(Build.id == build_id, Build.status == BuildStatus.QUEUED)  # type: ignore[arg-type]
        .values(
            status=BuildStatus.RUNNING, started_at=started, worker=worker_id(), heartbeat_at=started
        )
    ).rowcount
    session.commit()
    return claimed == 1


def resend_lost_builds() -> int:
    """Send again the task of each build still queued SPACEPORT_BUILD_RESEND_AFTER_SECONDS
    after it was last sent: its message was lost, or the worker that took it died before
    claiming it, and nothing else would ever start it. While a build is queued its
    heartbeat_at records when its task was last sent. The wait doubles with the build's
    age (up to ten times the setting), so a build merely waiting behind busy workers adds
    few duplicates; a duplicate costs one refused claim."""
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
                .where(Build.id == build_id, Build.status == BuildStatus.QUEUED)  # type: ignore[arg-type]
                .values(heartbeat_at=current)
            )
        session.commit()
    for build_id in due:
        build_task.delay(build_id)
    return len(due)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)  # SQLite: naive UTC


def _failure(reason: str, log: BuildLog) -> str:
    tail = "\n".join(line.strip() for line in log.tail)
    return f"Build failed: {log.mask(reason)}\n\nLast lines of the build log:\n{tail}"


def worker_id() -> str:
    """Who runs a build: host and process, so a restarted worker on the same host can tell
    that the process that left a build `running` is gone."""
    return f"{socket.gethostname()}:{os.getpid()}"


def start_heartbeat(build_id: int) -> threading.Thread:
    """Beat the build's heartbeat_at every SPACEPORT_BUILD_HEARTBEAT_SECONDS while it runs.
    The thread dies with the worker process, which is the point: a build whose heartbeat
    stops has nobody left to finish it. It ends by itself once the build has finished."""

    def beat() -> None:
        interval = get_settings().build_heartbeat_seconds
        while True:
            time.sleep(interval)
            try:
                with session_scope() as session:
                    beating = session.execute(
                        update(Build)
                        .where(Build.id == build_id, Build.status == BuildStatus.RUNNING)  # type: ignore[arg-type]
                        .values(heartbeat_at=now())
                    ).rowcount
                    session.commit()
            except Exception:  # noqa: BLE001 - a database hiccup: try again next beat
                continue
            if not beating:
                return

    thread = threading.Thread(target=beat, name=f"build-{build_id}-heartbeat", daemon=True)
    thread.start()
    return thread


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
            last_sign = build.heartbeat_at or build.started_at or build.created_at
            if last_sign.tzinfo is None:
                last_sign = last_sign.replace(tzinfo=UTC)  # SQLite hands back naive UTC
            stale = last_sign < limit and not only_dead_local_workers
            if (stale or _worker_gone(build)) and build.id is not None:
                ids.append(build.id)
    for build_id in ids:
        message = (
            "the worker running this build stopped (it crashed or was killed); "
            "push again or restart the Space"
        )
        with session_scope() as session:
            session.add(BuildLogLine(build_id=build_id, line=error(message)))
            session.commit()
        _finish(build_id, BuildStatus.FAILED, f"Build failed: {message}", None)
    return len(ids)


def follow_log(
    build_id: int,
    poll_seconds: float = 0.3,
    deadline: float | None = None,
    stop: threading.Event | None = None,
) -> Iterator[str]:
    """Yield a build's log lines, old and new, until the build has finished (or the
    time.monotonic() `deadline` passes, or `stop` is set: the follower left)."""
    last_id = 0
    stop = stop or threading.Event()
    while (deadline is None or time.monotonic() < deadline) and not stop.is_set():
        with session_scope() as session:
            lines = session.exec(
                select(BuildLogLine)
                .where(BuildLogLine.build_id == build_id, BuildLogLine.id > last_id)  # type: ignore[operator]
                .order_by(BuildLogLine.id)  # type: ignore[arg-type]
            ).all()
            build = session.get(Build, build_id)
            finished = build is None or BuildStatus(build.status).finished
        for line in lines:
            last_id = line.id or last_id
            yield line.line
        if finished and not lines:
            return
        if not lines:
            stop.wait(poll_seconds)
