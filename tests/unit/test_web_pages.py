"""The pages in process: home and a user's page list what the viewer may see, a Space's page
shows its parts, private Spaces are a 404 to others, and signing in makes a session whose
forms need its CSRF token (orchestrator/web/, core/web_sessions.py)."""

from __future__ import annotations

import json
import re

from fastapi.testclient import TestClient
from sqlmodel import Session, select

from orchestrator.billing import accounts
from orchestrator.core import auth, db, status, web_sessions
from orchestrator.core.models import Space, Stage, Visibility, WebSession
from orchestrator.core.stages import Problem
from orchestrator.spaces import registry as spaces
from tests.unit.in_process_api import Api


def _csrf(html: str) -> str:
    found = re.search(r'<meta name="csrf-token" content="([^"]*)">', html)
    assert found is not None
    return found.group(1)


def _with_card(name: str, card: dict, private: bool = False) -> None:
    with Session(db.get_engine()) as session:
        alice = auth.get_or_create_user(session, "alice")
        space = spaces.create_space(session, alice, name, sdk="gradio")
        changes: dict = {"card_data": json.dumps(card)}
        if private:
            changes["visibility"] = Visibility.PRIVATE.value
        status.change_spec(session, space, **changes)
        session.commit()


def _building(name: str) -> None:
    """As if its first push were being built (a stage the controller writes)."""
    with Session(db.get_engine()) as session:
        space = spaces.get_space(session, "alice", name)
        assert space is not None
        space.stage = Stage.BUILDING
        session.add(space)
        session.commit()


def _refused(name: str, problem: Problem) -> None:
    """As if a push's head commit were refused (what the pipeline writes)."""
    with Session(db.get_engine()) as session:
        space = spaces.get_space(session, "alice", name)
        assert space is not None
        status.change_spec(session, space, head_problem=problem.dump())
        session.commit()


