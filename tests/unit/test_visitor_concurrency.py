"""The owner's visitor concurrency (spaces/visitor_limit.py): set through
PUT /api/spaces/{id}/settings, bounded, recorded as an event, read by the gateway's route
(the owner's, else the tier's); the estimate of a wait from the event log
(gateway/wait_estimate.py); and migration 0015, down and up on both databases.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import Session, select

from orchestrator.core import auth, db, events
from orchestrator.core.events import ACTOR_CONTROLLER, EventKind
from orchestrator.core.models import Event, Space
from orchestrator.core.settings import get_settings
from orchestrator.gateway import wait_estimate
from orchestrator.gateway.routes import route_of
from orchestrator.spaces import registry as spaces
from sandbox.hardware import get_tier
from tests.unit.in_process_api import Api


@pytest.fixture
def api_settings() -> dict[str, str]:
    return {"SPACEPORT_MAX_VISITOR_CONCURRENCY": "50"}


def _space() -> Space:
    with Session(db.get_engine()) as session:
        found = spaces.get_space(session, "alice", "demo")
        assert found is not None
        return found


def test_the_owner_sets_the_concurrency_the_gateway_applies(api: Api) -> None:
    client, alice, bob = api
    tier_default = get_tier("cpu-basic").concurrency
    assert route_of(_space()).concurrency == tier_default
    url = "/api/spaces/alice/demo/settings"
    assert client.put(url, json={"visitorConcurrency": 2}, headers=alice).status_code == 200
    assert _space().visitor_concurrency == 2 and route_of(_space()).concurrency == 2
    runtime = client.get("/api/spaces/alice/demo/runtime", headers=alice).json()
    assert runtime["visitorConcurrency"] == 2
    with Session(db.get_engine()) as session:
        kinds = session.exec(select(Event.kind, Event.data).where(Event.space_id == 1)).all()
    changed = [json.loads(data) for kind, data in kinds if kind == "visitor_concurrency.changed"]
    assert changed == [{"to": 2}]

    too_many = client.put(url, json={"visitorConcurrency": 51}, headers=alice)
    assert too_many.status_code == 400 and "between 1 and 50" in too_many.json()["error"]
    assert client.put(url, json={"visitorConcurrency": 0}, headers=alice).status_code == 422
    wrong = client.put(url, json={"visitorConcurrency": "3"}, headers=alice)
    assert wrong.status_code == 422
    assert client.put(url, json={"visitorConcurrency": 3}, headers=bob).status_code == 403
    assert _space().visitor_concurrency == 2

    # null: back to the tier's.
    assert client.put(url, json={"visitorConcurrency": None}, headers=alice).status_code == 200
    assert _space().visitor_concurrency is None
    assert route_of(_space()).concurrency == tier_default


def test_the_estimate_is_the_median_of_recent_starts_on_the_tier(migrated_home: Path) -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    with Session(db.get_engine()) as session:
        owner = auth.get_or_create_user(session, "alice")
        space = spaces.create_space(session, owner, "demo")
        session.commit()
        for index, seconds in enumerate([10, 20, 90]):  # three starts on cpu-basic
            began = start + timedelta(minutes=10 * index)
            for at, kind, data in [
                (began, EventKind.INSTANCE_STARTED, {"hardware": "cpu-basic"}),
                (began + timedelta(seconds=seconds), EventKind.STAGE_CHANGED, {"to": "RUNNING"}),
            ]:
                events.record(session, kind, ACTOR_CONTROLLER, space, **data).at = at
        for build_id, seconds in [(1, 100), (2, 300)]:
            began = start + timedelta(hours=1, minutes=build_id)
            for at, kind, data in [
                (began, EventKind.BUILD_STARTED, {"build_id": build_id}),
                (
                    began + timedelta(seconds=seconds),
                    EventKind.BUILD_ENDED,
                    {"build_id": build_id, "status": "succeeded"},
                ),
            ]:
                events.record(session, kind, ACTOR_CONTROLLER, space, **data).at = at
        granted = {"hardware": "t4-small", "waited_seconds": 40}
        events.record(session, EventKind.HARDWARE_GRANTED, ACTOR_CONTROLLER, space, **granted)
        for woke in ({"from": "light", "seconds": 0.2}, {"from": "deep", "seconds": 30}):
            events.record(session, EventKind.SPACE_WOKE, ACTOR_CONTROLLER, space, **woke)
        session.commit()
    medians = wait_estimate.read_medians()
    assert medians.start == {"cpu-basic": 20}
    assert medians.build == 200
    assert medians.wait_seconds("starting", "cpu-basic") == 20
    assert medians.wait_seconds("building", "cpu-basic") == 220
    assert medians.wait_seconds("waiting_hardware", "t4-small") == 40
    assert medians.wait_seconds("starting", "a10g-large") is None  # no starts there yet
    assert medians.wait_seconds("busy", "cpu-basic") is None
    assert medians.wait_seconds("waking", "cpu-basic", "light") == 0.2  # thawed
    assert medians.wait_seconds("waking", "cpu-basic", "deep") == 30
    assert medians.wait_seconds("waking", "cpu-basic", None) == 20  # as a start


def test_migration_0015_adds_the_visitor_concurrency_and_goes_back(database: str) -> None:
    from alembic import command
    from sqlalchemy import inspect

    def present() -> bool:
        columns = {c["name"] for c in inspect(db.get_engine()).get_columns("space")}
        return "visitor_concurrency" in columns

    assert present()
    config = db.alembic_config(get_settings().sqlalchemy_url)
    command.downgrade(config, "0014")
    assert not present()
    command.upgrade(config, "head")
    assert present()
