"""How a stage reads on a page: its words and its badge's colour class. The one home of the
web's view of stages (the stages themselves are orchestrator/core/models.Stage), used by the
pages' templates and by the script that keeps badges live (static/spaceport.js reads
`data-stage` and asks /web/stages)."""

from __future__ import annotations

from orchestrator.core.models import Space, Stage
from orchestrator.core.stages import Problem

WORDS: dict[str, str] = {
    Stage.RUNNING: "Running",
    Stage.RUNNING_BUILDING: "Running, building an update",
    Stage.RUNNING_APP_STARTING: "Running, starting an update",
    Stage.BUILDING: "Building",
    Stage.APP_STARTING: "Starting",
    Stage.SLEEPING: "Sleeping",
    Stage.STOPPED: "Stopped",
    Stage.PAUSED: "Paused",
    Stage.BUILD_ERROR: "Build error",
    Stage.CONFIG_ERROR: "Configuration error",
    Stage.NO_APP_FILE: "No app file",
    Stage.RUNTIME_ERROR: "Runtime error",
    Stage.DELETING: "Deleting",
}
RUNNING = {Stage.RUNNING, Stage.RUNNING_BUILDING, Stage.RUNNING_APP_STARTING}
WAITING = {Stage.BUILDING, Stage.APP_STARTING}
ERRORS = {Stage.BUILD_ERROR, Stage.CONFIG_ERROR, Stage.RUNTIME_ERROR, Stage.NO_APP_FILE}

# The listing's stage filter: a few groups a visitor thinks in, each a set of stages.
GROUPS: dict[str, set[str]] = {
    "running": {s.value for s in RUNNING},
    "building": {Stage.BUILDING.value, Stage.APP_STARTING.value},
    "sleeping": {Stage.SLEEPING.value, Stage.STOPPED.value, Stage.PAUSED.value},
    "error": {s.value for s in ERRORS},
}


def words(stage: str, waiting_hardware: str | None = None) -> str:
    if waiting_hardware and stage in WAITING:
        return "Waiting for hardware"
    return WORDS.get(stage, stage.replace("_", " ").capitalize())


def badge_class(stage: str) -> str:
    if stage in RUNNING:
        return "stage-running"
    if stage in WAITING:
        return "stage-wait"
    if stage in ERRORS:
        return "stage-error"
    return "stage-off"


def is_serving(stage: str) -> bool:
    return stage in RUNNING


def error_of(space: Space) -> str | None:
    """What a failed Space's error panel says in its details. A commit refused by the
    pipeline (no app file, a bad README) is the Space's stage before the controller's
    first pass copies the message into the status, so the page reads the head's problem
    itself rather than showing "fix what the details say" over no details."""
    if space.stage not in ERRORS:
        return None
    if space.error_message:
        return space.error_message
    problem = Problem.load(space.head_problem)
    if problem is not None and problem.stage == space.stage:
        return problem.message
    if space.stage == Stage.NO_APP_FILE:  # nothing pushed yet, or nothing built
        return NOTHING_TO_RUN
    return None


NOTHING_TO_RUN = (
    "No commit with an app has been built yet: push one with the file the README's "
    "app_file names (app.py by default), or a Dockerfile for sdk: docker."
)
