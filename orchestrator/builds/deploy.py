"""What a new commit on a Space's main branch sets in motion: read its config, then queue
its build. Called for git pushes now, and for API commits and restarts later."""

from __future__ import annotations

import json
import logging

from sqlmodel import Session

from orchestrator.builds.runner import cancel_active_builds, now
from orchestrator.core.models import Build, BuildStatus, Space, Stage
from orchestrator.repos import store as repos
from orchestrator.spaces.config import SpaceConfigError, app_file_problem, parse_readme

logger = logging.getLogger(__name__)


def deploy_commit(
    session: Session, space: Space, sha: str, *, no_cache: bool = False
) -> Build | None:
    """Point the Space at `sha` and queue its build. Returns None when the commit can't be
    built (CONFIG_ERROR, NO_APP_FILE); the stage and error message then say why."""
    assert space.id is not None
    repo = repos.repo_path(space.owner, space.name)
    short = sha[:7]
    cancel_active_builds(session, space.id, f"cancelled: superseded by commit {short}")
    space.head_sha = sha
    space.updated_at = now()

    readme = repos.read_file(repo, sha, "README.md")
    try:
        if readme is None:
            raise SpaceConfigError.missing_readme()
        config = parse_readme(readme.decode(errors="replace"))
    except SpaceConfigError as exc:
        return _refuse(session, space, Stage.CONFIG_ERROR, str(exc))
    space.sdk = config.sdk
    space.card_data = json.dumps(config.to_card_data())
    problem = app_file_problem(config, repos.list_files(repo, sha))
    if problem:
        return _refuse(session, space, Stage.NO_APP_FILE, problem)

    space.app_port = config.app_port if config.sdk == "docker" else 7860
    space.startup_timeout_seconds = config.startup_timeout_seconds
    build = Build(space_id=space.id, commit_sha=sha, status=BuildStatus.QUEUED, no_cache=no_cache)
    if space.stage != Stage.PAUSED:  # a push builds a paused Space but does not wake it
        space.stage = Stage.RUNNING_BUILDING if space.serving_address else Stage.BUILDING
    space.error_message = None
    session.add(build)
    session.add(space)
    session.commit()
    session.refresh(build)

    from orchestrator.builds.tasks import build_task

    try:
        build_task.delay(build.id)
    except Exception:  # noqa: BLE001 - the build is stored; the housekeeping re-sends it
        logger.warning(
            "build %s of %s/%s: its task could not be sent now; it is re-sent within "
            "SPACEPORT_BUILD_RESEND_AFTER_SECONDS",
            build.id,
            space.owner,
            space.name,
            exc_info=True,
        )
    return build


def _refuse(session: Session, space: Space, stage: Stage, message: str) -> None:
    space.stage = stage
    space.error_message = message
    session.add(space)
    session.commit()
    return None
