"""The New Space form and the Duplicate dialog, in process: they make Spaces through the
API's own operations, so the API's refusals reach the form in words, and a duplicate asks
for the source's secrets by name without ever showing their values (web/new_space_page.py,
web/duplicate_page.py)."""

from __future__ import annotations

from sqlmodel import Session, select

from orchestrator.core import auth, db
from orchestrator.core.models import Secret, Variable
from orchestrator.spaces import lifecycle
from orchestrator.spaces import registry as spaces
from tests.unit.in_process_api import Api
from tests.unit.test_web_pages import sign_in

SECRET_VALUE = "sk-source-only-9f8e7d"


def _form(csrf: str, **fields: str) -> dict[str, str]:
    return {"csrf": csrf, **fields}


def test_the_new_space_form_creates_blank_and_template_spaces_and_says_why_it_refuses(
    api: Api,
) -> None:
    client, _alice, _bob = api
    assert client.get("/new-space", follow_redirects=False).status_code == 303  # sign in first
    csrf = sign_in(client)
    form = client.get("/new-space")
    assert form.status_code == 200
    assert 'value="spaceport/gradio-hello"' in form.text  # the templates from sample_spaces/
    assert '<label for="space-name">' in form.text

    made = client.post(
        "/new-space",
        data=_form(csrf, name="blank-one", sdk="docker", visibility="private"),
        follow_redirects=False,
    )
    assert made.status_code == 303, made.text
    assert made.headers["location"] == "/spaces/alice/blank-one"
    with Session(db.get_engine()) as session:
        blank = spaces.get_space(session, "alice", "blank-one")
        assert blank is not None and blank.sdk == "docker" and blank.private
        assert blank.head_sha  # the Hub's first commit (README and .gitattributes)
    assert "push your app to it with git" in client.get("/spaces/alice/blank-one").text

    # A template brings its own sdk, whatever the sdk radio says.
    templated = client.post(
        "/new-space",
        data=_form(csrf, name="from-template", sdk="docker", template="spaceport/static-html"),
        follow_redirects=False,
    )
    assert templated.status_code == 303, templated.text
    with Session(db.get_engine()) as session:
        space = spaces.get_space(session, "alice", "from-template")
        assert space is not None and space.sdk == "static"

    # Refusals are the API's, in words, on the form, with what was typed kept.
    again = client.post("/new-space", data=_form(csrf, name="blank-one"))
    assert again.status_code == 409 and "already exists" in again.text
    bad = client.post("/new-space", data=_form(csrf, name="no spaces allowed"))
    assert bad.status_code == 400 and 'value="no spaces allowed"' in bad.text
    paid = client.post("/new-space", data=_form(csrf, name="gpu-one", hardware="t4-small"))
    assert paid.status_code == 402 and "credit" in paid.text
    elsewhere = client.post("/new-space", data=_form(csrf, name="x", owner="bob"))
    assert elsewhere.status_code == 403 and "create Spaces under" in elsewhere.text
    with Session(db.get_engine()) as session:
        assert spaces.get_space(session, "alice", "gpu-one") is None
        assert spaces.get_space(session, "bob", "x") is None
    stale = client.post("/new-space", data=_form("not-the-token", name="stale"))
    assert stale.status_code == 403


def test_the_duplicate_dialog_asks_for_secrets_by_name_and_copies_variables(api: Api) -> None:
    client, _alice, _bob = api
    with Session(db.get_engine()) as session:
        demo = spaces.get_space(session, "alice", "demo")
        assert demo is not None
        lifecycle.upsert(session, demo, Secret, "API_KEY", SECRET_VALUE, actor="alice")
        lifecycle.upsert(session, demo, Variable, "MODEL", "tiny", actor="alice")
        session.commit()
    assert client.get("/spaces/alice/demo/duplicate", follow_redirects=False).status_code == 303
    csrf = sign_in(client, "bob")
    dialog = client.get("/spaces/alice/demo/duplicate")
    assert dialog.status_code == 200
    assert 'name="secret.API_KEY"' in dialog.text and SECRET_VALUE not in dialog.text
    assert 'name="variable.MODEL"' in dialog.text and 'value="tiny"' in dialog.text
    assert 'value="cpu-basic" selected' in dialog.text  # free hardware unless asked

    copied = client.post(
        "/spaces/alice/demo/duplicate",
        data=_form(
            csrf,
            new_name="my-demo",
            visibility="private",
            **{"secret.API_KEY": "bobs-own-key", "variable.MODEL": "large", "secret.EXTRA": "x"},
        ),
        follow_redirects=False,
    )
    assert copied.status_code == 303, copied.text
    assert copied.headers["location"] == "/spaces/bob/my-demo"
    with Session(db.get_engine()) as session:
        copy = spaces.get_space(session, "bob", "my-demo")
        assert copy is not None and copy.private and copy.duplicated_from == "alice/demo"
        secrets = {
            s.key: s.value for s in session.exec(select(Secret).where(Secret.space_id == copy.id))
        }
        assert secrets == {"API_KEY": "bobs-own-key"}  # a stray field adds nothing
        variables = {
            v.key: v.value
            for v in session.exec(select(Variable).where(Variable.space_id == copy.id))
        }
        assert variables == {"MODEL": "large"}
    page = client.get("/spaces/bob/my-demo")
    assert "is a copy of alice/demo" in page.text
    assert SECRET_VALUE not in page.text and "bobs-own-key" not in page.text

    taken = client.post("/spaces/alice/demo/duplicate", data=_form(csrf, new_name="my-demo"))
    assert taken.status_code == 409 and "already exists" in taken.text


def test_a_private_space_has_no_duplicate_dialog_for_others(api: Api) -> None:
    client, alice, _bob = api
    assert client.put(
        "/api/spaces/alice/demo/settings", json={"private": True}, headers=alice
    ).status_code in (200, 204)
    csrf = sign_in(client, "bob")
    assert client.get("/spaces/alice/demo/duplicate").status_code == 404
    refused = client.post("/spaces/alice/demo/duplicate", data=_form(csrf, new_name="mine"))
    assert refused.status_code == 404
    with Session(db.get_engine()) as session:
        assert spaces.get_space(session, "bob", "mine") is None
        assert auth.get_or_create_user(session, "bob") is not None
