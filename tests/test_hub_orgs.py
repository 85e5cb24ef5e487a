"""Organisations through the unmodified huggingface_hub, git and the gateway, on both stacks:
an organisation `lab` with an admin (ada), a writer (wes), a contributor (cora), a reader
(rita), and an outsider (otto). Roles decide as on the Hub (orchestrator/core/auth.py).

No Space here builds: each is created with create_repo and pushed to on a branch other than
main, so it stays NO_APP_FILE; the gateway's 503 (may visit, nothing serving) against its 404
(may not) is what proves who may open a private app.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

from tests.platform import Platform, commit_change, git, push, sample_checkout

ORG = "lab"
ROLES = {"wes": "write", "cora": "contributor", "rita": "read"}


def hub(platform: Platform, token: str | None) -> HfApi:
    return HfApi(endpoint=platform.url, token=token or False)


def status_of(error: pytest.ExceptionInfo[HfHubHTTPError]) -> int:
    return error.value.response.status_code


def call(
    platform: Platform, method: str, path: str, token: str, **kwargs: object
) -> httpx.Response:
    return httpx.request(
        method,
        f"{platform.url}{path}",
        headers={"authorization": f"Bearer {token}"},
        timeout=30,
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.fixture(scope="module")
def people(platform: Platform) -> Iterator[dict[str, str]]:
    """Tokens of the five, the org with its members (Spaceport's own API), and root's admin
    token; every Space the tests made is deleted at the end."""
    tokens = {name: platform.token(name) for name in ("ada", "wes", "cora", "rita", "otto")}
    tokens["root"] = platform.token("root", "--admin")
    tokens["ada-read"] = platform.token("ada", "--role", "read")
    created = call(
        platform,
        "POST",
        "/api/organizations",
        tokens["root"],
        json={"name": ORG, "admin": "ada", "fullname": "The Lab"},
    )
    assert created.status_code == 201, created.text
    for user, role in ROLES.items():
        added = call(
            platform,
            "PUT",
            f"/api/organizations/{ORG}/members/{user}",
            tokens["ada"],
            json={"role": role},
        )
        assert added.status_code == 200, added.text
    yield tokens
    for space in hub(platform, tokens["root"]).list_spaces(author=ORG):
        platform.delete_space(*space.id.split("/"), tokens["root"])
    for owner in ("wes", "cora"):
        for space in hub(platform, tokens["root"]).list_spaces(author=owner):
            if space.id.split("/")[1].startswith("org-"):
                platform.delete_space(*space.id.split("/"), tokens["root"])


@pytest.fixture(scope="module")
def secret_space(platform: Platform, people: dict[str, str]) -> str:
    """lab/secret: private, created by the writer wes."""
    url = hub(platform, people["wes"]).create_repo(
        f"{ORG}/secret", repo_type="space", space_sdk="gradio", private=True
    )
    assert url.repo_id == f"{ORG}/secret"
    return f"{ORG}/secret"


def test_whoami_lists_the_orgs_with_the_users_role(
    platform: Platform, people: dict[str, str]
) -> None:
    me = hub(platform, people["cora"]).whoami()
    assert [(o["type"], o["name"], o["fullname"], o["roleInOrg"]) for o in me["orgs"]] == [
        ("org", ORG, "The Lab", "contributor")
    ]
    assert me["auth"]["accessToken"]["role"] == "write"
    assert hub(platform, people["otto"]).whoami()["orgs"] == []
    admin_read = hub(platform, people["ada-read"]).whoami()
    assert admin_read["orgs"][0]["roleInOrg"] == "admin"
    assert admin_read["auth"]["accessToken"]["role"] == "read"  # ...and this token only reads


def test_members_and_overview(platform: Platform, people: dict[str, str]) -> None:
    members = list(hub(platform, people["rita"]).list_organization_members(ORG))
    assert {m.username for m in members} == {"ada", *ROLES}
    assert {m.username: m.role for m in members} == {"ada": "admin", **ROLES}  # type: ignore[attr-defined]
    outsider_view = list(hub(platform, people["otto"]).list_organization_members(ORG))
    assert not any(hasattr(m, "role") for m in outsider_view)  # roles are for members
    overview = hub(platform, None).get_organization_overview(ORG)
    assert (overview.name, overview.fullname, overview.num_users) == (ORG, "The Lab", 4)
    with pytest.raises(HfHubHTTPError) as missing:
        hub(platform, None).get_organization_overview("no-such-org")
    assert status_of(missing) == 404
    with pytest.raises(HfHubHTTPError) as missing:
        list(hub(platform, None).list_organization_members("otto"))  # a user, not an org
    assert status_of(missing) == 404


def test_who_creates_spaces_in_the_org(platform: Platform, people: dict[str, str]) -> None:
    for user in ("wes", "cora", "ada"):
        name = f"{ORG}/made-by-{user}"
        assert (
            hub(platform, people[user])
            .create_repo(name, repo_type="space", space_sdk="gradio")
            .repo_id
            == name
        )
    for user in ("rita", "otto", "ada-read"):
        with pytest.raises(HfHubHTTPError) as refused:
            hub(platform, people[user]).create_repo(
                f"{ORG}/by-{user}", repo_type="space", space_sdk="gradio"
            )
        assert status_of(refused) == 403
    # Deleting: the creator (a contributor) and writers may, a reader may not.
    with pytest.raises(HfHubHTTPError) as refused:
        hub(platform, people["rita"]).delete_repo(f"{ORG}/made-by-cora", repo_type="space")
    assert status_of(refused) == 403
    with pytest.raises(HfHubHTTPError) as refused:
        hub(platform, people["cora"]).delete_repo(f"{ORG}/made-by-wes", repo_type="space")
    assert status_of(refused) == 403
    hub(platform, people["cora"]).delete_repo(f"{ORG}/made-by-cora", repo_type="space")
    hub(platform, people["wes"]).delete_repo(f"{ORG}/made-by-ada", repo_type="space")
    assert not hub(platform, people["ada"]).repo_exists(f"{ORG}/made-by-cora", repo_type="space")
    # Without a namespace, create_repo still means the caller's own.
    mine = hub(platform, people["cora"]).create_repo(
        "org-own", repo_type="space", space_sdk="gradio"
    )
    assert mine.repo_id == "cora/org-own"


def test_a_private_org_space_is_seen_by_members_only(
    platform: Platform, people: dict[str, str], secret_space: str, tmp_path: Path
) -> None:
    for user in ("ada", "wes", "cora", "rita"):
        assert hub(platform, people[user]).space_info(secret_space).private is True
        listed = [s.id for s in hub(platform, people[user]).list_spaces(author=ORG)]
        assert secret_space in listed
    for token in (people["otto"], None):
        with pytest.raises(RepositoryNotFoundError):
            hub(platform, token).space_info(secret_space)
        assert secret_space not in [s.id for s in hub(platform, token).list_spaces(author=ORG)]
        assert not hub(platform, token).repo_exists(secret_space, repo_type="space")
    # git agrees: the reader clones, the outsider finds nothing.
    cloned = git(tmp_path, "clone", "-q", platform.git_url(ORG, "secret", people["rita"]), "r")
    assert cloned.returncode == 0, cloned.stderr
    refused = git(
        tmp_path, "clone", "-q", platform.git_url(ORG, "secret", people["otto"]), "o", check=False
    )
    assert refused.returncode != 0 and "not found" in refused.stderr.lower()


def test_pushes_follow_the_roles(
    platform: Platform, people: dict[str, str], secret_space: str, tmp_path: Path
) -> None:
    repo = sample_checkout("hello", tmp_path)
    # A branch, not main: nothing builds.
    assert (
        push(repo, platform.git_url(ORG, "secret", people["wes"]), "main:feature").returncode == 0
    )
    assert (
        push(repo, platform.git_url(ORG, "secret", people["ada"]), "main:feature").returncode == 0
    )
    for user, says in (
        ("cora", "write access"),
        ("rita", "write access"),
        ("ada-read", "read-only"),
    ):
        commit_change(repo, "app.py", f"# by {user}\n")  # something to push
        refused = push(
            repo, platform.git_url(ORG, "secret", people[user]), "main:feature", check=False
        )
        assert refused.returncode != 0 and says in refused.stderr, (user, refused.stderr)
    refused = push(
        repo, platform.git_url(ORG, "secret", people["otto"]), "main:feature", check=False
    )
    assert refused.returncode != 0 and "not found" in refused.stderr.lower()
    # A contributor writes to the org Spaces they created, by git and by the API.
    hub(platform, people["cora"]).create_repo(
        f"{ORG}/cora-app", repo_type="space", space_sdk="gradio"
    )
    assert (
        push(repo, platform.git_url(ORG, "cora-app", people["cora"]), "main:feature").returncode
        == 0
    )
    # A first push to a new name creates the Space, in the org too (contributors and up).
    assert (
        push(repo, platform.git_url(ORG, "pushed-new", people["cora"]), "main:setup").returncode
        == 0
    )
    assert hub(platform, people["rita"]).space_info(f"{ORG}/pushed-new").id == f"{ORG}/pushed-new"
    refused = push(
        repo, platform.git_url(ORG, "rita-new", people["rita"]), "main:setup", check=False
    )
    assert refused.returncode != 0 and "can't create" in refused.stderr


def test_secrets_and_settings_follow_the_roles(
    platform: Platform, people: dict[str, str], secret_space: str
) -> None:
    hub(platform, people["wes"]).add_space_secret(secret_space, "API_KEY", "s3cr3t")
    assert set(hub(platform, people["ada"]).get_space_secrets(secret_space)) == {"API_KEY"}
    for user in ("cora", "rita", "ada-read"):
        with pytest.raises(HfHubHTTPError) as refused:
            hub(platform, people[user]).get_space_secrets(secret_space)
        assert status_of(refused) == 403
        with pytest.raises(HfHubHTTPError) as refused:
            hub(platform, people[user]).add_space_variable(secret_space, "X", "1")
        assert status_of(refused) == 403
    with pytest.raises(RepositoryNotFoundError):
        hub(platform, people["otto"]).get_space_secrets(secret_space)
    # Settings too: only writers change them.
    for user in ("cora", "rita"):
        with pytest.raises(HfHubHTTPError) as refused:
            hub(platform, people[user]).update_repo_settings(
                secret_space, private=True, repo_type="space"
            )
        assert status_of(refused) == 403
    hub(platform, people["wes"]).update_repo_settings(secret_space, private=True, repo_type="space")
    # Its event log is the members' to read, and hidden from others like the Space.
    assert platform.api(f"/api/spaces/{secret_space}/events", people["rita"]).status_code == 200
    assert platform.api(f"/api/spaces/{secret_space}/events", people["otto"]).status_code == 404
    # The contributor manages their own Space's secrets.
    own = f"{ORG}/cora-secrets"
    hub(platform, people["cora"]).create_repo(own, repo_type="space", space_sdk="gradio")
    hub(platform, people["cora"]).add_space_secret(own, "MINE", "x")
    assert set(hub(platform, people["cora"]).get_space_secrets(own)) == {"MINE"}
    with pytest.raises(HfHubHTTPError) as refused:
        hub(platform, people["rita"]).add_space_secret(own, "NOPE", "x")
    assert status_of(refused) == 403


def test_move_and_duplicate_into_and_out_of_the_org(
    platform: Platform, people: dict[str, str], secret_space: str
) -> None:
    wes, cora = hub(platform, people["wes"]), hub(platform, people["cora"])
    wes.create_repo("org-move", repo_type="space", space_sdk="gradio")
    wes.move_repo("wes/org-move", f"{ORG}/moved-in", repo_type="space")
    assert hub(platform, people["rita"]).space_info(f"{ORG}/moved-in").id == f"{ORG}/moved-in"
    wes.move_repo(f"{ORG}/moved-in", "wes/org-moved-out", repo_type="space")
    assert wes.space_info("wes/org-moved-out").id == "wes/org-moved-out"
    # Moving in needs write in the org: a contributor can't.
    cora.create_repo("org-try", repo_type="space", space_sdk="gradio")
    with pytest.raises(HfHubHTTPError) as refused:
        cora.move_repo("cora/org-try", f"{ORG}/try", repo_type="space")
    assert status_of(refused) == 403
    # Duplicating into the org: a contributor may, and writes to the copy; a reader may not.
    copy = cora.duplicate_repo(secret_space, f"{ORG}/secret-copy", repo_type="space", private=True)
    assert copy.repo_id == f"{ORG}/secret-copy"
    cora.add_space_variable(f"{ORG}/secret-copy", "MODE", "copy")
    with pytest.raises(HfHubHTTPError) as refused:
        hub(platform, people["rita"]).duplicate_repo(
            secret_space, f"{ORG}/rita-copy", repo_type="space"
        )
    assert status_of(refused) == 403


def test_a_reader_opens_a_private_org_app_with_their_token(
    platform: Platform, people: dict[str, str], secret_space: str
) -> None:
    host = hub(platform, people["rita"]).space_info(secret_space).host
    assert host
    url = host.replace("https://", "http://")

    def visit(token: str | None) -> int:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        return httpx.get(url, headers=headers, timeout=30).status_code

    deadline = time.monotonic() + 30
    while visit(people["rita"]) == 404 and time.monotonic() < deadline:
        time.sleep(0.5)  # the gateway's route table hears of the Space on its change feed
    # 503: let through, nothing serving yet (it never built); 404: as if it did not exist.
    assert visit(people["rita"]) == 503
    assert visit(people["ada-read"]) == 503
    assert visit(people["otto"]) == 404
    assert visit(None) == 404


def test_managing_members(platform: Platform, people: dict[str, str], secret_space: str) -> None:
    path = f"/api/organizations/{ORG}/members"
    # Only org admins (with a write token) manage members.
    for user in ("wes", "otto", "ada-read"):
        response = call(platform, "PUT", f"{path}/otto", people[user], json={"role": "read"})
        assert response.status_code == 403, (user, response.text)
        assert response.json()["error"]
    bad = call(platform, "PUT", f"{path}/otto", people["ada"], json={"role": "owner"})
    assert bad.status_code == 422 and "role" in bad.json()["error"]
    assert (
        call(
            platform, "PUT", f"{path}/nobody-here", people["ada"], json={"role": "read"}
        ).status_code
        == 404
    )
    # The last admin stays.
    last = call(platform, "DELETE", f"{path}/ada", people["ada"])
    assert last.status_code == 409 and "last admin" in last.json()["error"]
    assert (
        call(platform, "PUT", f"{path}/ada", people["ada"], json={"role": "write"}).status_code
        == 409
    )
    # Added, seen, then leaving by themselves: access follows at once.
    assert (
        call(platform, "PUT", f"{path}/otto", people["ada"], json={"role": "read"}).status_code
        == 200
    )
    assert [o["name"] for o in hub(platform, people["otto"]).whoami()["orgs"]] == [ORG]
    assert hub(platform, people["otto"]).space_info(secret_space).private is True
    assert call(platform, "DELETE", f"{path}/otto", people["otto"]).status_code == 200
    assert hub(platform, people["otto"]).whoami()["orgs"] == []
    with pytest.raises(RepositoryNotFoundError):
        hub(platform, people["otto"]).space_info(secret_space)
    # Organisations: platform admins create them; one namespace with the users.
    create = "/api/organizations"
    assert (
        call(
            platform, "POST", create, people["ada"], json={"name": "x-org", "admin": "ada"}
        ).status_code
        == 403
    )
    taken = call(platform, "POST", create, people["root"], json={"name": "Otto", "admin": "ada"})
    assert taken.status_code == 409
    # An organisation has no tokens, and its events are in the audit log.
    refused = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "token", "create", ORG],
        env=platform.env,
        capture_output=True,
        text=True,
    )
    assert refused.returncode != 0 and "organisation" in refused.stderr
    assert "ada\tadmin" in platform.cli("org", "members", ORG)
    log = call(
        platform, "GET", "/api/events?kind=org.member_set,org.member_removed", people["root"]
    )
    kinds = [(e["kind"], e["data"]["user"]) for e in log.json()["events"]]
    assert ("org.member_set", "otto") in kinds and ("org.member_removed", "otto") in kinds


def test_discussions_merges_and_hardware_follow_the_roles(
    platform: Platform, people: dict[str, str], secret_space: str
) -> None:
    """The other issues' rules in an organisation: anyone who can read opens and comments,
    the repo's writers (org write and admin, a contributor on their own Space) merge, close
    and pay for hardware."""
    rita, cora, wes = (hub(platform, people[u]) for u in ("rita", "cora", "wes"))
    talk = rita.create_discussion(secret_space, title="A question", repo_type="space")
    cora.comment_discussion(secret_space, talk.num, "Me too", repo_type="space")
    with pytest.raises(RepositoryNotFoundError):
        hub(platform, people["otto"]).create_discussion(secret_space, title="Hi", repo_type="space")
    with pytest.raises(HfHubHTTPError) as refused:
        cora.change_discussion_status(secret_space, talk.num, "closed", repo_type="space")
    assert status_of(refused) == 403
    wes.change_discussion_status(secret_space, talk.num, "closed", repo_type="space")
    # A reader's pull request (no app file in it: nothing builds) is merged by a writer only.
    commit = rita.upload_file(
        path_or_fileobj=b"notes\n",
        path_in_repo="NOTES.md",
        repo_id=secret_space,
        repo_type="space",
        create_pr=True,
    )
    assert commit.pr_num is not None
    for user in ("rita", "cora", "ada-read"):
        with pytest.raises(HfHubHTTPError) as refused:
            hub(platform, people[user]).merge_pull_request(
                secret_space, commit.pr_num, repo_type="space"
            )
        assert status_of(refused) == 403, user
    hub(platform, people["ada"]).merge_pull_request(secret_space, commit.pr_num, repo_type="space")
    assert "NOTES.md" in wes.list_repo_files(secret_space, repo_type="space")
    for user in ("rita", "cora"):
        with pytest.raises(HfHubHTTPError) as refused:
            hub(platform, people[user]).request_space_hardware(secret_space, "cpu-upgrade")
        assert status_of(refused) == 403
