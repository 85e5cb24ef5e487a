"""Organisations: the role matrix of orchestrator/core/auth.py (space_access, may_create_in,
may_move_into, sees_private_of) and the membership rules of orchestrator/core/organizations.py,
on SQLite and PostgreSQL (migration 0009 included)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy.exc
from alembic import command
from sqlalchemy import create_engine, inspect, make_url, text
from sqlmodel import Session, select

from orchestrator.core import auth, db, events
from orchestrator.core import organizations as orgs
from orchestrator.core.auth import Access, Principal, Seat
from orchestrator.core.models import Event, OrgRole, Space, TokenRole, User, UserKind, Visibility
from orchestrator.core.settings import get_settings

ORG_ID, CREATOR_ID, OTHER_ID = 10, 20, 30


def _principal(role: OrgRole | None, token: TokenRole = TokenRole.WRITE) -> Principal:
    seats = (Seat(ORG_ID, "lab", "The Lab", role),) if role else ()
    return Principal(
        user=User(id=CREATOR_ID, name="carol"), role=token, token_name="t", seats=seats
    )


def _space(*, private: bool, creator: int | None = OTHER_ID) -> Space:
    return Space(
        owner="lab",
        name="demo",
        host="lab-demo",
        owner_id=ORG_ID,
        creator_id=creator,
        visibility=Visibility.PRIVATE if private else Visibility.PUBLIC,
    )


# role -> (private Space of someone else, private Space they created), with a write token
MATRIX = {
    None: (Access.NONE, Access.NONE),
    OrgRole.READ: (Access.READ, Access.READ),
    OrgRole.CONTRIBUTOR: (Access.READ, Access.WRITE),
    OrgRole.WRITE: (Access.WRITE, Access.WRITE),
    OrgRole.ADMIN: (Access.WRITE, Access.WRITE),
}


@pytest.mark.parametrize("role", list(MATRIX))
def test_roles_decide_access_to_an_organisations_spaces(role: OrgRole | None) -> None:
    others, own = MATRIX[role]
    principal = _principal(role)
    assert auth.space_access(principal, _space(private=True)) == others
    assert auth.space_access(principal, _space(private=True, creator=CREATOR_ID)) == own
    public = auth.space_access(principal, _space(private=False))
    assert public == (Access.READ if others == Access.NONE else others)
    assert auth.sees_private_of(principal, ORG_ID) == (role is not None)
    assert auth.may_create_in(principal, "lab") == (role in auth.CREATING_ROLES)
    assert auth.may_create_in(principal, "LAB") == (role in auth.CREATING_ROLES)  # any case
    assert auth.may_move_into(principal, "lab") == (role in auth.WRITING_ROLES)


@pytest.mark.parametrize("role", [OrgRole.CONTRIBUTOR, OrgRole.WRITE, OrgRole.ADMIN])
def test_a_read_token_only_reads_whatever_the_role(role: OrgRole) -> None:
    principal = _principal(role, TokenRole.READ)
    space = _space(private=True, creator=CREATOR_ID)
    assert auth.space_access(principal, space) == Access.READ
    assert auth.only_token_blocks_write(principal, space)
    assert not auth.may_create_in(principal, "lab")
    assert not auth.may_move_into(principal, "lab")


def test_anonymous_and_platform_admins() -> None:
    assert auth.space_access(None, _space(private=True)) == Access.NONE
    assert auth.space_access(None, _space(private=False)) == Access.READ
    admin = Principal(user=User(id=99, name="root"), role=TokenRole.ADMIN, token_name="t")
    assert auth.space_access(admin, _space(private=True)) == Access.WRITE
    assert auth.sees_private_of(admin, ORG_ID)
    assert auth.may_move_into(admin, "lab")
    assert not auth.may_create_in(admin, "lab")  # creating in an org needs a seat there


def test_an_outsider_with_a_write_token_reads_public_org_spaces_only() -> None:
    outsider = _principal(None)
    assert not auth.only_token_blocks_write(outsider, _space(private=False))
    assert not auth.may_create_in(outsider, "lab")


def test_ones_own_namespace_in_any_case() -> None:
    """Repo ids are compared regardless of case: `create_repo("Carol/x")` by carol, or a
    move into "CAROL", is in her own namespace."""
    carol = _principal(None)
    assert carol.is_named("Carol") and not carol.is_named("carolyn")
    assert auth.may_create_in(carol, "CAROL") and auth.may_move_into(carol, "Carol")


def _user(session: Session, name: str) -> User:
    return auth.get_or_create_user(session, name)


def test_migration_0009_adds_kind_members_and_creator(database: str) -> None:
    engine = db.get_engine()
    inspector = inspect(engine)
    assert {"kind", "fullname"} <= {c["name"] for c in inspector.get_columns("user")}
    assert "creator_id" in {c["name"] for c in inspector.get_columns("space")}
    assert {c["name"] for c in inspector.get_columns("orgmember")} == {
        "id",
        "org_id",
        "user_id",
        "role",
        "created_at",
    }
    with Session(engine) as session:
        # A row written without the new columns (as before the upgrade) is a user.
        session.execute(
            text("INSERT INTO \"user\" (name, created_at) VALUES ('old', :t)"),
            {"t": "2026-01-01 00:00:00"},
        )
        session.commit()
        old = session.exec(select(User).where(User.name == "old")).one()
        assert old.kind == UserKind.USER and not old.is_org


def test_memberships_and_their_rules(database: str) -> None:
    with Session(db.get_engine()) as session:
        alice, bob = _user(session, "alice"), _user(session, "bob")
        lab = orgs.create_org(session, "lab", alice, actor="root", fullname="The Lab")
        assert lab.is_org and orgs.role_of(session, lab, alice) == OrgRole.ADMIN
        # One namespace, compared regardless of case: users and orgs alike.
        for taken in ("LAB", "Alice"):
            with pytest.raises(orgs.OrgError) as refused:
                orgs.create_org(session, taken, alice, actor="root")
            assert refused.value.status == 409
        with pytest.raises(ValueError):
            _user(session, "lab")  # an organisation never signs in...
        with pytest.raises(ValueError):
            auth.create_token(session, lab)  # ...nor holds a token
        assert orgs.set_member(session, lab, bob, OrgRole.CONTRIBUTOR, actor="alice")
        assert not orgs.set_member(session, lab, bob, OrgRole.CONTRIBUTOR, actor="alice")
        assert orgs.set_member(session, lab, bob, OrgRole.WRITE, actor="alice")
        assert [(m.user.name, m.role) for m in orgs.members(session, lab)] == [
            ("alice", OrgRole.ADMIN),
            ("bob", OrgRole.WRITE),
        ]
        # The last admin can't leave or step down.
        for change in (
            lambda: orgs.remove_member(session, lab, alice, actor="alice"),
            lambda: orgs.set_member(session, lab, alice, OrgRole.READ, actor="alice"),
        ):
            with pytest.raises(orgs.OrgError) as refused:
                change()
            assert refused.value.status == 409
        orgs.set_member(session, lab, bob, OrgRole.ADMIN, actor="alice")
        orgs.set_member(session, lab, alice, OrgRole.READ, actor="bob")  # now she may
        orgs.remove_member(session, lab, alice, actor="alice")
        with pytest.raises(orgs.OrgError):
            orgs.remove_member(session, lab, alice, actor="alice")  # not a member any more
        # The seats come with the token: whoami and every access check read them.
        token = auth.create_token(session, bob)
        seats = auth.principal_for_token(session, token).seats
        assert [(s.org_name, s.org_fullname, s.role) for s in seats] == [
            ("lab", "The Lab", OrgRole.ADMIN)
        ]
        kinds = [
            e.kind
            for e in session.exec(select(Event).where(Event.space_id.is_(None)))  # type: ignore[union-attr]
        ]
        assert kinds[0] == events.EventKind.ORG_CREATED
        assert events.EventKind.ORG_MEMBER_SET in kinds
        assert events.EventKind.ORG_MEMBER_REMOVED in kinds


def test_the_member_limit(database: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(get_settings(), "max_org_members", 2)
    with Session(db.get_engine()) as session:
        lab = orgs.create_org(session, "lab", _user(session, "alice"), actor="root")
        orgs.set_member(session, lab, _user(session, "bob"), OrgRole.READ, actor="alice")
        with pytest.raises(orgs.OrgError) as refused:
            orgs.set_member(session, lab, _user(session, "carol"), OrgRole.READ, actor="alice")
        assert refused.value.status == 429


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database(
    request: pytest.FixtureRequest, spaceport_home: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """A database with no schema at all: SQLite in the home, or a new PostgreSQL database on
    the test server (the shared one is at the newest schema already)."""
    if request.param == "sqlite":
        yield get_settings().sqlalchemy_url
        return
    server = request.getfixturevalue("postgres_url")
    name = f"upgrade_{os.getpid()}_{time.monotonic_ns()}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = make_url(server).set(database=name).render_as_string(hide_password=False)
    monkeypatch.setenv("SPACEPORT_DATABASE_URL", url)
    get_settings.cache_clear()
    db.get_engine.cache_clear()
    yield url
    db.get_engine().dispose()
    db.get_engine.cache_clear()
    with admin.connect() as connection:
        connection.exec_driver_sql(f'DROP DATABASE "{name}"')
    admin.dispose()


def test_upgrading_to_0009_keeps_users_and_makes_owners_creators(empty_database: str) -> None:
    config = db.alembic_config(empty_database)
    command.upgrade(config, "0008")
    with db.get_engine().begin() as connection:
        connection.execute(
            text("INSERT INTO \"user\" (name, created_at) VALUES ('alice', :t)"),
            {"t": "2026-01-01 00:00:00"},
        )
        connection.execute(
            text(
                "INSERT INTO space (uid, host, owner, name, owner_id, visibility, "
                "requested_hardware, stage, app_port, startup_timeout_seconds, restart_count, "
                "created_at, updated_at) VALUES ('0123456789abcdef01234567', 'alice-demo', "
                "'alice', 'demo', 1, 'private', 'cpu-basic', 'NO_APP_FILE', 7860, 1800, 0, :t, :t)"
            ),
            {"t": "2026-01-01 00:00:00"},
        )
    command.upgrade(config, "0009")
    # Raw rows: the models may already hold columns of later revisions.
    with db.get_engine().connect() as connection:
        user = connection.execute(text('SELECT id, kind, fullname FROM "user"')).one()
        row = connection.execute(text("SELECT owner_id, creator_id FROM space")).one()
    assert (user.kind, user.fullname) == ("user", None)
    assert row.creator_id == row.owner_id == user.id
    # Her Space is hers as before: the owner writes, nobody else sees it.
    alice = User(id=user.id, name="alice", kind=UserKind(user.kind))
    space = Space(
        owner="alice",
        name="demo",
        host="alice-demo",
        owner_id=row.owner_id,
        creator_id=row.creator_id,
        visibility=Visibility.PRIVATE,
    )
    principal = Principal(user=alice, role=TokenRole.WRITE, token_name="t")
    assert auth.space_access(principal, space) == Access.WRITE
    stranger = Principal(user=User(id=2, name="bob"), role=TokenRole.WRITE, token_name="t")
    assert auth.space_access(stranger, space) == Access.NONE
    command.downgrade(config, "0008")
    assert "orgmember" not in inspect(db.get_engine()).get_table_names()
    # Names stay unique regardless of case after the downgrade: SQLite's batch mode rebuilds
    # the tables and would leave out their expression indexes.
    for statement in (
        "INSERT INTO \"user\" (name, created_at) VALUES ('ALICE', :t)",
        "INSERT INTO space (uid, host, owner, name, owner_id, visibility, requested_hardware, "
        "stage, app_port, startup_timeout_seconds, restart_count, created_at, updated_at) "
        "VALUES ('0123456789abcdef01234568', 'alice-demo-2', 'Alice', 'DEMO', 1, 'private', "
        "'cpu-basic', 'NO_APP_FILE', 7860, 1800, 0, :t, :t)",
    ):
        with pytest.raises(sqlalchemy.exc.IntegrityError), db.get_engine().begin() as connection:
            connection.execute(text(statement), {"t": "2026-01-01 00:00:00"})
    command.upgrade(config, "0009")


def run_cli(*argv: str) -> int:
    from orchestrator import cli

    args = cli.build_parser().parse_args(list(argv))
    return int(args.func(args) or 0)


def test_the_org_commands(spaceport_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli("org", "create", "lab", "--admin", "ada", "--fullname", "The Lab") == 0
    assert run_cli("org", "add-member", "lab", "bob", "--role", "contributor") == 0
    assert run_cli("org", "add-member", "lab", "bob", "--role", "write") == 0  # changed
    capsys.readouterr()
    assert run_cli("org", "members", "lab") == 0
    assert capsys.readouterr().out == "ada\tadmin\nbob\twrite\n"
    assert run_cli("org", "list") == 0
    assert capsys.readouterr().out == "lab\t2 members\n"
    # Refusals say why, on stderr, with status 2.
    for argv, says in (
        (("org", "remove-member", "lab", "ada"), "last admin"),
        (("org", "create", "Lab", "--admin", "ada"), "taken"),
        (("org", "members", "nope"), "not found"),
        (("token", "create", "lab"), "organisation"),
        (("org", "add-member", "lab", "LAB"), "organisation"),
    ):
        assert run_cli(*argv) == 2, argv
        assert says in capsys.readouterr().err, argv
    assert run_cli("org", "remove-member", "lab", "bob") == 0
    capsys.readouterr()
    run_cli("org", "members", "lab")
    assert capsys.readouterr().out == "ada\tadmin\n"


def test_an_org_space_tells_its_app_who_created_it(session: Session) -> None:
    from orchestrator.controller.environment import space_environment
    from orchestrator.spaces import registry

    ada = _user(session, "ada")
    lab = orgs.create_org(session, "lab", ada, actor="root")
    space = registry.create_space(session, lab, "demo", actor="ada")
    space.creator_id = ada.id
    env = space_environment(session, space)
    assert (env["SPACE_ID"], env["SPACE_AUTHOR_NAME"]) == ("lab/demo", "lab")
    assert env["SPACE_CREATOR_USER_ID"] == str(ada.id) != str(lab.id)