def sign_in(client: TestClient, name: str = "alice", password: str = "correct horse") -> str:
    with Session(db.get_engine()) as session:
        web_sessions.set_password(session, auth.get_or_create_user(session, name), password)
    answer = client.post(
        "/login",
        data={"name": name, "password": password, "next": "/spaces"},
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == "/spaces"
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith(web_sessions.COOKIE + "=")
    assert "HttpOnly" in cookie and "samesite=lax" in cookie.lower()
    assert "domain=" not in cookie.lower()  # host-only: never sent to a Space's host
    return _csrf(client.get("/spaces").text)


def test_home_lists_cards_with_front_matter_and_hides_private_spaces(api: Api) -> None:
    client, _alice, _bob = api
    _with_card(
        "painter", {"title": "Painter", "emoji": "🎨", "colorFrom": "red", "colorTo": "blue"}
    )
    _with_card("secret-lab", {"title": "Secret Lab"}, private=True)
    home = client.get("/")
    assert home.status_code == 200
    assert home.headers["content-type"].startswith("text/html")
    assert "Painter" in home.text and "🎨" in home.text and "#ef4444" in home.text
    assert "Secret Lab" not in home.text and "secret-lab" not in home.text
    assert client.get("/spaces?search=paint").text.count('class="card"') == 1
    assert client.get("/spaces?search=nothing-like-this").text.count('class="card"') == 0
    assert client.get("/spaces?sdk=docker").text.count('class="card"') == 0
    # The owner, signed in, sees her private Space in the listing and on her page.
    sign_in(client)
    assert "Secret Lab" in client.get("/").text
    assert "Secret Lab" in client.get("/alice").text
    assert client.get("/nobody-of-that-name").status_code == 404


def test_a_space_page_shows_the_app_readme_logs_and_clone_url(api: Api) -> None:
    client, _alice, _bob = api
    failed = client.get("/spaces/alice/demo").text  # nothing pushed: NO_APP_FILE
    assert "No app file" in failed
    # The frame is there for the script to show once the Space runs, hidden and not loaded.
    assert '<section class="app-frame" aria-label="The app" data-app-frame hidden>' in failed
    assert "<iframe data-src=" in failed and "<iframe src=" not in failed
    feed = client.get("/web/feed", params={"space": "alice/demo"}).json()
    assert feed["failed"] is True and feed["stage"] == "NO_APP_FILE"  # what the panel shows
    # The details say what is missing, even with no message in the status.
    assert feed["errorMessage"] and "app.py" in feed["errorMessage"]
    assert "<details data-error-details >" in failed
    # A refused commit's own reason, before the controller copies it into the status.
    _refused("demo", Problem(Stage.NO_APP_FILE, "app.py not found: the README names it"))
    feed = client.get("/web/feed", params={"space": "alice/demo"}).json()
    assert feed["errorMessage"] == "app.py not found: the README names it"
    assert "app.py not found: the README names it" in client.get("/spaces/alice/demo").text
    _building("demo")
    page = client.get("/spaces/alice/demo")
    assert page.status_code == 200
    html = page.text
    assert "Building" in html
    assert '<iframe src="http://alice-demo.' in html
    assert "data-error-panel hidden>" in html  # no error now: its panel waits, hidden
    assert 'data-log-src="/api/spaces/alice/demo/logs/build"' in html
    assert 'data-log-src="/api/spaces/alice/demo/logs/run"' in html
    assert "git clone http://localhost:8000/spaces/alice/demo" in html
    assert "from gradio_client import Client" in html
    assert page.headers["x-frame-options"] == "DENY"
    stages = client.get("/web/stages", params={"space": ["alice/demo", "alice/missing"]}).json()
    assert list(stages) == ["alice/demo"]
    feed = client.get("/web/feed", params={"space": "alice/demo"}).json()
    assert feed["stage"] == "BUILDING" and feed["words"] and feed["failed"] is False
    assert feed["errorMessage"] is None


def test_a_private_space_is_a_404_page_to_others_and_framed_with_a_sign_token(api: Api) -> None:
    client, _alice, bob = api
    _with_card("hidden", {"title": "Hidden"}, private=True)
    assert client.get("/spaces/alice/hidden").status_code == 404
    assert client.get("/spaces/alice/hidden", headers=bob).status_code == 404
    assert client.get("/web/feed", params={"space": "alice/hidden"}).status_code == 404
    missing = client.get("/spaces/alice/never-was")
    assert missing.status_code == 404 and "Hidden" not in missing.text
    sign_in(client)
    _building("hidden")
    own = client.get("/spaces/alice/hidden")
    assert own.status_code == 200 and "?__sign=" in own.text


def test_sign_in_refuses_a_wrong_password_and_limits_guesses(api: Api) -> None:
    client, _alice, _bob = api
    sign_in(client)
    client.cookies.clear()
    wrong = client.post("/login", data={"name": "alice", "password": "wrong one!"})
    assert wrong.status_code == 401 and "password don&#39;t match" in wrong.text
    unknown = client.post("/login", data={"name": "nobody", "password": "whatever1"})
    assert unknown.status_code == 401
    for _ in range(12):
        last = client.post("/login", data={"name": "carol", "password": "guess guess"})
    assert last.status_code == 429 and "wait" in last.text
    # Where to go after signing in is a path on this site, never another host.
    away = client.post(
        "/login",
        data={"name": "alice", "password": "correct horse", "next": "//evil.example/x"},
        follow_redirects=False,
    )
    assert away.headers["location"] == "/"


def test_a_session_acts_as_its_user_and_its_writes_need_the_csrf_token(api: Api) -> None:
    client, _alice, _bob = api
    csrf = sign_in(client)
    assert client.get("/api/whoami-v2").json()["name"] == "alice"
    # A script's API call on the cookie alone, without the page's token: refused.
    refused = client.post("/api/spaces/alice/demo/like")
    assert refused.status_code == 403 and "X-CSRF-Token" in refused.json()["error"]
    assert client.post("/api/spaces/alice/demo/like", headers={"X-CSRF-Token": csrf}).is_success
    # A form without the token, or with another's, is refused; with it, it works.
    stale = client.post("/spaces/alice/demo/like", data={"csrf": "not-it"})
    assert stale.status_code == 403 and "out of date" in stale.text
    liked = client.post("/spaces/alice/demo/like", data={"csrf": csrf}, follow_redirects=False)
    assert liked.status_code == 303
    page = client.get("/spaces/alice/demo")
    assert "You no longer like alice/demo." in page.text  # it was liked through the API above
    # Signing out ends the session on the server: the old cookie is nobody now.
    value = client.cookies.get(web_sessions.COOKIE)
    assert client.post("/logout", data={"csrf": csrf}, follow_redirects=False).status_code == 303
    with Session(db.get_engine()) as session:
        assert web_sessions.find_session(session, value) is None
        assert session.exec(select(WebSession)).all() == []
    assert client.get("/api/whoami-v2").status_code == 401


def test_a_form_from_nobody_signed_in_goes_to_the_sign_in_page(api: Api) -> None:
    client, _alice, _bob = api
    answer = client.post("/spaces/alice/demo/like", data={"csrf": "x"}, follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/login?next=/spaces/alice/demo/like"


def test_a_password_is_stored_only_as_an_argon2_hash(api: Api) -> None:
    _client, _alice, _bob = api
    with Session(db.get_engine()) as session:
        user = auth.get_or_create_user(session, "alice")
        web_sessions.set_password(session, user, "correct horse")
        row = session.get(web_sessions.UserPassword, user.id)
        assert row is not None and row.password_hash.startswith("$argon2id$")
        assert "correct horse" not in row.password_hash
        assert web_sessions.check_password(session, "ALICE", "correct horse") is not None
        assert web_sessions.check_password(session, "alice", "correct horsE") is None
    try:
        with Session(db.get_engine()) as session:
            web_sessions.set_password(session, auth.get_or_create_user(session, "alice"), "short")
    except web_sessions.PasswordRefused as exc:
        assert "at least 8" in str(exc)
    else:
        raise AssertionError("a short password was taken")


def test_a_renamed_space_page_redirects_to_its_new_name(api: Api) -> None:
    client, alice, _bob = api
    moved = client.post(
        "/api/repos/move",
        json={"fromRepo": "alice/demo", "toRepo": "alice/demo2", "type": "space"},
        headers=alice,
    )
    assert moved.is_success, moved.text
    answer = client.get("/spaces/alice/demo", follow_redirects=False)
    assert answer.status_code == 307 and answer.headers["location"] == "/spaces/alice/demo2"
    with Session(db.get_engine()) as session:
        assert session.exec(select(Space).where(Space.name == "demo2")).first() is not None


def test_the_tokens_page_creates_a_token_shown_once_and_revokes_it(api: Api) -> None:
    client, _alice, _bob = api
    assert client.get("/settings/tokens", follow_redirects=False).status_code == 303
    csrf = sign_in(client)
    made = client.post(
        "/settings/tokens", data={"csrf": csrf, "display_name": "laptop", "role": "read"}
    )
    assert made.status_code == 200 and "shown only this once" in made.text
    value = re.search(r'id="new-token" class="code" readonly value="(sp_[^"]+)"', made.text)
    assert value is not None
    token = {"authorization": f"Bearer {value.group(1)}"}
    assert client.get("/api/whoami-v2", headers=token).json()["name"] == "alice"
    listed = client.get("/settings/tokens").text
    assert "laptop" in listed and value.group(1) not in listed  # never shown again
    # An admin token can't be made here, nor a token without a name.
    refused = client.post(
        "/settings/tokens", data={"csrf": csrf, "display_name": "x", "role": "admin"}
    )
    assert refused.status_code == 400
    with Session(db.get_engine()) as session:
        row = session.exec(
            select(auth.ApiToken).where(auth.ApiToken.display_name == "laptop")
        ).one()
        bobs = auth.create_token(session, auth.get_or_create_user(session, "bob"), display_name="b")
        bob_row = session.exec(
            select(auth.ApiToken).where(auth.ApiToken.token_hash == auth.hash_token(bobs))
        ).one()
        row_id, bob_row_id = row.id, bob_row.id
    # Another's token can't be revoked from here; her own can.
    assert (
        client.post(f"/settings/tokens/{bob_row_id}/revoke", data={"csrf": csrf}).status_code == 404
    )
    gone = client.post(f"/settings/tokens/{row_id}/revoke", data={"csrf": csrf})
    assert gone.status_code == 200 and "is revoked" in gone.text
    assert client.get("/api/whoami-v2", headers=token).status_code == 401


def test_the_usage_page_shows_the_balance_the_ledger_and_the_csv_export(api: Api) -> None:
    client, _alice, _bob = api
    assert client.get("/settings/billing", follow_redirects=False).status_code == 303
    sign_in(client)
    assert "Nothing yet" in client.get("/settings/billing").text
    with Session(db.get_engine()) as session:
        alice = auth.get_or_create_user(session, "alice")
        accounts.grant(session, alice, 5 * accounts.MICRO, actor="admin", note="for the demo")
        session.commit()
    shown = client.get("/settings/billing").text
    assert "$5.00" in shown and "for the demo" in shown
    assert 'href="/api/billing/usage.csv"' in shown
    exported = client.get("/api/billing/usage.csv")  # the session's cookie opens it
    assert exported.status_code == 200 and "for the demo" in exported.text
    # Someone else's credit is not hers to see.
    assert client.get("/settings/billing?account=bob").status_code == 403
