"""The Files tab in process (orchestrator/web/files_page.py): a folder's listing at a
revision, a file's view escaped, another branch and a slashed one, a revision's history
newest first, and the 404s (an unknown revision or path, a private Space to others)."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

from sqlmodel import Session

from orchestrator.core import auth, db, status
from orchestrator.core.models import Visibility
from orchestrator.repos import commit as repo_commit
from orchestrator.repos import lfs, refs
from orchestrator.repos import store as repos
from orchestrator.spaces import registry as spaces
from orchestrator.web import files_page
from tests.unit.in_process_api import Api
from tests.unit.test_web_pages import sign_in


def _commit(
    tmp: Path, space: str, files: dict[str, bytes], message: str, branch: str = "main"
) -> str:
    """A commit of `files` on top of `branch` of alice/`space`, as the commit API writes one
    (repos/commit.create_commit); its sha."""
    repo = repos.repo_path("alice", space)
    ref = f"refs/heads/{branch}"
    parent = repos.resolve(repo, ref)
    operations: list[repo_commit.Operation] = []
    for number, (path, content) in enumerate(files.items()):
        source = tmp / f"{space}-{branch.replace('/', '_')}-{message[:8]}-{number}"
        source.write_bytes(content)
        operations.append(repo_commit.AddFile(path, source))
    return repo_commit.create_commit(
        repo, ref, parent, operations, message + "\n", repos.identity("alice")
    )


def _branch(space: str, name: str, at: str) -> None:
    refs.create(repos.repo_path("alice", space), f"refs/heads/{name}", at, "test")


def _private(name: str) -> None:
    with Session(db.get_engine()) as session:
        alice = auth.get_or_create_user(session, "alice")
        space = spaces.create_space(session, alice, name, sdk="gradio")
        status.change_spec(session, space, visibility=Visibility.PRIVATE.value)
        session.commit()


def test_the_tree_lists_folders_first_with_sizes_and_nested_paths(api: Api, tmp_path: Path) -> None:
    client, _alice, _bob = api
    _commit(tmp_path, "demo", {"app.py": b"print('hi')\n", "README.md": b"# Demo\n"}, "First")
    _commit(tmp_path, "demo", {"src/lib/util.py": b"x = 1\n", "src/main.py": b"y\n"}, "Add src")
    root = client.get("/spaces/alice/demo/tree/main")
    assert root.status_code == 200, root.text
    assert 'href="/spaces/alice/demo/tree/main" aria-current="page">Files</a>' in root.text
    # Folders first, then files by name; each a link to its own page.
    assert root.text.index(">src<") < root.text.index(">app.py<") < root.text.index(">README.md<")
    assert 'href="/spaces/alice/demo/tree/main/src"' in root.text
    assert 'href="/spaces/alice/demo/blob/main/app.py"' in root.text
    assert "12 Bytes" in root.text  # app.py's size
    assert "Add src" in root.text  # the last commit of the tree
    nested = client.get("/spaces/alice/demo/tree/main/src/lib")
    assert nested.status_code == 200
    assert ">util.py<" in nested.text and ">main.py<" not in nested.text
    # Breadcrumbs back up: the Space, src, and lib (the page itself).
    assert 'href="/spaces/alice/demo/tree/main/src">src</a>' in nested.text
    assert '<span aria-current="page">lib</span>' in nested.text
    # A file's path under tree/ leads to its blob page.
    moved = client.get("/spaces/alice/demo/tree/main/app.py", follow_redirects=False)
    assert moved.status_code == 307
    assert moved.headers["location"] == "/spaces/alice/demo/blob/main/app.py"


def test_a_file_is_shown_escaped_and_a_binary_or_large_one_is_not(
    api: Api, tmp_path: Path, monkeypatch
) -> None:
    client, _alice, _bob = api
    _commit(
        tmp_path,
        "demo",
        {
            "page.html": b"<script>alert('x')</script>\n",
            "data.bin": b"\x00\x01\x02binary",
            "big.txt": b"a" * 50,
            "logo.png": b"\x89PNG\r\n\x1a\n",
        },
        "Files",
    )
    shown = client.get("/spaces/alice/demo/blob/main/page.html")
    assert shown.status_code == 200
    assert "<script>alert" not in shown.text
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in shown.text
    assert 'href="/spaces/alice/demo/resolve/main/page.html"' in shown.text
    binary = client.get("/spaces/alice/demo/blob/main/data.bin")
    assert "binary file" in binary.text and "<pre" not in binary.text
    assert 'href="/spaces/alice/demo/resolve/main/data.bin"' in binary.text
    image = client.get("/spaces/alice/demo/blob/main/logo.png")
    assert '<img class="file-image" src="/spaces/alice/demo/resolve/main/logo.png"' in image.text
    # The download link is the API's resolve route, which serves the file itself.
    assert client.get("/spaces/alice/demo/resolve/main/data.bin").content == b"\x00\x01\x02binary"
    monkeypatch.setattr(files_page, "SHOWN_BYTES", 10)
    cut = client.get("/spaces/alice/demo/blob/main/big.txt")
    assert "only its start is shown" in cut.text
    assert "a" * 10 in cut.text and "a" * 11 not in cut.text


def test_another_branch_and_one_with_slashes_and_the_switcher(api: Api, tmp_path: Path) -> None:
    client, _alice, _bob = api
    first = _commit(tmp_path, "demo", {"app.py": b"main\n"}, "First")
    _branch("demo", "feature/x", first)
    _commit(tmp_path, "demo", {"only-here.py": b"new\n"}, "On the feature", branch="feature/x")
    refs.create_tag(repos.repo_path("alice", "demo"), "v1", first, None, repos.identity("alice"))
    main = client.get("/spaces/alice/demo/tree/main")
    assert "only-here.py" not in main.text
    # The switcher lists branches and tags, the revision quoted as one URL segment.
    assert 'href="/spaces/alice/demo/tree/feature%2Fx"' in main.text
    assert 'href="/spaces/alice/demo/tree/v1"' in main.text
    feature = client.get("/spaces/alice/demo/tree/feature%2Fx")
    assert feature.status_code == 200 and ">only-here.py<" in feature.text
    assert 'href="/spaces/alice/demo/blob/feature%2Fx/only-here.py"' in feature.text
    blob = client.get("/spaces/alice/demo/blob/feature%2Fx/only-here.py")
    assert blob.status_code == 200 and "new" in blob.text
    # Sent with bare slashes, as the API takes it too.
    assert client.get("/spaces/alice/demo/blob/feature/x/only-here.py").status_code == 200
    # A commit's sha is a revision.
    at_first = client.get(f"/spaces/alice/demo/tree/{first}")
    assert at_first.status_code == 200 and f"commit {first[:7]}" in at_first.text
    # The API's tree listing still splits a slashed revision off the path.
    listed = client.get("/api/spaces/alice/demo/tree/feature%2Fx")
    assert {e["path"] for e in listed.json()} == {"app.py", "only-here.py"}


def test_history_lists_commits_newest_first_a_page_at_a_time(
    api: Api, tmp_path: Path, monkeypatch
) -> None:
    client, _alice, _bob = api
    for number in range(3):
        _commit(tmp_path, "demo", {f"f{number}.txt": b"x"}, f"Change number {number}")
    page = client.get("/spaces/alice/demo/commits/main")
    assert page.status_code == 200
    text = page.text
    assert (
        text.index("Change number 2")
        < text.index("Change number 1")
        < text.index("Change number 0")
    )
    assert "alice" in text
    monkeypatch.setattr(files_page, "COMMITS_PAGE", 2)
    first = client.get("/spaces/alice/demo/commits/main")
    assert "Change number 0" not in first.text
    assert 'href="/spaces/alice/demo/commits/main?p=1"' in first.text
    second = client.get("/spaces/alice/demo/commits/main?p=1")
    assert "Change number 0" in second.text and "Change number 2" not in second.text
    assert 'href="/spaces/alice/demo/commits/main?p=0"' in second.text
    # A page number that isn't one is the first page, not an error.
    assert client.get("/spaces/alice/demo/commits/main?p=nope").status_code == 200


def test_unknown_revisions_and_paths_are_a_404_page_saying_what(api: Api, tmp_path: Path) -> None:
    client, _alice, _bob = api
    # A Space with no commit yet: main is empty, not missing.
    empty = client.get("/spaces/alice/demo/tree/main")
    assert empty.status_code == 200 and "no files yet" in empty.text
    assert client.get("/spaces/alice/demo/commits/main").status_code == 200
    _commit(tmp_path, "demo", {"app.py": b"x\n"}, "First")
    for url, words in [
        ("/spaces/alice/demo/tree/nope", "no branch, tag or commit “nope”"),
        ("/spaces/alice/demo/blob/nope/app.py", "no branch, tag or commit “nope”"),
        ("/spaces/alice/demo/commits/nope", "no branch, tag or commit “nope”"),
        ("/spaces/alice/demo/tree/main/missing", "no folder “missing” at main"),
        ("/spaces/alice/demo/blob/main/missing.py", "no file “missing.py” at main"),
        ("/spaces/alice/demo/blob/main/..%2F..%2Fetc%2Fpasswd", "no file"),
        ("/spaces/alice/demo/tree/HEAD~1", "no branch, tag or commit"),
        ("/spaces/alice/nothing/tree/main", "There is no Space here"),
    ]:
        answer = client.get(url)
        assert answer.status_code == 404, url
        assert answer.headers["content-type"].startswith("text/html")
        assert words in answer.text, (url, answer.text)
    # The API's routes, which share the path lookup, say so in their own JSON shape.
    for url in [
        "/spaces/alice/demo/resolve/main/..%2F..%2Fetc%2Fpasswd",
        "/spaces/alice/demo/resolve/main/a%2F..%2Fapp.py",
    ]:
        assert client.get(url).status_code == 404, url
    assert client.get("/api/spaces/alice/demo/tree/main/..%2Fsrc").status_code == 404


def test_a_private_space_files_are_a_404_to_others(api: Api, tmp_path: Path) -> None:
    client, _alice, bob = api
    _private("secret")
    _commit(tmp_path, "secret", {"app.py": b"hidden\n"}, "Secret commit")
    for url in [
        "/spaces/alice/secret/tree/main",
        "/spaces/alice/secret/blob/main/app.py",
        "/spaces/alice/secret/commits/main",
    ]:
        assert client.get(url).status_code == 404, url
        answer = client.get(url, headers=bob)
        assert answer.status_code == 404 and "Secret commit" not in answer.text, url
    sign_in(client)  # alice, the owner, sees them
    assert ">app.py<" in client.get("/spaces/alice/secret/tree/main").text
    assert "hidden" in client.get("/spaces/alice/secret/blob/main/app.py").text
    assert "Secret commit" in client.get("/spaces/alice/secret/commits/main").text


def test_an_lfs_file_shows_its_size_and_download_and_a_pr_ref_is_a_revision(
    api: Api, tmp_path: Path
) -> None:
    client, _alice, _bob = api
    data = b"weights " * 1000
    oid = hashlib.sha256(data).hexdigest()
    lfs.write_object(io.BytesIO(data), oid, len(data))
    with Session(db.get_engine()) as session:
        space = spaces.get_space(session, "alice", "demo")
        assert space is not None and space.id is not None
        lfs.record(session, space.id, oid, len(data))
        session.commit()
    repo = repos.repo_path("alice", "demo")
    first = _commit(tmp_path, "demo", {"app.py": b"x\n"}, "First")
    repo_commit.create_commit(
        repo,
        "refs/heads/main",
        first,
        [repo_commit.AddLfs("model.bin", oid, len(data))],
        "Add weights\n",
        repos.identity("alice"),
    )
    listing = client.get("/spaces/alice/demo/tree/main")
    assert ">model.bin<" in listing.text and "LFS" in listing.text and "8.0 kB" in listing.text
    shown = client.get("/spaces/alice/demo/blob/main/model.bin")
    assert "stored with Git LFS" in shown.text and "8.0 kB" in shown.text
    assert "weights weights" not in shown.text and "<pre" not in shown.text
    assert client.get("/spaces/alice/demo/resolve/main/model.bin").content == data
    # A pull request's ref, quoted as one segment as the links quote it.
    refs.create(repo, "refs/pr/1", first, "test")
    at_pr = client.get("/spaces/alice/demo/tree/refs%2Fpr%2F1")
    assert at_pr.status_code == 200 and ">app.py<" in at_pr.text and "model.bin" not in at_pr.text
    assert 'href="/spaces/alice/demo/blob/refs%2Fpr%2F1/app.py"' in at_pr.text
    assert "First" in client.get("/spaces/alice/demo/commits/refs%2Fpr%2F1").text


def test_a_renamed_space_files_redirect_to_its_new_name(api: Api, tmp_path: Path) -> None:
    client, alice, _bob = api
    _commit(tmp_path, "demo", {"src/app.py": b"x\n"}, "First")
    moved = client.post(
        "/api/repos/move",
        json={"fromRepo": "alice/demo", "toRepo": "alice/demo2", "type": "space"},
        headers=alice,
    )
    assert moved.is_success, moved.text
    answer = client.get("/spaces/alice/demo/blob/main/src/app.py", follow_redirects=False)
    assert answer.status_code == 307
    assert answer.headers["location"] == "/spaces/alice/demo2/blob/main/src/app.py"
    assert client.get(answer.headers["location"]).status_code == 200
