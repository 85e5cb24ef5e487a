"""The Community tab in process (orchestrator/web/community_page.py): discussions opened,
answered, closed and reopened through its forms, a pull request made through the API and
merged through the page by a writer only, comments shown as safe Markdown, forms without
the session's CSRF token refused, and a private Space's discussions a 404 to others."""

from __future__ import annotations

import base64
import json
import re

from fastapi.testclient import TestClient
from sqlmodel import Session

from orchestrator.core import db, status
from orchestrator.core.models import Visibility
from orchestrator.repos import store as repos
from orchestrator.spaces import registry as spaces
from tests.unit.in_process_api import Api
from tests.unit.test_web_pages import sign_in

DEMO = "/spaces/alice/demo/discussions"


def _as(client: TestClient, name: str) -> str:
    """Sign `client` in as `name` (whoever was signed in before is signed out)."""
    client.cookies.clear()
    return sign_in(client, name)


def _commit(
    client: TestClient, headers: dict[str, str], files: dict[str, str], summary: str, query: str
) -> dict:
    """A commit through the Hub's commit API, as huggingface_hub's create_commit sends it."""
    lines = [{"key": "header", "value": {"summary": summary, "description": ""}}]
    for path, text in files.items():
        content = base64.b64encode(text.encode()).decode()
        lines.append({"key": "file", "value": {"path": path, "content": content}})
    answer = client.post(
        f"/api/spaces/alice/demo/commit/main{query}",
        content="\n".join(json.dumps(line) for line in lines).encode(),
        headers={**headers, "content-type": "application/x-ndjson"},
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


def _is_page(answer: object, code: int) -> None:
    assert answer.status_code == code, answer.text  # type: ignore[attr-defined]
    assert answer.headers["content-type"].startswith("text/html")  # type: ignore[attr-defined]


def test_a_discussion_is_opened_answered_closed_and_reopened_through_the_forms(api: Api) -> None:
    client, _alice, _bob = api
    signed_out = client.get(DEMO)
    _is_page(signed_out, 200)
    assert "to start a discussion" in signed_out.text and "New discussion" not in signed_out.text
    assert (
        client.get(DEMO + "/new", follow_redirects=False)
        .headers["location"]
        .startswith("/login?next=")
    )
    nobody = client.post(DEMO + "/new", data={"csrf": "x", "title": "t"}, follow_redirects=False)
    assert nobody.status_code == 303 and nobody.headers["location"].startswith("/login")
    bob = _as(client, "bob")
    empty = client.get(DEMO)
    _is_page(empty, 200)
    assert 'href="/spaces/alice/demo/discussions" aria-current="page">Community' in empty.text
    assert "No discussions open here yet" in empty.text
    assert 'for="d-title"' in client.get(DEMO + "/new").text

    no_main = client.post(
        DEMO + "/new",
        data={"csrf": bob, "title": "A PR", "description": "x", "pull_request": "1"},
    )
    _is_page(no_main, 400)  # nothing pushed yet: no main to start a pull request from
    assert "has no commit on main" in no_main.text and "checked" in no_main.text
    untitled = client.post(DEMO + "/new", data={"csrf": bob, "title": " ", "description": "x"})
    _is_page(untitled, 400)
    assert "A title is required" in untitled.text and 'value=" "' in untitled.text
    opened = client.post(
        DEMO + "/new",
        data={"csrf": bob, "title": "Hello there", "description": "First **words**"},
        follow_redirects=False,
    )
    assert opened.status_code == 303 and opened.headers["location"] == DEMO + "/1"
    listed = client.get(DEMO).text
    assert "Hello there" in listed and "by bob" in listed and "1 comment<" in listed
    assert "<strong>words</strong>" in client.get(DEMO + "/1").text

    alice = _as(client, "alice")
    said = client.post(
        DEMO + "/1/comment",
        data={"csrf": alice, "comment": "<script>alert(1)</script> thanks *bob*"},
    )
    _is_page(said, 200)  # back on the discussion, after the 303
    assert "Your comment is posted." in said.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt; thanks <em>bob</em>" in said.text
    assert "<script>alert" not in said.text
    blank = client.post(DEMO + "/1/comment", data={"csrf": alice, "comment": "   "})
    _is_page(blank, 400)
    assert "The comment is empty" in blank.text
    too_long = client.post(DEMO + "/1/comment", data={"csrf": alice, "comment": "y" * 70_000})
    _is_page(too_long, 413)
    assert "over 65536 bytes" in too_long.text
    stale = client.post(DEMO + "/1/comment", data={"csrf": "not-it", "comment": "hi"})
    _is_page(stale, 403)
    assert "out of date" in stale.text
    assert client.get(DEMO).text.count("2 comments") == 1

    dave = _as(client, "dave")  # neither its author nor a writer
    refused = client.post(DEMO + "/1/status", data={"csrf": dave, "status": "closed"})
    _is_page(refused, 403)
    assert "Only its author or those with write access" in refused.text
    assert "Close discussion" not in client.get(DEMO + "/1").text

    bob = _as(client, "bob")  # its author closes and reopens it
    assert "Close discussion" in client.get(DEMO + "/1").text
    closed = client.post(DEMO + "/1/status", data={"csrf": bob, "status": "closed"})
    assert "Discussion #1 is closed." in closed.text and "closed this" in closed.text
    assert "Hello there" not in client.get(DEMO).text  # the list shows open ones first
    assert "Hello there" in client.get(DEMO + "?status=closed").text
    reopened = client.post(DEMO + "/1/status", data={"csrf": bob, "status": "open"})
    assert "is open again" in reopened.text and "reopened this" in reopened.text
    again = client.post(DEMO + "/1/status", data={"csrf": bob, "status": "open"})
    _is_page(again, 400)
    assert "is open already" in again.text
    _is_page(client.get(DEMO + "/7"), 404)
    _is_page(client.get(DEMO + "/x"), 404)
    assert client.get(DEMO + "?status=nonsense&type=pull_request&p=-3").status_code == 200


def test_a_comment_is_edited_by_its_author_and_hidden_by_a_writer(api: Api) -> None:
    client, _alice, _bob = api
    bob = _as(client, "bob")
    client.post(DEMO + "/new", data={"csrf": bob, "title": "Typo", "description": "teh words"})
    shown = client.get(DEMO + "/1").text
    found = re.search(r"/comment/([0-9a-f]{24})/edit", shown)
    assert found is not None and "Hide bob" not in shown  # bob is no writer of alice/demo
    edit = f"{DEMO}/1/comment/{found.group(1)}/edit"
    edited = client.post(edit, data={"csrf": bob, "comment": "the words"})
    assert "Your comment is changed." in edited.text and "<p>the words</p>" in edited.text
    assert "edited" in edited.text
    renamed = client.post(DEMO + "/1/title", data={"csrf": bob, "title": "No typo"})
    assert "renamed this from “Typo” to “No typo”" in renamed.text
    hide = f"{DEMO}/1/comment/{found.group(1)}/hide"
    _is_page(client.post(hide, data={"csrf": bob}), 403)

    alice = _as(client, "alice")
    page = client.get(DEMO + "/1").text
    assert "Hide bob's comment" in page and f'action="{edit}"' not in page
    not_hers = client.post(edit, data={"csrf": alice, "comment": "mine now"})
    _is_page(not_hers, 403)
    assert "Only the author of a comment may edit it" in not_hers.text
    hidden = client.post(hide, data={"csrf": alice})
    assert "The comment is hidden." in hidden.text and "was hidden" in hidden.text
    assert "the words" not in hidden.text
    gone = client.post(f"{DEMO}/1/comment/{'0' * 24}/hide", data={"csrf": alice})
    _is_page(gone, 404)


def test_a_pull_request_is_merged_through_the_page_by_a_writer_only(api: Api) -> None:
    client, alice_token, bob_token = api
    readme = "---\nsdk: gradio\napp_file: app.py\n---\n"
    _commit(client, alice_token, {"README.md": readme, "app.py": "print(1)\n"}, "first", "")
    made = _commit(client, bob_token, {"new.txt": "from bob\n"}, "Add new.txt", "?create_pr=1")
    assert made["pullRequestUrl"].endswith(DEMO + "/1")
    pr_head = made["commitOid"]

    bob = _as(client, "bob")
    shown = client.get(DEMO + "/1")
    _is_page(shown, 200)
    assert "refs/pr/1" in shown.text and "git push origin HEAD:refs/pr/1" in shown.text
    assert f"<code>{pr_head[:7]}</code> Add new.txt" in shown.text  # not on main yet
    assert "+from bob" in shown.text  # its diff
    assert "Merge into main" not in shown.text
    assert ">PR<" in client.get(DEMO + "?type=pull_request").text
    refused = client.post(DEMO + "/1/merge", data={"csrf": bob})
    _is_page(refused, 403)
    assert "Only those with write access to alice/demo merge pull requests" in refused.text
    repo = repos.repo_path("alice", "demo")
    assert repos.read_file(repo, repos.DEPLOY_REF, "new.txt") is None

    # bob's own draft, through the form: it starts at main's head.
    draft = client.post(
        DEMO + "/new",
        data={"csrf": bob, "title": "Another", "description": "later", "pull_request": "1"},
    )
    assert "git push origin HEAD:refs/pr/2" in draft.text and "draft" in draft.text

    alice = _as(client, "alice")
    assert "Merge into main" in client.get(DEMO + "/1").text
    merged = client.post(DEMO + "/1/merge", data={"csrf": alice})
    _is_page(merged, 200)
    assert "Pull request #1 is merged into main (fast-forward" in merged.text
    assert "merged this pull request" in merged.text and "Merge into main" not in merged.text
    assert repos.resolve(repo, repos.DEPLOY_REF) == pr_head
    assert repos.read_file(repo, repos.DEPLOY_REF, "new.txt") == b"from bob\n"
    twice = client.post(DEMO + "/1/merge", data={"csrf": alice})
    _is_page(twice, 400)
    assert "is merged: reopen it to merge" in twice.text
    published = client.post(DEMO + "/2/status", data={"csrf": alice, "status": "open"})
    assert "is published" in published.text and "published this pull request" in published.text

    # A pull request and main that both change app.py: the merge is refused, in words.
    _commit(client, bob_token, {"app.py": "print('bob')\n"}, "bob's app", "?create_pr=1")
    _commit(client, alice_token, {"app.py": "print('alice')\n"}, "alice's app", "")
    main_head = repos.resolve(repo, repos.DEPLOY_REF)
    assert "It conflicts with main in app.py" in client.get(DEMO + "/3").text
    conflict = client.post(DEMO + "/3/merge", data={"csrf": alice})
    _is_page(conflict, 409)
    assert "Pull request #3 conflicts with main in app.py" in conflict.text
    assert repos.resolve(repo, repos.DEPLOY_REF) == main_head


def test_a_private_spaces_discussions_are_a_404_to_others(api: Api) -> None:
    client, _alice, _bob = api
    with Session(db.get_engine()) as session:
        space = spaces.get_space(session, "alice", "demo")
        assert space is not None
        status.change_spec(session, space, visibility=Visibility.PRIVATE.value)
        session.commit()
    alice = _as(client, "alice")
    client.post(DEMO + "/new", data={"csrf": alice, "title": "Secret", "description": "s"})
    assert "Secret" in client.get(DEMO).text
    bob = _as(client, "bob")
    for path in (DEMO, DEMO + "/1", DEMO + "/new"):
        answer = client.get(path)
        _is_page(answer, 404)
        assert "Secret" not in answer.text
    said = client.post(DEMO + "/1/comment", data={"csrf": bob, "comment": "let me in"})
    _is_page(said, 404)
    client.cookies.clear()
    _is_page(client.get(DEMO + "/1"), 404)


def test_a_renamed_spaces_discussions_redirect_to_its_new_name(api: Api) -> None:
    client, alice_token, _bob = api
    bob = _as(client, "bob")
    client.post(DEMO + "/new", data={"csrf": bob, "title": "Before", "description": "b"})
    moved = client.post(
        "/api/repos/move",
        json={"fromRepo": "alice/demo", "toRepo": "alice/demo2", "type": "space"},
        headers=alice_token,
    )
    assert moved.is_success, moved.text
    answer = client.get(DEMO + "/1", follow_redirects=False)
    assert answer.status_code == 307
    assert answer.headers["location"] == "/spaces/alice/demo2/discussions/1"
    posted = client.post(
        DEMO + "/1/comment", data={"csrf": bob, "comment": "hi"}, follow_redirects=False
    )
    assert posted.status_code == 303
    assert posted.headers["location"] == "/spaces/alice/demo2/discussions/1"
    assert "Before" in client.get("/spaces/alice/demo2/discussions").text
