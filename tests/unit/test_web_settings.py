"""A Space's Settings tab in process (web/settings_page.py, web/settings_forms.py): each form
changes the Space through the domain function the API uses, refusals are words on the tab,
a secret's value is on no page, and only those who write to the Space see or send them."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from fastapi.testclient import TestClient
from sqlmodel import Session, select

from orchestrator.billing import accounts
from orchestrator.core import auth, db
from orchestrator.core import organizations as orgs
from orchestrator.core.models import OrgRole, Secret, Space, Variable, Visibility
from orchestrator.spaces import registry as spaces
from tests.unit.in_process_api import Api
from tests.unit.test_web_pages import sign_in

SETTINGS = "/spaces/alice/demo/settings"
PAID = "cpu-upgrade"  # the shipped catalogue's cheapest paid tier


def _space(owner: str = "alice", name: str = "demo") -> Space | None:
    with Session(db.get_engine()) as session:
        return spaces.get_space(session, owner, name)


def _send(client: TestClient, csrf: str, form: str, **fields: str):  # type: ignore[no-untyped-def]
    return client.post(f"{SETTINGS}/{form}", data={"csrf": csrf, **fields})


def test_the_tab_shows_every_section_to_its_owner_and_its_tab_line(api: Api) -> None:
    client, _alice, _bob = api
    assert client.get(SETTINGS, follow_redirects=False).headers["location"].startswith("/login")
    sign_in(client)
    tab = client.get(SETTINGS)
    assert tab.status_code == 200
    for heading in ("Hardware", "Sleep time", "Visitors at once", "Visibility", "Secrets"):
        assert f">{heading}</h2>" in tab.text
    for heading in ("Variables", "Volumes", "Pause and restart", "Rename or move"):
        assert f">{heading}</h2>" in tab.text
    assert 'data-must-equal="alice/demo"' in tab.text
    assert 'href="/spaces/alice/demo/settings" aria-current="page">Settings</a>' in tab.text
    assert 'value="zero-a10g" disabled' in tab.text  # listed, not served: with the reason
    assert "marks it unsupported" in tab.text and "no Spaces waiting" in tab.text
    assert "$0.00" in tab.text  # alice's balance
    # A Space waiting for a tier (the controller's status) is counted on that tier's line.
    with Session(db.get_engine()) as session:
        bob = auth.get_or_create_user(session, "bob")
        other = spaces.create_space(session, bob, "gpu", sdk="gradio")
        other.waiting_hardware, other.waiting_since = "t4-small", datetime.now(UTC)
        session.add(other)
        session.commit()
    assert re.search(r"t4-small</code> · [^<]* · 1 Space waiting", client.get(SETTINGS).text)
    # The Space's own page links to it for her.
    assert 'href="/spaces/alice/demo/settings"' in client.get("/spaces/alice/demo").text


def test_paid_hardware_needs_credit_and_then_changes_the_spec(api: Api) -> None:
    client, _alice, _bob = api
    csrf = sign_in(client)
    refused = _send(client, csrf, "hardware", flavor=PAID)
    assert refused.status_code == 402
    assert "has no credit" in refused.text and 'href="/settings/billing"' in refused.text
    assert _space().requested_hardware == "cpu-basic"  # type: ignore[union-attr]
    with Session(db.get_engine()) as session:
        alice = auth.get_or_create_user(session, "alice")
        accounts.grant(session, alice, 5 * accounts.MICRO, actor="admin")
        session.commit()
    changed = _send(client, csrf, "hardware", flavor=PAID)
    assert changed.status_code == 200 and f"asked for {PAID}" in changed.text
    assert _space().requested_hardware == PAID  # type: ignore[union-attr]
    assert "nothing changed" in _send(client, csrf, "hardware", flavor=PAID).text
    assert "$5.00" in changed.text
    unknown = _send(client, csrf, "hardware", flavor="quantum-xl")
    assert unknown.status_code == 400 and "unknown hardware" in unknown.text
    assert _send(client, csrf, "hardware", flavor="zero-a10g").status_code == 400


def test_a_secret_is_set_and_its_value_appears_on_no_page(api: Api) -> None:
    client, _alice, _bob = api
    csrf = sign_in(client)
    value = "hunter2-very-secret-value"
    done = _send(client, csrf, "secrets", key="API_KEY", value=value, description="for the API")
    assert done.status_code == 200 and "Secret API_KEY is set" in done.text
    assert value not in done.text and value not in client.get(SETTINGS).text
    assert "for the API" in done.text
    with Session(db.get_engine()) as session:
        row = session.exec(select(Secret).where(Secret.key == "API_KEY")).one()
        assert row.value == value
    # A refused secret doesn't show its value back either.
    bad = _send(client, csrf, "secrets", key="1BAD", value=value)
    assert bad.status_code == 400 and "invalid key" in bad.text and value not in bad.text
    gone = _send(client, csrf, "secrets/delete", key="API_KEY")
    assert "Secret API_KEY is deleted" in gone.text and "<code>API_KEY</code>" not in gone.text


def test_a_variable_is_set_shown_and_deleted(api: Api) -> None:
    client, _alice, _bob = api
    csrf = sign_in(client)
    shown = _send(client, csrf, "variables", key="MODEL_NAME", value="gpt-tiny")
    assert "<code>MODEL_NAME</code>" in shown.text and "gpt-tiny" in shown.text
    with Session(db.get_engine()) as session:
        assert session.exec(select(Variable)).one().value == "gpt-tiny"
    too_long = _send(client, csrf, "variables", key="BIG", value="x" * 70_000)
    assert too_long.status_code == 400 and "at most" in too_long.text
    _send(client, csrf, "variables/delete", key="MODEL_NAME")
    with Session(db.get_engine()) as session:
        assert session.exec(select(Variable)).all() == []


def test_concurrency_sleep_time_and_visibility_change(api: Api) -> None:
    client, _alice, _bob = api
    csrf = sign_in(client)
    assert "lets in 7 visitors" in _send(client, csrf, "concurrency", concurrency="7").text
    assert _space().visitor_concurrency == 7  # type: ignore[union-attr]
    refused = _send(client, csrf, "concurrency", concurrency="0")
    assert refused.status_code == 400 and "between 1 and" in refused.text
    assert _send(client, csrf, "concurrency", concurrency="many").status_code == 400
    _send(client, csrf, "concurrency", concurrency="")
    assert _space().visitor_concurrency is None  # type: ignore[union-attr]
    tab = _send(client, csrf, "sleep", seconds="3600")
    assert _space().sleep_time_seconds == 3600  # type: ignore[union-attr]
    assert '<option value="3600" selected>1 hour</option>' in tab.text
    assert _send(client, csrf, "sleep", seconds="-5").status_code == 400
    _send(client, csrf, "sleep", seconds="-1")  # the tier's own (48 hours on cpu-basic)
    assert _space().sleep_time_seconds is None  # type: ignore[union-attr]
    assert "is private now" in _send(client, csrf, "visibility", visibility="private").text
    assert _space().visibility == Visibility.PRIVATE  # type: ignore[union-attr]
    assert _send(client, csrf, "visibility", visibility="secret").status_code == 400


def test_pause_restart_and_volumes(api: Api) -> None:
    client, alice, _bob = api
    csrf = sign_in(client)
    assert "is paused" in _send(client, csrf, "pause").text
    assert _space().paused  # type: ignore[union-attr]
    # Nothing was pushed to it (no commit): a restart says so instead of failing.
    refused = _send(client, csrf, "restart", factory="1")
    assert refused.status_code == 400 and "push a commit first" in refused.text
    missing = _send(client, csrf, "volumes", bucket="alice/none", mount_path="/data")
    assert missing.status_code == 404 and "alice/none" in missing.text
    assert _send(client, csrf, "volumes/delete", mount_path="/data").status_code == 404
    assert client.post("/api/buckets/alice/store", json={}, headers=alice).is_success
    mounted = _send(client, csrf, "volumes", bucket="alice/store", mount_path="/data")
    assert "alice/store is mounted at /data" in mounted.text
    assert "<code>/data</code>" in mounted.text and "read and write" in mounted.text
    overlap = _send(client, csrf, "volumes", bucket="alice/store", mount_path="/data/more")
    assert overlap.status_code == 400 and "overlaps" in overlap.text
    _send(client, csrf, "volumes/delete", mount_path="/data")
    assert _space().volumes is None  # type: ignore[union-attr]


def test_rename_redirects_to_the_new_settings_page(api: Api) -> None:
    client, _alice, _bob = api
    csrf = sign_in(client)
    moved = client.post(
        f"{SETTINGS}/move",
        data={"csrf": csrf, "namespace": "alice", "new_name": "demo2"},
        follow_redirects=False,
    )
    assert moved.status_code == 303
    assert moved.headers["location"] == "/spaces/alice/demo2/settings"
    assert _space(name="demo2") is not None
    assert client.get(SETTINGS, follow_redirects=False).headers["location"] == (
        "/spaces/alice/demo2/settings"
    )
    into_bob = client.post(
        "/spaces/alice/demo2/settings/move",
        data={"csrf": csrf, "namespace": "bob", "new_name": "demo"},
    )
    same = client.post(
        "/spaces/alice/demo2/settings/move",
        data={"csrf": csrf, "namespace": "alice", "new_name": "demo2"},
    )
    assert same.status_code == 400 and "nothing to rename" in same.text
    bad = client.post(
        "/spaces/alice/demo2/settings/move",
        data={"csrf": csrf, "namespace": "alice", "new_name": "no spaces/here"},
    )
    assert bad.status_code == 409 and "invalid Space name" in bad.text
    assert into_bob.status_code == 403 and "can&#39;t move Spaces into" in into_bob.text


def test_delete_needs_the_full_name_typed(api: Api) -> None:
    client, _alice, _bob = api
    csrf = sign_in(client)
    wrong = _send(client, csrf, "delete", confirm="demo")
    assert wrong.status_code == 400 and "nothing was deleted" in wrong.text
    assert _space() is not None
    gone = client.post(
        f"{SETTINGS}/delete", data={"csrf": csrf, "confirm": "alice/demo"}, follow_redirects=False
    )
    assert gone.status_code == 303 and gone.headers["location"] == "/alice"
    assert _space() is None
    assert "alice/demo is deleted." in client.get("/alice").text


def test_bob_neither_sees_nor_sends_alices_settings_and_a_stale_form_is_refused(
    api: Api,
) -> None:
    client, _alice, bob = api
    assert client.get(SETTINGS, headers=bob).status_code == 403
    bob_csrf = sign_in(client, "bob")
    seen = client.get(SETTINGS)
    assert seen.status_code == 403 and "write access" in seen.text
    assert 'href="/spaces/alice/demo/settings"' not in client.get("/spaces/alice/demo").text
    sent = _send(client, bob_csrf, "visibility", visibility="private")
    assert sent.status_code == 403
    assert _space().visibility == Visibility.PUBLIC  # type: ignore[union-attr]
    client.cookies.clear()
    csrf = sign_in(client)
    _send(client, csrf, "visibility", visibility="private")
    # Private now: to bob it is the one 404, not a 403.
    client.cookies.clear()
    assert client.get(SETTINGS, headers=bob).status_code == 404
    bob_csrf = sign_in(client, "bob")
    assert _send(client, bob_csrf, "pause").status_code == 404
    # alice's form with another token than her session's: out of date, nothing done.
    client.cookies.clear()
    sign_in(client)
    stale = _send(client, "not-her-token", "pause")
    assert stale.status_code == 403 and "out of date" in stale.text
    assert not _space().paused  # type: ignore[union-attr]
    assert "This Space is <strong>private</strong>" in client.get(SETTINGS).text


def test_an_organisations_writer_changes_its_space_but_sees_no_credit(api: Api) -> None:
    client, _alice, _bob = api
    with Session(db.get_engine()) as session:
        alice = auth.get_or_create_user(session, "alice")
        bob = auth.get_or_create_user(session, "bob")
        lab = orgs.create_org(session, "lab", alice, actor="alice")
        orgs.set_member(session, lab, bob, OrgRole.WRITE, actor="alice")
        session.commit()
    csrf = sign_in(client)
    # alice admins lab: she may move her Space into it, and sees its credit there.
    moved = client.post(
        f"{SETTINGS}/move",
        data={"csrf": csrf, "namespace": "lab", "new_name": "demo"},
        follow_redirects=False,
    )
    assert moved.headers["location"] == "/spaces/lab/demo/settings"
    assert 'href="/settings/billing?account=lab"' in client.get("/spaces/lab/demo/settings").text
    client.cookies.clear()
    bob_csrf = sign_in(client, "bob")
    tab = client.get("/spaces/lab/demo/settings")
    assert tab.status_code == 200 and "seen only by its administrators" in tab.text
    assert "account=lab" not in tab.text
    answer = client.post(
        "/spaces/lab/demo/settings/hardware", data={"csrf": bob_csrf, "flavor": PAID}
    )
    assert answer.status_code == 402 and "account=lab" not in answer.text
    changed = client.post(
        "/spaces/lab/demo/settings/variables",
        data={"csrf": bob_csrf, "key": "MODE", "value": "fast"},
    )
    assert changed.status_code == 200 and "Variable MODE is set" in changed.text
