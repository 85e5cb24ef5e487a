"""Credit and billing against a real database (orchestrator/billing/): the charger charges
each period once, whatever runs twice; an owner out of credit falls back to cpu-basic and is
told why; the API refuses a paid tier without credit with a 402 that says what to do, and
shows balances and the ledger (pages and CSV); the CLI grants."""

from __future__ import annotations

import csv
import io
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, col, select

from orchestrator import cli
from orchestrator.api.spaces import runtime_json
from orchestrator.app import create_api
from orchestrator.billing import accounts, charger
from orchestrator.core import auth, db, events
from orchestrator.core import organizations as orgs
from orchestrator.core.db import session_scope
from orchestrator.core.models import (
    CreditEntry,
    Event,
    OrgRole,
    Space,
    TokenRole,
    User,
)
from orchestrator.core.settings import get_settings
from orchestrator.spaces import registry as spaces

T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
UPGRADE_PER_MINUTE = 500  # cpu-upgrade: $0.03/hour = 30,000 micro-USD/hour


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def _user(session: Session, name: str) -> User:
    return auth.get_or_create_user(session, name)


def _space(name: str, hardware: str, *, owner: str = "alice", credit: int = 0) -> Space:
    with session_scope() as session:
        # A user (made if missing) or an organisation already made.
        user = session.exec(select(User).where(User.name == owner)).first() or _user(session, owner)
        if credit:
            accounts.grant(session, user, credit, actor="admin")
        space = spaces.create_space(session, user, name, sdk="gradio", hardware=hardware)
        session.commit()
        return space


def _happened(space: Space, when: datetime, kind: events.EventKind, **data: Any) -> None:
    """An event as its writer appends it, stamped `when`."""
    with session_scope() as session:
        entry = events.record(session, kind, events.ACTOR_CONTROLLER, space, **data)
        entry.at = when
        session.commit()


def _runs_from(space: Space, when: datetime) -> None:
    _happened(space, when, events.EventKind.STAGE_CHANGED, **{"from": "X", "to": "RUNNING"})


def _charges(space: Space) -> list[CreditEntry]:
    with session_scope() as session:
        return list(
            session.exec(
                select(CreditEntry)
                .where(CreditEntry.space_uid == space.uid, CreditEntry.kind == "charge")
                .order_by(col(CreditEntry.id))
            )
        )


def _balance(name: str) -> int:
    with session_scope() as session:
        return accounts.balance_of(session, accounts.find_owner(session, name).id or 0)


def test_each_period_is_charged_once_and_a_run_is_one_entry(database: str) -> None:
    space = _space("app", "cpu-upgrade", credit=accounts.MICRO)
    assert charger.charge_period(now=T0).charged == {}  # the first: meters start here
    _happened(space, at(0), events.EventKind.STAGE_CHANGED, to="APP_STARTING")
    _runs_from(space, at(10))
    first = charger.charge_period(now=at(60))
    again = charger.charge_period(now=at(60))  # a retry, or a second controller
    assert list(first.charged.values()) == [UPGRADE_PER_MINUTE] and again.charged == {}
    charger.charge_period(now=at(120))
    [entry] = _charges(space)  # the second minute extends the first: one run, one entry
    assert (entry.amount_micro_usd, entry.seconds, entry.hardware) == (-1000, 120, "cpu-upgrade")
    assert _balance("alice") == accounts.MICRO - 1000


def test_a_run_that_stopped_ends_there_and_the_next_run_is_an_entry_of_its_own(
    database: str,
) -> None:
    space = _space("app", "cpu-upgrade", credit=accounts.MICRO)
    charger.charge_period(now=T0)
    _runs_from(space, at(0))
    _happened(space, at(40), events.EventKind.PAUSED)
    charger.charge_period(now=at(60))
    _runs_from(space, at(90))
    charger.charge_period(now=at(120))
    charger.charge_period(now=at(180))
    first, second = _charges(space)
    assert (first.started_at, first.ended_at, first.seconds) == (at(0), at(40), 40)
    assert (second.started_at, second.ended_at, second.seconds) == (at(90), at(180), 90)


