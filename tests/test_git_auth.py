"""Every way a git request can be refused: the exact status, and nothing changed."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
import pytest
import sqlalchemy

from tests.platform import Platform, git, push, sample_checkout

RECEIVE_REFS = "info/refs?service=git-receive-pack"
UPLOAD_REFS = "info/refs?service=git-upload-pack"


@pytest.fixture(scope="module")
def people(platform: Platform, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    tokens = {
        "alice": platform.token("alice"),
        "bob": platform.token("bob"),
        "carol-read": platform.token("carol", "--role", "read"),
    }
    workdir = tmp_path_factory.mktemp("auth")
    for name in ("auth-public", "auth-private"):
        repo = sample_checkout("static_site", workdir)
        push(repo, platform.git_url("alice", name, tokens["alice"]))
        platform.wait_for_stage("alice", name)
    response = httpx.put(
        f"{platform.url}/api/spaces/alice/auth-private/settings",
        json={"visibility": "private"},
        headers={"authorization": f"Bearer {tokens['alice']}"},
    )
    assert response.status_code == 200 and response.json()["private"] is True
    return tokens


def basic(token: str) -> httpx.BasicAuth:
    return httpx.BasicAuth("anyone", token)


def snapshot(platform: Platform) -> tuple[str, dict[str, int]]:
    """A digest of every file of every repo, and the row count of every table."""
    digest = hashlib.sha256()
    for path in sorted((platform.home / "repos").rglob("*")):
        if path.is_file():
            digest.update(str(path).encode() + path.read_bytes())
    url = platform.env.get("SPACEPORT_DATABASE_URL") or f"sqlite:///{platform.home}/spaceport.db"
    engine = sqlalchemy.create_engine(url)
    with engine.connect() as connection:
        counts = {
            table: connection.execute(sqlalchemy.text(f'SELECT count(*) FROM "{table}"')).scalar()
            for table in ("user", "apitoken", "space", "build", "buildlogline")
        }
    engine.dispose()
    return digest.hexdigest(), counts


@pytest.mark.parametrize(
    ("who", "space", "path", "status"),
    [
        # Pushing without credentials asks for them.
        (None, "alice/auth-public", RECEIVE_REFS, 401),
        (None, "alice/brand-new", RECEIVE_REFS, 401),
        ("wrong", "alice/auth-public", RECEIVE_REFS, 401),
        ("wrong", "alice/auth-public", UPLOAD_REFS, 401),
        # Someone else's public Space lets git talk (a reader may push to a pull request
        # of theirs, refs/pr/N, as on the Hub) and refuses the ref update itself: see
        # test_real_git_client_sees_the_refusals. A missing one in a namespace that is
        # not yours: 404, the same answer as a private one, so nothing tells them apart.
        ("bob", "alice/brand-new", RECEIVE_REFS, 404),
        # A read token can clone but not push, even to your own Spaces.
        ("carol-read", "carol/brand-new", RECEIVE_REFS, 403),
        # A private Space is invisible to anyone who can't see it: 404 once signed in.
        # Anonymous git requests get the same challenge for private and missing Spaces,
        # since git sends a URL's credentials only after one.
        ("bob", "alice/auth-private", UPLOAD_REFS, 404),
        ("bob", "alice/auth-private", RECEIVE_REFS, 404),
        ("bob", "alice/missing", UPLOAD_REFS, 404),
        (None, "alice/auth-private", UPLOAD_REFS, 401),
        (None, "alice/missing", UPLOAD_REFS, 401),
    ],
)
def test_refusals_have_exact_status_and_change_nothing(
    platform: Platform,
    people: dict[str, str],
    who: str | None,
    space: str,
    path: str,
    status: int,
) -> None:
    before = snapshot(platform)
    token = {"wrong": "sp_not-a-real-token"}.get(who or "", people.get(who or ""))
    for suffix in ("", ".git"):
        response = httpx.get(
            f"{platform.url}/spaces/{space}{suffix}/{path}",
            auth=basic(token) if token else None,
        )
        assert response.status_code == status, response.text
        if status == 401:
            assert response.headers["www-authenticate"].startswith("Basic")
    if path == RECEIVE_REFS:  # the pack upload itself is refused the same way
        response = httpx.post(
            f"{platform.url}/spaces/{space}/git-receive-pack",
            content=b"0000",
            auth=basic(token) if token else None,
            headers={"content-type": "application/x-git-receive-pack-request"},
        )
        assert response.status_code == status
    assert snapshot(platform) == before
    assert httpx.get(f"{platform.url}/api/health").status_code == 200


def test_real_git_client_sees_the_refusals(
    platform: Platform, people: dict[str, str], workdir: Path
) -> None:
    before = snapshot(platform)
    repo = sample_checkout("hello", workdir)
    anonymous = push(repo, platform.git_url("alice", "auth-public"), check=False)
    assert anonymous.returncode != 0
    wrong = push(repo, platform.git_url("alice", "auth-public", "sp_wrong"), check=False)
    assert "Authentication failed" in wrong.stderr or "401" in wrong.stderr
    other = push(repo, platform.git_url("alice", "auth-public", people["bob"]), check=False)
    # A reader's push to a branch is refused at its ref update, saying what they may do.
    assert other.returncode != 0 and "push only to a pull request of yours" in other.stderr
    hidden = git(
        workdir,
        "clone",
        platform.git_url("alice", "auth-private", people["bob"]),
        str(workdir / "nope"),
        check=False,
    )
    assert hidden.returncode != 0 and "not found" in hidden.stderr.lower()
    assert snapshot(platform) == before


def test_who_may_read(platform: Platform, people: dict[str, str], workdir: Path) -> None:
    public = git(
        workdir,
        "clone",
        "-q",
        platform.git_url("alice", "auth-public"),
        str(workdir / "public"),
        check=False,
    )
    assert public.returncode == 0, public.stderr  # anonymous clone of a public Space
    own_private = git(
        workdir,
        "clone",
        "-q",
        platform.git_url("alice", "auth-private", people["alice"]),
        str(workdir / "private"),
        check=False,
    )
    assert own_private.returncode == 0, own_private.stderr
    response = platform.api("/api/spaces/alice/auth-private", people["bob"])
    assert response.status_code == 404
    assert response.headers["x-error-code"] == "RepoNotFound"
    assert platform.api("/api/spaces/alice/auth-private").status_code == 404
    assert platform.api("/api/spaces/alice/auth-private", people["alice"]).status_code == 200
    assert (
        platform.api("/api/spaces/alice/auth-private/runtime", people["alice"]).json()["stage"]
        == "RUNNING"
    )
