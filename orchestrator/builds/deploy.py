"""What a new commit on a Space's main branch sets in motion: read its config once, then
queue its build. Called for git pushes, API commits, restarts that rebuild, duplicates.

It writes only the spec (orchestrator/core/status.py) and Build rows: the head commit and,
when the commit can't be built, why (`head_problem`: CONFIG_ERROR or NO_APP_FILE with its
message); otherwise the run settings the README gives and a queued build that carries the
parsed config, so the worker never reads the README again. The controller derives the
stage from these (orchestrator/core/stages.py).
"""

from __future__ import annotations

import json
import logging

from sqlmodel import Session

from orchestrator.builds.state import cancel_active_builds, queue_build
from orchestrator.core import events
from orchestrator.core.models import Build, Space, Stage
from orchestrator.core.stages import Problem
from orchestrator.core.status import change_spec
from orchestrator.repos import store as repos
from orchestrator.spaces.config import SpaceConfigError, app_file_problem, parse_readme

logger = logging.getLogger(__name__)


def deploy_commit(
    session: Session,
    space: Space,
    sha: str,
    *,
    no_cache: bool = False,
    actor: str = events.ACTOR_SYSTEM,
) -> Build | None:
    """Point the Space at ``sha`` and queue its build, and commit. Returns None when the
    commit can't be built: ``space.head_problem`` then says why (`stages.Problem`)."""
    assert space.id is not None
    repo = repos.repo_path(space.owner, space.name)
    readme = repos.read_file(repo, sha, "README.md")
    try:
        if readme is None:
            raise SpaceConfigError.missing_readme()
        config = parse_readme(readme.decode(errors="replace"))
    except SpaceConfigError as exc:
        return _refuse(session, space, sha, Problem(Stage.CONFIG_ERROR, str(exc)), actor)
    card = {"sdk": config.sdk, "card_data": json.dumps(config.to_card_data())}
    problem = app_file_problem(config, repos.list_files(repo, sha))
    if problem:
        return _refuse(session, space, sha, Problem(Stage.NO_APP_FILE, problem), actor, **card)

    # The Space's row first, then its builds' (the lock order of orchestrator/builds/state.py).
    change_spec(
        session,
        space,
        head_sha=sha,
        head_problem=None,
        app_port=config.app_port if config.sdk == "docker" else 7860,
        startup_timeout_seconds=config.startup_timeout_seconds,
        **card,
    )
    session.flush()
    cancel_active_builds(
        session, space.id, f"cancelled: superseded by commit {sha[:7]}", actor=actor
    )
    build = queue_build(session, space, sha, config.to_json(), no_cache=no_cache, actor=actor)
    session.commit()
    session.refresh(build)
    session.refresh(space)

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


def _refuse(
    session: Session, space: Space, sha: str, problem: Problem, actor: str, **fields: str
) -> None:
    assert space.id is not None
    change_spec(session, space, head_sha=sha, head_problem=problem.dump(), **fields)
    session.flush()
    events.record(
        session,
        events.EventKind.COMMIT_REFUSED,
        actor,
        space,
        commit=sha,
        stage=problem.stage.value,
        message=problem.message,
    )
    cancel_active_builds(
        session, space.id, f"cancelled: superseded by commit {sha[:7]}", actor=actor
    )
    session.commit()
    session.refresh(space)
    return None
