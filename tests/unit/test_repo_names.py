"""Space ids as on the Hub (migration 0008, orchestrator/spaces/registry.py): compared
regardless of case, and the old ids of a moved Space kept so they redirect
(orchestrator/api/renames.py). On SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from alembic import command
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from orchestrator.api import renames
from orchestrator.core import db
from orchestrator.core.auth import get_or_create_user
from orchestrator.core.models import Space, SpaceNameAlias
from orchestrator.core.settings import get_settings
from orchestrator.spaces import lifecycle
from orchestrator.spaces import registry as spaces
from tests.unit import test_api_events as shared

# The live API of test_api_events, on SQLite and PostgreSQL.
api, Api = shared.api, shared.Api


def _insert_space(connection, uid: str, name: str) -> None:  # type: ignore[no-untyped-def]
    connection.execute(
        text(
            "INSERT INTO space (uid, host, owner, name, owner_id, visibility, "
            "requested_hardware, stage, app_port, startup_timeout_seconds, restart_count, "
            "created_at, updated_at) VALUES (:uid, :host, 'al', :name, 1, 'public', "
            "'cpu-basic', 'NO_APP_FILE', 7860, 1800, 0, :t, :t)"
        ),
        {"uid": uid, "host": f"al-{uid[-6:]}", "name": name, "t": "2026-01-01"},
    )


def _at_0007_with(*names: str) -> None:
    config = db.alembic_config(get_settings().sqlalchemy_url)
    command.downgrade(config, "0007")
    with db.get_engine().begin() as connection:
        connection.execute(text("DELETE FROM space"))
        connection.execute(text('DELETE FROM "user"'))
        connection.execute(
            text("INSERT INTO \"user\" (id, name, created_at) VALUES (1, 'al', :t)"),
            {"t": "2026-01-01"},
        )
        for number, name in enumerate(names):
            _insert_space(connection, f"{number:024x}", name)


def test_upgrade_keeps_spaces_and_then_refuses_a_second_one_differing_in_case(
    database: str,
) -> None:
    _at_0007_with("demo", "other")
    command.upgrade(db.alembic_config(database), "0008")
    with db.get_engine().connect() as connection:
        names = connection.execute(text("SELECT name FROM space ORDER BY name")).scalars()
        assert list(names) == ["demo", "other"]
        assert connection.execute(text("SELECT count(*) FROM spacenamealias")).scalar() == 0
    with pytest.raises(IntegrityError), db.get_engine().begin() as connection:
        _insert_space(connection, "f" * 24, "Demo")
    command.upgrade(db.alembic_config(database), "head")
    command.downgrade(db.alembic_config(database), "0007")  # and back: both ways work
    command.upgrade(db.alembic_config(database), "head")


def test_upgrade_over_spaces_differing_only_in_case_stops_naming_them(database: str) -> None:
    """Which of two such Spaces keeps the name is the admin's choice: the upgrade stops
    with their ids and what to do, and goes through once one is renamed."""
    _at_0007_with("demo", "Demo", "fine")
    with pytest.raises(RuntimeError, match=r"al/Demo, al/demo\. Rename all but one"):
        command.upgrade(db.alembic_config(database), "0008")
    with db.get_engine().begin() as connection:
        connection.execute(text("UPDATE space SET name = 'demo-2' WHERE name = 'Demo'"))
    command.upgrade(db.alembic_config(database), "head")
    with Session(db.get_engine()) as session:
        assert sorted(s.name for s in session.exec(select(Space))) == ["demo", "demo-2", "fine"]


def test_ids_are_found_regardless_of_case_in_their_stored_spelling(database: str) -> None:
    with Session(db.get_engine()) as session:
        alice = get_or_create_user(session, "alice")
        spaces.create_space(session, alice, "My-Demo")
        found = spaces.get_space(session, "ALICE", "my-demo")
        assert found is not None and found.full_name == "alice/My-Demo"
        with pytest.raises(IntegrityError):
            spaces.create_space(session, alice, "my-DEMO")


def test_a_move_keeps_the_old_id_until_another_space_takes_it(database: str) -> None:
    with Session(db.get_engine()) as session:
        alice = get_or_create_user(session, "alice")
        bob = get_or_create_user(session, "bob")
        space = spaces.create_space(session, alice, "demo")
        lifecycle.move(session, space, bob, "renamed", actor="alice")
        assert spaces.get_space(session, "alice", "demo") is None
        moved = spaces.moved_space(session, "Alice", "DEMO")
        assert moved is not None and moved.full_name == "bob/renamed"
        lifecycle.move(session, space, bob, "again", actor="bob")  # both old ids redirect
        assert spaces.moved_space(session, "bob", "renamed") == space
        assert spaces.moved_space(session, "alice", "demo") == space
        lifecycle.move(session, space, bob, "Again", actor="bob")  # a change of case only
        assert spaces.get_space(session, "bob", "again") == space
        assert spaces.moved_space(session, "bob", "again") is None
        lifecycle.move(session, space, alice, "demo", actor="bob")  # back: a name again
        assert spaces.moved_space(session, "alice", "demo") is None
        assert spaces.moved_space(session, "bob", "again") == space
        newcomer = spaces.create_space(session, bob, "again")  # takes the old id
        assert spaces.moved_space(session, "bob", "again") is None
        assert spaces.get_space(session, "bob", "again") == newcomer
        lifecycle.delete(session, space, actor="alice")  # its old ids go with it
        assert spaces.moved_space(session, "bob", "renamed") is None
        assert session.exec(select(SpaceNameAlias)).all() == []


def test_the_redirect_replaces_the_old_id_in_the_path_only() -> None:
    space = Space(owner="bob", name="new", owner_id=1, host="bob-new")
    old = ("Alice", "Demo")
    assert (
        renames.moved_location("/api/spaces/alice/demo/revision/main", "expand=sha", old, space)
        == "/api/spaces/bob/new/revision/main?expand=sha"
    )
    assert (
        renames.moved_location("/spaces/alice/demo.git/info/refs", "service=x", old, space)
        == "/spaces/bob/new.git/info/refs?service=x"
    )
    assert (
        renames.moved_location("/spaces/alice/demo/resolve/main/spaces/a", "", old, space)
        == "/spaces/bob/new/resolve/main/spaces/a"
    )
    # The id in a body (delete_repo, move_repo): nothing to rewrite, a 404 instead.
    assert renames.moved_location("/api/repos/delete", "", old, space) is None
    assert renames.moved_location("/api/spaces/alice/other", "", old, space) is None


def test_the_api_finds_ids_regardless_of_case_on_both_databases(api: Api) -> None:
    """PostgreSQL compares text by case where SQLite's LIKE does not: lookups, `author` and
    `search` of list_spaces must not depend on the database."""
    assert api.get("/api/spaces/ALICE/Demo").json()["id"] == "alice/demo"
    assert [s["id"] for s in api.get("/api/spaces?author=ALICE").json()] == ["alice/demo"]
    assert [s["id"] for s in api.get("/api/spaces?search=DEM").json()] == ["alice/demo"]
    assert api.get("/api/spaces?search=d%25").json() == []  # LIKE's wildcards are plain text
    missing = api.get("/api/spaces/demo")  # no namespace: the Hub's answer
    assert (missing.status_code, missing.headers["x-error-code"]) == (404, "RepoNotFound")
