"""The worker's side of a build (the body of the Celery task): claim it, read the commit
once, run the builder, record how it ended.

What the worker reads: the Build row (with the config deploy parsed from the README, so
the README is not read again), the Space's secrets (to mask them, and as the build secrets
of docker Spaces) and variables (the build args of docker Spaces), and the commit's archive:
one `git archive`, from which the builder also takes the file list and the content digest
that names the image. It writes only through orchestrator/builds/state.py (the Build row,
the spec's built image, events) and orchestrator/builds/logs.py (the log).
"""

from __future__ import annotations

import io
import tarfile
import threading
import time

from sqlalchemy import update
from sqlmodel import col, select

from builder.base_image import BaseImageUnavailable
from builder.build import BuildFailed, BuildInput, BuildStopped, build_image, engine_client
from builder.context import scan
from builder.logstyle import error, step
from builder.recipe import RecipeError
from orchestrator.builds.logs import BuildLog, follow_log, follow_log_async
from orchestrator.builds.options import build_options, build_spec
from orchestrator.builds.state import (
    ACTIVE,
    cancel_active_builds,
    claim_build,
    finish,
    now,
    reap_stale_builds,
    resend_lost_builds,
    worker_id,
)
from orchestrator.core.db import session_scope
from orchestrator.core.models import Build, BuildStatus, Secret, Space, Variable
from orchestrator.core.redaction import space_secret_values
from orchestrator.core.settings import get_settings
from orchestrator.repos import lfs
from orchestrator.repos import store as repos
from orchestrator.spaces.config import SpaceConfig, SpaceConfigError, parse_readme

__all__ = [
    "ACTIVE",
    "BuildLog",
    "cancel_active_builds",
    "claim_build",
    "finish",
    "follow_log",
    "follow_log_async",
    "now",
    "reap_stale_builds",
    "resend_lost_builds",
    "run_build",
    "worker_id",
]


def _stop_reason(build_id: int, deadline: float) -> str | None:
    """Why the running build must stop now, if it must: asked by the builder every half
    second (one primary-key read)."""
    if time.monotonic() > deadline:
        return (
            f"the build took longer than {get_settings().build_timeout_seconds} s and was stopped"
        )
    with session_scope() as session:
        build = session.get(Build, build_id)
        if build is None or build.status == BuildStatus.CANCELLED:
            return (build.error_message if build else None) or "cancelled"
    return None


def read_commit(space_id: int, owner: str, name: str, sha: str) -> bytes:
    """The commit's files as a tar, LFS objects filled in: the one read of the commit."""
    return lfs.smudge_tar(space_id, repos.archive(repos.repo_path(owner, name), sha))


def _config(stored: str | None, repo_tar: bytes) -> SpaceConfig:
    if stored:
        return SpaceConfig.from_json(stored)
    # A build queued before builds carried their config: the README is in the archive.
    readme = _member(repo_tar, "README.md")
    if readme is None:
        raise SpaceConfigError.missing_readme()
    return parse_readme(readme.decode(errors="replace"))


def _member(repo_tar: bytes, path: str) -> bytes | None:
    with tarfile.open(fileobj=io.BytesIO(repo_tar), mode="r:") as tar:
        try:
            handle = tar.extractfile(path)
        except KeyError:
            return None
        return handle.read() if handle else None


def run_build(build_id: int) -> None:
    """The body of the Celery build task."""
    settings = get_settings()
    with session_scope() as session:
        if not claim_build(session, build_id):
            return  # cancelled before it started, or a second delivery of the same build
        build = session.get(Build, build_id)
        assert build is not None
        space = session.get(Space, build.space_id)
        assert space is not None and space.id is not None
        start_heartbeat(build_id)
        secrets = space_secret_values(session, space.id)
        # docker Spaces' build secrets (RUN --mount=type=secret,id=NAME): to BuildKit only.
        build_secrets = {
            s.key: s.value for s in session.exec(select(Secret).where(Secret.space_id == space.id))
        }
        variables = {
            v.key: v.value
            for v in session.exec(select(Variable).where(Variable.space_id == space.id))
        }
        space_id, space_uid, owner, name = space.id, space.uid, space.owner, space.name
        sha, no_cache, stored_config = build.commit_sha, build.no_cache, build.config

    # The registry's password is masked like a secret, should the Engine ever repeat it.
    log = BuildLog(build_id, [*secrets, settings.registry_password.get_secret_value()])
    deadline = time.monotonic() + settings.build_timeout_seconds
    ending: tuple[BuildStatus, str | None, str | None, bool] | None = None
    notes: tuple[str, ...] = ()  # what the image differs in from the Hub (builder/notes.py)
    unexpected: Exception | None = None
    try:
        repo_tar = read_commit(space_id, owner, name, sha)
        files, digest = scan(repo_tar)
        item = BuildInput(
            space_hint=f"{owner}/{name}",
            repo_tar=repo_tar,
            files=files,
            tree=digest,
            spec=build_spec(_config(stored_config, repo_tar)),
            variables=variables,
            no_cache=no_cache,
            secrets=build_secrets,
            space_uid=space_uid,
            commit_sha=sha,
        )
        output = build_image(
            engine_client(),
            item,
            build_options(settings),
            log,
            lambda: _stop_reason(build_id, deadline),
        )
    except BuildStopped as stopped:
        log(error(f"Build stopped: {stopped.reason}"))
        if "longer than" in stopped.reason:
            ending = (BuildStatus.FAILED, _failure(stopped.reason, log), None, False)
        # else: cancelled, which the canceller recorded already
    except (BuildFailed, BaseImageUnavailable, RecipeError, SpaceConfigError) as exc:
        log(error(f"Build failed: {exc}"))
        ending = (BuildStatus.FAILED, _failure(str(exc), log), None, False)
    except Exception as exc:  # noqa: BLE001 - a broken build must never wedge the Space
        log(error(f"Build failed unexpectedly: {type(exc).__name__}: {exc}"))
        ending = (BuildStatus.FAILED, _failure(f"internal error: {exc}", log), None, False)
        unexpected = exc
    else:
        log(step("Build succeeded" + (" (image reused, nothing rebuilt)" if output.reused else "")))
        ending = (BuildStatus.SUCCEEDED, None, output.image, output.reused)
        notes = output.notes
    finally:
        log.close()  # every line stored before the end is: a follower that sees it has all
    if ending is not None:
        finish(build_id, *ending, notes=notes)
    if unexpected is not None:
        raise unexpected


def _failure(reason: str, log: BuildLog) -> str:
    tail = "\n".join(line.strip() for line in log.tail)
    return f"Build failed: {log.mask(reason)}\n\nLast lines of the build log:\n{tail}"


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
                        .where(col(Build.id) == build_id, col(Build.status) == BuildStatus.RUNNING)
                        .values(heartbeat_at=now())
                    ).rowcount  # type: ignore[attr-defined]
                    session.commit()
            except Exception:  # noqa: BLE001 - a database hiccup: try again next beat
                continue
            if not beating:
                return

    thread = threading.Thread(target=beat, name=f"build-{build_id}-heartbeat", daemon=True)
    thread.start()
    return thread
