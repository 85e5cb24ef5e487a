"""How a stage reads on a page: its words and its badge's colour class. The one home of the
web's view of stages (the stages themselves are orchestrator/core/models.Stage), used by the
pages' templates and by the script that keeps badges live (static/spaceport.js reads
`data-stage` and asks /web/stages)."""

from __future__ import annotations

from orchestrator.core.models import Stage

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
