"""The stage the API shows (stages.shown_stage, used by space_info, runtime, list_spaces and
the answers of pause/restart/hardware): a pause shows at once, and a RUNNING Space whose
newest spec the controller has not observed is not reported RUNNING."""

from __future__ import annotations

from orchestrator.api.spaces import runtime_json, space_json
from orchestrator.core.models import Space, Stage
from orchestrator.core.stages import shown_stage


def _space(**fields: object) -> Space:
    space = Space(owner="alice", name="demo", host="alice-demo", uid="a" * 24, owner_id=1)
    for name, value in fields.items():
        setattr(space, name, value)
    return space


def test_a_pause_is_shown_before_the_controller_stops_the_space() -> None:
    space = _space(stage=Stage.RUNNING, paused=True, spec_version=3, observed_spec_version=2)
    assert shown_stage(space) == Stage.PAUSED
    assert runtime_json(space).stage == "PAUSED"


def test_running_is_shown_only_once_the_newest_spec_was_observed() -> None:
    moved = _space(stage=Stage.RUNNING, spec_version=5, observed_spec_version=4)
    assert shown_stage(moved) == Stage.RUNNING_APP_STARTING
    assert space_json(moved).runtime.stage == "RUNNING_APP_STARTING"
    moved.observed_spec_version = 5
    assert runtime_json(moved).stage == "RUNNING"
    building = _space(stage=Stage.BUILDING, spec_version=5, observed_spec_version=4)
    assert shown_stage(building) == Stage.BUILDING
