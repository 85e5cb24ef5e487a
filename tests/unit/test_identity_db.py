"""Identity in the database: stored host labels, aliases after a move, case-insensitive user
names, the gateway's route table and the stage a moved Space reports."""

from __future__ import annotations

import asyncio

import pytest
from sqlmodel import Session

from orchestrator.core import auth
from orchestrator.core.models import Space, SpaceHostAlias, Stage
from orchestrator.core.stages import shown_stage
from orchestrator.core.status import change_spec
from orchestrator.gateway.routes import RouteTable
from orchestrator.spaces import lifecycle
from orchestrator.spaces import registry as spaces


def test_folding_names_get_distinct_stored_hosts(session: Session) -> None:
    alice = auth.get_or_create_user(session, "alice")
    impostor = auth.get_or_create_user(session, "alice-x")
    victim = spaces.create_space(session, alice, "x-y")
    other = spaces.create_space(session, impostor, "y")
    assert victim.host == "alice-x-y"
    assert other.host != victim.host and len(other.host) <= 63
    assert spaces.app_url(victim) != spaces.app_url(other)


def test_user_names_are_compared_regardless_of_case(session: Session) -> None:
    alice = auth.get_or_create_user(session, "alice")
    assert auth.get_or_create_user(session, "alice").id == alice.id
    with pytest.raises(auth.UserNameTaken, match="regardless of case"):
        auth.get_or_create_user(session, "Alice")


def test_move_keeps_the_old_label_as_an_alias_and_is_not_running(session: Session) -> None:
    carol = auth.get_or_create_user(session, "carol")
    space = spaces.create_space(session, carol, "demo")
    change_spec(session, space, head_sha="a" * 40, built_sha="a" * 40, built_image="img")
    session.commit()
    # As the controller leaves it: observed, serving, RUNNING.
    space.serving_address = "http://10.0.0.1:7860"
    space.stage = Stage.RUNNING
    space.observed_spec_version = space.spec_version
    session.add(space)
    session.commit()
    assert shown_stage(space) == Stage.RUNNING

    lifecycle.move(session, space, carol, "demo-moved", actor="carol")
    assert space.host == "carol-demo-moved"
    # The move wrote no stage; until the controller has restarted the app under its new
    # name (observed the new spec), the API shows it starting, not RUNNING.
    assert space.stage == Stage.RUNNING
    assert shown_stage(space) == Stage.RUNNING_APP_STARTING
    alias = session.get(SpaceHostAlias, "carol-demo")
    assert alias is not None and alias.space_id == space.id
    # Nobody else may take the old label: a new carol/demo gets a hashed one.
    again = spaces.create_space(session, carol, "demo")
    assert again.host.startswith("carol-demo-") and again.host != "carol-demo"

    # The gateway: the new host answers at once, the old one names the same Space.
    table = RouteTable()
    routes = asyncio.run(table.lookup("carol-demo-moved")), asyncio.run(table.lookup("carol-demo"))
    assert routes[0] is not None and routes[0].host == "carol-demo-moved"
    assert routes[1] is not None and routes[1].space_id == space.id
    assert routes[1].host == "carol-demo-moved"  # -> a redirect


def test_moving_back_takes_its_own_old_label_back(session: Session) -> None:
    carol = auth.get_or_create_user(session, "carol")
    space = spaces.create_space(session, carol, "demo")
    lifecycle.move(session, space, carol, "other", actor="carol")
    lifecycle.move(session, space, carol, "demo", actor="carol")
    assert space.host == "carol-demo"
    assert session.get(SpaceHostAlias, "carol-demo") is None
    assert session.get(SpaceHostAlias, "carol-other") is not None


def test_a_move_while_paused_stays_paused(session: Session) -> None:
    carol = auth.get_or_create_user(session, "carol")
    space = spaces.create_space(session, carol, "demo")
    change_spec(
        session, space, head_sha="a" * 40, built_sha="a" * 40, built_image="img", paused=True
    )
    session.commit()
    lifecycle.move(session, space, carol, "renamed", actor="carol")
    session.expire_all()
    moved = session.get(Space, space.id)
    assert moved is not None and moved.paused and moved.name == "renamed"


def test_route_table_sees_a_space_created_after_its_last_load(session: Session) -> None:
    table = RouteTable()
    assert asyncio.run(table.lookup("dave-new")) is None
    dave = auth.get_or_create_user(session, "dave")
    spaces.create_space(session, dave, "new")
    route = asyncio.run(table.lookup("dave-new"))  # no waiting for the next refresh
    assert route is not None and route.full_name == "dave/new"


def test_space_uids_are_hub_style_and_never_repeat(session: Session) -> None:
    erin = auth.get_or_create_user(session, "erin")
    first = spaces.create_space(session, erin, "one")
    first_id, first_uid = first.id, first.uid
    lifecycle.delete(session, first, actor="erin")
    second = spaces.create_space(session, erin, "one")
    assert len(second.uid) == 24 and int(second.uid, 16) >= 0
    assert second.uid != first_uid and second.id != first_id


def test_deleting_a_moved_space_frees_its_old_labels(session: Session) -> None:
    carol = auth.get_or_create_user(session, "carol")
    space = spaces.create_space(session, carol, "demo")
    lifecycle.move(session, space, carol, "moved", actor="carol")
    lifecycle.delete(session, space, actor="carol")
    assert session.get(SpaceHostAlias, "carol-demo") is None
    assert spaces.create_space(session, carol, "demo").host == "carol-demo"