def test_two_chargers_at_once_charge_a_period_once(database: str) -> None:
    space = _space("app", "cpu-upgrade", credit=accounts.MICRO)
    charger.charge_period(now=T0)
    _runs_from(space, at(0))
    start = threading.Barrier(2)
    outcomes: list[object] = []

    def charge() -> None:
        start.wait()
        try:
            outcomes.append(charger.charge_period(now=at(60)))
        except Exception as exc:  # noqa: BLE001 - SQLite: the loser may find the file locked
            outcomes.append(exc)

    threads = [threading.Thread(target=charge) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(outcomes) == 2
    assert sum(-e.amount_micro_usd for e in _charges(space)) == UPGRADE_PER_MINUTE
    assert _balance("alice") == accounts.MICRO - UPGRADE_PER_MINUTE


def test_free_tiers_waiting_and_sleep_are_not_charged(database: str) -> None:
    free = _space("free", "cpu-basic")
    line = _space("line", "t4-small")
    charger.charge_period(now=T0)
    _runs_from(free, at(0))
    _happened(line, at(0), events.EventKind.STAGE_CHANGED, to="APP_STARTING")
    _happened(line, at(0), events.EventKind.HARDWARE_QUEUED, hardware="t4-small")
    charger.charge_period(now=at(60))
    assert _charges(free) == [] and _charges(line) == []


def test_at_zero_credit_a_paid_space_falls_back_to_cpu_basic_and_says_why(
    database: str,
) -> None:
    space = _space("app", "cpu-upgrade", credit=400)  # less than a minute on cpu-upgrade
    # A minute ago, so the fallback's own events (stamped now) come right after it.
    start = datetime.now(UTC) - timedelta(seconds=60)
    charger.charge_period(now=start)
    _runs_from(space, start)
    period = charger.charge_period(now=start + timedelta(seconds=60))
    assert list(period.charged.values()) == [UPGRADE_PER_MINUTE]
    assert _balance("alice") == 400 - UPGRADE_PER_MINUTE
    with session_scope() as session:
        row = session.get(Space, space.id)
        assert row is not None and row.requested_hardware == "cpu-basic"
        assert row.hardware_notice and "ran out of credit" in row.hardware_notice
        assert "spaceport credit grant alice 10" in row.hardware_notice
        shown = runtime_json(row).model_dump(mode="json")  # what get_space_runtime reads
        assert shown["hardware"]["requested"] == "cpu-basic"
        assert shown["hardwareNotice"] == row.hardware_notice
        news = session.exec(
            select(Event).where(Event.space_id == space.id).order_by(col(Event.id))
        ).all()[-2:]
        assert [(e.kind, e.actor) for e in news] == [
            ("billing.out_of_credit", "spaceport:billing"),
            ("hardware.requested", "spaceport:billing"),
        ]
        assert json.loads(news[0].data) == {
            "account": "alice",
            "from": "cpu-upgrade",
            "to": "cpu-basic",
            "balance_micro_usd": -100,
        }
        kinds = [e.kind for e in session.exec(select(CreditEntry).order_by(col(CreditEntry.id)))]
        assert kinds == ["grant", "charge", "fallback"]
        moved_at = news[1].at if news[1].at.tzinfo else news[1].at.replace(tzinfo=UTC)
    # cpu-upgrade is charged until billing asked for cpu-basic (a few ms after the period),
    # then nothing more, and nothing falls back twice.
    charger.charge_period(now=start + timedelta(seconds=120))
    tail = (moved_at - (start + timedelta(seconds=60))).total_seconds()
    assert _balance("alice") == -100 - round(30_000 * tail / 3600)
    with session_scope() as session:
        kinds = [e.kind for e in session.exec(select(CreditEntry).order_by(col(CreditEntry.id)))]
        assert kinds == ["grant", "charge", "fallback"]


def test_an_organisations_space_is_charged_to_the_organisation(database: str) -> None:
    with session_scope() as session:
        org = orgs.create_org(session, "acme", _user(session, "alice"), actor="root")
        accounts.grant(session, org, accounts.MICRO, actor="root")
        session.commit()
    ours = _space("app", "cpu-upgrade", owner="acme")
    hers = _space("own", "cpu-upgrade", owner="alice", credit=accounts.MICRO)
    charger.charge_period(now=T0)
    _runs_from(ours, at(0))
    _runs_from(hers, at(30))
    charger.charge_period(now=at(60))
    assert _balance("acme") == accounts.MICRO - UPGRADE_PER_MINUTE
    assert _balance("alice") == accounts.MICRO - UPGRADE_PER_MINUTE // 2


def test_billing_off_charges_nothing(database: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPACEPORT_BILLING_ENABLED", "false")
    get_settings.cache_clear()
    space = _space("app", "t4-small")
    charger.charge_period(now=T0)
    _runs_from(space, at(0))
    assert charger.charge_period(now=at(60)).charged == {}
    with session_scope() as session:
        accounts.require_credit(session, _user(session, "alice"), "t4-small")  # no 402


def test_migration_0014_adds_billing_and_goes_back(database: str) -> None:
    from alembic import command
    from sqlalchemy import inspect

    def present() -> tuple[bool, bool]:
        inspector = inspect(db.get_engine())
        columns = {c["name"] for c in inspector.get_columns("space")}
        tables = set(inspector.get_table_names())
        return {"creditaccount", "creditentry", "spacemeter"} <= tables, "hardware_notice" in (
            columns
        )

    assert present() == (True, True)
    config = db.alembic_config(get_settings().sqlalchemy_url)
    command.downgrade(config, "0013")
    assert present() == (False, False)
    command.upgrade(config, "head")
    assert present() == (True, True)


# -- the API and the CLI -------------------------------------------------------------------


Api = tuple[TestClient, dict[str, dict[str, str]]]


@pytest.fixture
def api(migrated_home: Path) -> Iterator[Api]:
    with Session(db.get_engine()) as session:
        people = {name: _user(session, name) for name in ("alice", "bob", "root")}
        tokens = {
            "alice": auth.create_token(session, people["alice"]),
            "bob": auth.create_token(session, people["bob"]),
            "root": auth.create_token(session, people["root"], TokenRole.ADMIN),
        }
        org = orgs.create_org(session, "acme", people["alice"], actor="root")
        orgs.set_member(session, org, people["bob"], OrgRole.WRITE, actor="root")
        spaces.create_space(session, people["alice"], "demo", sdk="gradio")
        session.commit()
    with TestClient(create_api(migrate=False), raise_server_exceptions=False) as client:
        yield client, {name: {"authorization": f"Bearer {t}"} for name, t in tokens.items()}


def test_a_paid_tier_without_credit_is_a_402_that_says_what_to_do(api: Api) -> None:
    client, who = api
    refused = client.post(
        "/api/spaces/alice/demo/hardware", json={"flavor": "t4-small"}, headers=who["alice"]
    )
    assert refused.status_code == 402
    message = refused.json()["error"]
    assert message.startswith("t4-small costs $0.40/hour and alice has no credit")
    assert "`spaceport credit grant alice 10`" in message
    assert refused.headers["x-error-message"] == message
    create = {"type": "space", "name": "gpu", "sdk": "gradio", "hardware": "t4-small"}
    assert client.post("/api/repos/create", json=create, headers=who["alice"]).status_code == 402
    dup = {"repository": "alice/copy", "hardware": "a10g-small"}
    made = client.post("/api/spaces/alice/demo/duplicate", json=dup, headers=who["alice"])
    assert made.status_code == 402 and "a10g-small costs $1.00/hour" in made.json()["error"]
    org_space = {**create, "organization": "acme"}
    refused_org = client.post("/api/repos/create", json=org_space, headers=who["alice"])
    assert refused_org.status_code == 402 and "acme has no credit" in refused_org.json()["error"]
    with Session(db.get_engine()) as session:  # nothing was made
        assert {s.name for s in session.exec(select(Space))} == {"demo"}
    free = client.post(
        "/api/spaces/alice/demo/hardware", json={"flavor": "cpu-basic"}, headers=who["alice"]
    )
    assert free.status_code == 200
    granted = client.post(
        "/api/billing/grants", json={"account": "alice", "amount": "10"}, headers=who["root"]
    )
    assert granted.status_code == 200, granted.text
    assert granted.json() == {
        "account": "alice",
        "kind": "user",
        "balanceMicroUSD": 10_000_000,
        "balance": "$10.00",
    }
    paid = client.post(
        "/api/spaces/alice/demo/hardware", json={"flavor": "t4-small"}, headers=who["alice"]
    )
    assert paid.status_code == 200 and paid.json()["hardware"]["requested"] == "t4-small"


@pytest.mark.parametrize(
    ("who", "body", "status"),
    [
        ("alice", {"account": "alice", "amount": 5}, 403),  # not a site administrator
        ("root", {"account": "alice", "amount": "ten"}, 400),
        ("root", {"account": "alice", "amount": 0}, 400),
        ("root", {"account": "alice", "amount": -3}, 400),
        ("root", {"account": "alice", "amount": 2_000_000}, 400),
        ("root", {"account": "alice", "amount": "0.0000001"}, 400),
        ("root", {"account": "nobody", "amount": 1}, 404),
        ("root", {"account": "alice"}, 422),
    ],
)
def test_grants_are_bounded_and_for_administrators(
    api: Api, who: str, body: dict[str, Any], status: int
) -> None:
    client, tokens = api
    assert client.post("/api/billing/grants", json=body, headers=tokens[who]).status_code == status
    assert client.get("/api/billing/balance", headers=tokens["alice"]).json()["balance"] == "$0.00"


def test_balances_are_seen_by_their_owner_and_organisation_admins(api: Api) -> None:
    client, who = api
    client.post("/api/billing/grants", json={"account": "acme", "amount": 2.5}, headers=who["root"])
    assert client.get("/api/billing/balance").status_code == 401
    assert client.get("/api/billing/balance", headers=who["bob"]).json()["account"] == "bob"
    org = client.get("/api/billing/balance", params={"account": "acme"}, headers=who["alice"])
    assert org.json() == {
        "account": "acme",
        "kind": "org",
        "balanceMicroUSD": 2_500_000,
        "balance": "$2.50",
    }
    # A writer of the organisation is not its admin; a user is nobody else's business.
    for account, status in (("acme", 403), ("alice", 403), ("nobody", 404)):
        seen = client.get("/api/billing/balance", params={"account": account}, headers=who["bob"])
        assert seen.status_code == status, account
    anyone = client.get("/api/billing/balance", params={"account": "acme"}, headers=who["root"])
    assert anyone.json()["balanceMicroUSD"] == 2_500_000


def test_usage_pages_and_the_csv_export(api: Api) -> None:
    client, who = api
    for amount in ("1", "2", "3"):
        body = {"account": "alice", "amount": amount, "note": f"grant {amount}"}
        client.post("/api/billing/grants", json=body, headers=who["root"])
    with Session(db.get_engine()) as session:
        space = spaces.get_space(session, "alice", "demo")
        assert space is not None
        session.expunge(space)
    client.post(
        "/api/spaces/alice/demo/hardware", json={"flavor": "cpu-upgrade"}, headers=who["alice"]
    )
    charger.charge_period(now=T0)
    _runs_from(space, at(0))
    charger.charge_period(now=at(60))
    page = client.get("/api/billing/usage", params={"limit": 2}, headers=who["alice"]).json()
    assert page["balanceMicroUSD"] == 6_000_000 - UPGRADE_PER_MINUTE
    charge, newest_grant = page["entries"]
    assert charge["kind"] == "charge" and charge["amountMicroUSD"] == -UPGRADE_PER_MINUTE
    assert (charge["space"], charge["hardware"], charge["seconds"]) == (
        "alice/demo",
        "cpu-upgrade",
        60,
    )
    assert newest_grant["note"] == "grant 3" and page["next"] == newest_grant["id"]
    rest = client.get(
        "/api/billing/usage", params={"before": page["next"]}, headers=who["alice"]
    ).json()
    assert [e["note"] for e in rest["entries"]] == ["grant 2", "grant 1"] and rest["next"] is None
    assert (
        client.get("/api/billing/usage", params={"limit": 501}, headers=who["alice"]).status_code
        == 422
    )
    exported = client.get("/api/billing/usage.csv", headers=who["alice"])
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert [(r["kind"], r["amount_usd"]) for r in rows] == [
        ("grant", "$1.00"),
        ("grant", "$2.00"),
        ("grant", "$3.00"),
        ("charge", "-$0.0005"),
    ]
    assert rows[-1]["space"] == "alice/demo" and rows[-1]["seconds"] == "60.000"
    assert (
        client.get(
            "/api/billing/usage.csv", params={"account": "alice"}, headers=who["bob"]
        ).status_code
        == 403
    )


def test_the_cli_grants_and_shows_credit(
    migrated_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with Session(db.get_engine()) as session:
        _user(session, "alice")
        session.commit()

    def run(*argv: str) -> int:
        args = cli.build_parser().parse_args(list(argv))
        return int(args.func(args))

    assert run("credit", "grant", "Alice", "2.50", "--note", "for the demo") == 0
    assert run("credit", "show", "alice") == 0
    assert capsys.readouterr().out.splitlines() == ["alice\t$2.50", "alice\t$2.50"]
    assert run("credit", "grant", "nobody", "1") == 2
    # The operator's duplicate asks for credit too: a message, not a traceback.
    with Session(db.get_engine()) as session:
        spaces.create_space(session, _user(session, "alice"), "demo", sdk="gradio")
        _user(session, "bob")
        session.commit()
    assert run("duplicate", "alice/demo", "alice/gpu", "--hardware", "t4-small") == 0
    assert run("duplicate", "alice/demo", "bob/big", "--hardware", "a100-large") == 1
    assert "a100-large costs $2.50/hour and bob has no credit" in capsys.readouterr().err
    assert run("credit", "grant", "alice", "-1") == 2
    assert "at most" in capsys.readouterr().err
    with Session(db.get_engine()) as session:
        granted = session.exec(select(Event).where(Event.kind == "credit.granted")).one()
        assert json.loads(granted.data) == {
            "account": "alice",
            "amount_micro_usd": 2_500_000,
            "note": "for the demo",
        }
