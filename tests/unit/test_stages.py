"""The stage rules (orchestrator/core/stages.py): pure, one case per rule."""

from __future__ import annotations

import pytest

from orchestrator.core.models import BuildStatus, Space, Stage
from orchestrator.core.stages import Facts, Problem, RunState, shown_stage, stage_of

BUILT = dict(has_image=True, head_is_built=True)


@pytest.mark.parametrize(
    ("facts", "expected"),
    [
        (Facts(), (Stage.NO_APP_FILE, None)),
        (Facts(paused=True, run=RunState.READY, **BUILT), (Stage.PAUSED, None)),
        (
            Facts(head_problem=Problem(Stage.CONFIG_ERROR, "sdk: must be one of ...")),
            (Stage.CONFIG_ERROR, "sdk: must be one of ..."),
        ),
        (
            Facts(head_problem=Problem(Stage.NO_APP_FILE, "no app.py")),
            (Stage.NO_APP_FILE, "no app.py"),
        ),
        (Facts(head_build=BuildStatus.QUEUED), (Stage.BUILDING, None)),
        (Facts(head_build=BuildStatus.RUNNING), (Stage.BUILDING, None)),
        (
            Facts(head_build=BuildStatus.RUNNING, has_image=True, old_serving=True),
            (Stage.RUNNING_BUILDING, None),
        ),
        (
            Facts(head_build=BuildStatus.QUEUED, has_image=True, run=RunState.READY),
            (Stage.RUNNING_BUILDING, None),
        ),
        (
            Facts(head_build=BuildStatus.FAILED, head_build_error="boom"),
            (Stage.BUILD_ERROR, "boom"),
        ),
        # A rebuild of the commit that runs (factory reboot): building, while it serves.
        (
            Facts(head_build=BuildStatus.QUEUED, run=RunState.READY, **BUILT),
            (Stage.RUNNING_BUILDING, None),
        ),
        (Facts(head_build=BuildStatus.FAILED, run=RunState.READY, **BUILT), (Stage.RUNNING, None)),
        (
            Facts(head_build=BuildStatus.CANCELLED),
            (Stage.BUILD_ERROR, "Build failed: it was cancelled"),
        ),
        (Facts(run=RunState.ABSENT, **BUILT), (Stage.APP_STARTING, None)),
        (Facts(run=RunState.STARTING, **BUILT), (Stage.APP_STARTING, None)),
        (
            Facts(run=RunState.WAITING, run_message="waiting for hardware: x", **BUILT),
            (Stage.APP_STARTING, "waiting for hardware: x"),
        ),
        (
            Facts(run=RunState.STARTING, old_serving=True, **BUILT),
            (Stage.RUNNING_APP_STARTING, None),
        ),
        (Facts(run=RunState.READY, **BUILT), (Stage.RUNNING, None)),
        (
            Facts(run=RunState.FAILED, run_message="Runtime error: exited", **BUILT),
            (Stage.RUNTIME_ERROR, "Runtime error: exited"),
        ),
        # The head commit is newer than the built one and has no build (yet): the built
        # one's run decides.
        (Facts(has_image=True, run=RunState.READY), (Stage.RUNNING, None)),
    ],
)
def test_stage_of(facts: Facts, expected: tuple[Stage, str | None]) -> None:
    assert stage_of(facts) == expected


def test_a_problem_round_trips_as_json() -> None:
    problem = Problem(Stage.CONFIG_ERROR, "bad")
    assert Problem.load(problem.dump()) == problem
    assert Problem.load(None) is None


def test_running_is_shown_as_starting_until_the_newest_spec_is_observed() -> None:
    space = Space(owner="a", name="b", host="a-b", owner_id=1, stage=Stage.RUNNING)
    space.spec_version, space.observed_spec_version = 3, 2
    assert shown_stage(space) == Stage.RUNNING_APP_STARTING
    space.observed_spec_version = 3
    assert shown_stage(space) == Stage.RUNNING
    space.stage = Stage.BUILDING
    space.observed_spec_version = 0
    assert shown_stage(space) == Stage.BUILDING
