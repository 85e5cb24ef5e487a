"""The stage rules: the one place that says which of Hugging Face's stages a Space is in.

The controller is the only caller that stores the result (orchestrator/core/status.py). It
gathers the facts, from the spec (paused, the head commit and why it can't be built), from
the newest build of the head commit and from what the backend reports of the instances,
and `stage_of` turns them into a stage and the message shown with it. Pure, so every rule
has a unit test (tests/unit/test_stages.py).
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass

from orchestrator.core.models import BuildStatus, Space, Stage

# Stages in which nothing runs, whatever was built.
HALTED_STAGES = (Stage.PAUSED, Stage.SLEEPING, Stage.STOPPED, Stage.DELETING)
# The stages a head commit that can't be built puts a Space in (the pipeline's verdict).
PROBLEM_STAGES = (Stage.CONFIG_ERROR, Stage.NO_APP_FILE)
WAITING_FOR_HARDWARE = "waiting for hardware"  # how admission's message starts


class RunState(enum.StrEnum):
    """What the backend reports of the desired revision's instance."""

    ABSENT = "absent"  # none yet (or nothing should run)
    WAITING = "waiting"  # not started: no room for its tier yet
    STARTING = "starting"  # started, not ready yet
    READY = "ready"  # answers
    FAILED = "failed"  # exited, never answered, over its quota, or could not start


@dataclass(frozen=True)
class Problem:
    stage: Stage
    message: str

    def dump(self) -> str:
        return json.dumps({"stage": self.stage.value, "message": self.message})

    @classmethod
    def load(cls, text: str | None) -> Problem | None:
        if not text:
            return None
        data = json.loads(text)
        return cls(Stage(data["stage"]), str(data["message"]))


@dataclass(frozen=True)
class Facts:
    paused: bool = False
    head_problem: Problem | None = None
    head_build: BuildStatus | None = None  # the newest build of the head commit
    head_build_error: str | None = None
    has_image: bool = False  # a built image exists for the head commit or an older one
    head_is_built: bool = False
    old_serving: bool = False  # an older revision answers while the desired one comes up
    run: RunState = RunState.ABSENT
    run_message: str | None = None  # why it failed, or what it waits for
    # Asleep for want of visitors (orchestrator/controller/sleep.py): SLEEPING or STOPPED.
    sleeping: Stage | None = None


def stage_of(facts: Facts) -> tuple[Stage, str | None]:
    """The stage and its message. Build stages win while the head commit is not built: a
    Space shows BUILDING (or RUNNING_BUILDING while an older commit serves) even though an
    older commit runs, as on the Hub."""
    serving = facts.old_serving or facts.run == RunState.READY
    if facts.paused:
        return Stage.PAUSED, None
    if facts.sleeping is not None:  # any change of the spec wakes it (the build stages too)
        return facts.sleeping, None
    if facts.head_problem is not None:
        return facts.head_problem.stage, facts.head_problem.message
    if facts.head_build in (BuildStatus.QUEUED, BuildStatus.RUNNING):
        # Also when the head commit is built already: a factory rebuild, or a docker
        # Space's variable (a build argument) changed.
        return (Stage.RUNNING_BUILDING if serving else Stage.BUILDING), None
    if not facts.head_is_built:
        if facts.head_build == BuildStatus.FAILED:
            return Stage.BUILD_ERROR, facts.head_build_error
        if facts.head_build == BuildStatus.CANCELLED:
            return Stage.BUILD_ERROR, facts.head_build_error or "Build failed: it was cancelled"
        if not facts.has_image:
            return Stage.NO_APP_FILE, None
    if facts.run == RunState.FAILED:
        return Stage.RUNTIME_ERROR, facts.run_message
    if facts.run == RunState.READY:
        return Stage.RUNNING, None
    starting = Stage.RUNNING_APP_STARTING if facts.old_serving else Stage.APP_STARTING
    return starting, facts.run_message if facts.run == RunState.WAITING else None


def shown_stage(space: Space) -> Stage:
    """The stage the API shows. A paused Space is PAUSED at once (the owner's pause is spec,
    and the first rule of `stage_of`: pause_space's answer says PAUSED, as on the Hub).
    Until the controller has observed the newest spec (a rename, a hardware change:
    `observed_spec_version` behind `spec_version`), a RUNNING Space is shown as
    RUNNING_APP_STARTING: it may not answer as asked yet, and a client that waits for
    RUNNING after a change must not be told it is done."""
    if space.paused:
        return Stage.PAUSED
    if space.observed_spec_version < space.spec_version:
        # The pipeline's verdict on a new head commit is known before the controller's
        # pass: a push's answer and the next runtime read say CONFIG_ERROR, NO_APP_FILE or
        # BUILDING at once, never the stage of the commit before.
        problem = Problem.load(space.head_problem)
        if problem is not None:
            return problem.stage
        if space.head_sha and space.head_sha != space.built_sha:
            if space.stage in (Stage.BUILDING, Stage.RUNNING_BUILDING):
                return space.stage
            return Stage.RUNNING_BUILDING if space.serving_address else Stage.BUILDING
        if space.stage == Stage.RUNNING:
            return Stage.RUNNING_APP_STARTING
    return space.stage


def shown_error(space: Space) -> str | None:
    """The message shown with `shown_stage`: the head commit's problem until the
    controller has observed it."""
    if not space.paused and space.observed_spec_version < space.spec_version:
        problem = Problem.load(space.head_problem)
        if problem is not None:
            return problem.message
    return space.error_message
