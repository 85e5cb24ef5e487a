"""Creating a Space with huggingface_hub as on the Hub: its first commit (README.md with the
sdk's front matter, the Hub's default .gitattributes), templates, and the file rules of
uploads (.gitignore, paths, folder deletion, README validation), against a real Spaceport.

Files and repo creation add nothing stack-specific: sqlite-embedded only. Only one Space
builds (the static one, the cheapest build); the others stay NO_APP_FILE.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from huggingface_hub import (
    CommitOperationAdd,
    CommitOperationDelete,
    HfApi,
    constants,
    hf_hub_download,
)
from huggingface_hub.errors import HfHubHTTPError
from huggingface_hub.hf_api import RepoFile

from orchestrator.repos.initial_commit import GITATTRIBUTES
from tests.platform import SAMPLES, Platform

pytestmark = pytest.mark.parametrize("platform", ["sqlite-embedded"], indirect=True)

OWNER = "creator"


@pytest.fixture(scope="module")
def token(platform: Platform) -> str:
    return platform.token(OWNER)


@pytest.fixture(scope="module")
def api(platform: Platform, token: str) -> HfApi:
    return HfApi(endpoint=platform.url, token=token)


@pytest.fixture
def space(platform: Platform, api: HfApi, token: str) -> Iterator[str]:
    """A Space made with create_repo (gradio), deleted after the test."""
    name = f"made-{random.randrange(16**6):06x}"
    api.create_repo(f"{OWNER}/{name}", repo_type="space", space_sdk="gradio")
    yield f"{OWNER}/{name}"
    platform.delete_space(OWNER, name, token)


@pytest.fixture
def no_xet(monkeypatch: pytest.MonkeyPatch) -> None:
    """HF_HUB_DISABLE_XET=1: LFS-mode files go through the LFS batch API."""
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)


def download(platform: Platform, token: str, repo_id: str, path: str, workdir: Path) -> str:
    local = hf_hub_download(
        repo_id,
        path,
        repo_type="space",
        endpoint=platform.url,
        token=token,
        cache_dir=workdir / "hf-cache",
    )
    return Path(local).read_text()


# metadata_update and RepoCard read HF_ENDPOINT at import time (they take no endpoint):
# run them as a user does, in a process started with it.
CARD_CALLS = """
import json, sys
from huggingface_hub import RepoCard, metadata_update
space = sys.argv[1]
metadata_update(space, {"tags": ["demo"]}, repo_type="space", overwrite=True)
card = RepoCard.load(space, repo_type="space")
card.text = "A better description."
card.push_to_hub(space, repo_type="space")
again = RepoCard.load(space, repo_type="space")
print(json.dumps({"tags": again.data.tags, "sdk": again.data.sdk, "text": again.text.strip()}))
"""


def card_calls(platform: Platform, token: str, space: str, workdir: Path) -> dict:
    env = {
        **os.environ,
        "HF_ENDPOINT": platform.url,
        "HF_TOKEN": token,
        "HF_HOME": str(workdir / "hf-home"),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "NO_PROXY": "localhost,127.0.0.1,.localhost",
    }
    result = subprocess.run(
        [sys.executable, "-c", CARD_CALLS, space],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def front_matter(readme: str) -> dict:
    return yaml.safe_load(readme.split("---\n")[1])


def test_a_created_space_has_the_hubs_first_commit_and_builds_when_its_app_lands(
    platform: Platform, api: HfApi, token: str, workdir: Path
) -> None:
    repo_id = f"{OWNER}/site"
    api.create_repo(repo_id, repo_type="space", space_sdk="static")
    try:
        assert api.list_repo_files(repo_id, repo_type="space") == [".gitattributes", "README.md"]
        repo = platform.home / "repos" / OWNER / "site.git"
        log = subprocess.run(
            ["git", "-C", str(repo), "log", "--format=%an|%P|%s", "main"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert log == f"{OWNER}||initial commit\n"
        card = front_matter(download(platform, token, repo_id, "README.md", workdir))
        assert card["title"] == "site" and card["sdk"] == "static" and card["pinned"] is False
        colours = {"red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray"}
        assert {card["colorFrom"], card["colorTo"]} <= colours and card["emoji"]
        attributes = download(platform, token, repo_id, ".gitattributes", workdir)
        assert attributes == GITATTRIBUTES
        runtime = platform.wait_for_stage(OWNER, "site", token, timeout=60)
        assert runtime["stage"] == "NO_APP_FILE", runtime
        assert "index.html not found" in runtime["errorMessage"]
        assert platform.builds(OWNER, "site", token) == []

        info = api.upload_file(
            path_or_fileobj=str(SAMPLES / "static_site" / "index.html"),
            path_in_repo="index.html",
            repo_id=repo_id,
            repo_type="space",
        )
        runtime = platform.wait_for_stage(OWNER, "site", token)
        assert (runtime["stage"], runtime["sha"]) == ("RUNNING", info.oid), runtime
        page = httpx.get(platform.app_url(OWNER, "site"), timeout=30)
        assert "Static Space" in page.text
    finally:
        platform.delete_space(OWNER, "site", token)


def test_a_gradio_readme_names_the_default_gradio_and_its_app(
    platform: Platform, api: HfApi, token: str, space: str, workdir: Path
) -> None:
    card = front_matter(download(platform, token, space, "README.md", workdir))
    assert card["sdk"] == "gradio" and card["app_file"] == "app.py"
    assert card["sdk_version"] == "6.31.0"  # SPACEPORT_DEFAULT_GRADIO_VERSION
    assert card["title"] == space.split("/")[1] and card["emoji"]
    readme = download(platform, token, space, "README.md", workdir)
    assert "https://huggingface.co/docs/hub/spaces-config-reference" in readme


def test_main_exists_from_the_start(
    platform: Platform, api: HfApi, token: str, space: str, workdir: Path
) -> None:
    head = api.space_info(space).sha
    assert head is not None
    # Nothing to commit: the client answers main's head, which now exists.
    empty = api.create_commit(space, operations=[], commit_message="nothing", repo_type="space")
    assert empty.oid == head

    with pytest.raises(HfHubHTTPError) as stale:
        api.upload_file(
            path_or_fileobj=b"x",
            path_in_repo="x.txt",
            repo_id=space,
            repo_type="space",
            parent_commit="0" * 40,
        )
    assert stale.value.response.status_code == 412
    fresh = api.upload_file(
        path_or_fileobj=b"x",
        path_in_repo="x.txt",
        repo_id=space,
        repo_type="space",
        parent_commit=head,
    )

    cards = card_calls(platform, token, space, workdir)
    assert cards == {"tags": ["demo"], "sdk": "gradio", "text": "A better description."}
    assert api.space_info(space).sha not in (head, fresh.oid)
    # Still no app: no build was started by any of these commits.
    assert platform.runtime(*space.split("/"), token)["stage"] in ("NO_APP_FILE", "STOPPED")


def test_a_duplicate_copies_the_history_and_adds_no_commit(
    platform: Platform, api: HfApi, token: str, space: str
) -> None:
    copy = f"{space}-copy"
    api.duplicate_repo(space, to_id=copy, repo_type="space")
    try:
        assert api.space_info(copy).sha == api.space_info(space).sha
        repo = platform.home / "repos" / OWNER / f"{copy.split('/')[1]}.git"
        count = subprocess.run(
            ["git", "-C", str(repo), "rev-list", "--count", "main"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert count == "1\n"
    finally:
        platform.delete_space(OWNER, copy.split("/")[1], token)


def test_small_binaries_are_lfs_as_on_the_hub(
    platform: Platform, api: HfApi, token: str, space: str, no_xet: None, workdir: Path
) -> None:
    data = os.urandom(300)
    info = api.upload_file(
        path_or_fileobj=data, path_in_repo="weights/w.bin", repo_id=space, repo_type="space"
    )
    (entry,) = api.get_paths_info(space, ["weights/w.bin"], repo_type="space")
    assert isinstance(entry, RepoFile) and entry.lfs is not None and entry.lfs.size == 300
    head = httpx.head(
        f"{platform.url}/spaces/{space}/resolve/main/weights/w.bin",
        headers={"authorization": f"Bearer {token}"},
    )
    assert head.headers["X-Linked-Etag"] == f'"{entry.lfs.sha256}"'
    assert head.headers["X-Repo-Commit"] == info.oid
    # Already covered by `*.bin`: .gitattributes is left as it was.
    attributes = download(platform, token, space, ".gitattributes", workdir)
    assert attributes == GITATTRIBUTES
    plain = api.upload_file(
        path_or_fileobj=b"print(1)\n", path_in_repo="tool.py", repo_id=space, repo_type="space"
    )
    (entry,) = api.get_paths_info(space, ["tool.py"], repo_type="space", revision=plain.oid)
    assert isinstance(entry, RepoFile) and entry.lfs is None


def test_templates_are_listed_and_seed_a_space(platform: Platform, api: HfApi, token: str) -> None:
    templates = api.list_space_templates()
    by_name = {t.name: t for t in templates}
    assert {t.sdk for t in templates} >= {"gradio", "static", "docker"}
    assert by_name["Gradio"].repo_id == "spaceport/gradio-hello"
    assert not by_name["Gradio"].preferred_private

    repo_id = f"{OWNER}/from-template"
    api.create_repo(repo_id, repo_type="space", space_template="static html")
    try:
        files = api.list_repo_files(repo_id, repo_type="space")
        assert files == [".gitattributes", "README.md", "index.html", "style.css"]
        assert api.space_info(repo_id).sdk == "static"
        # It has its app: a build starts at once (the Space is deleted before it matters).
        assert len(platform.builds(OWNER, "from-template", token)) == 1
    finally:
        platform.delete_space(OWNER, "from-template", token)

    with pytest.raises(ValueError, match="Unknown Space template"):
        api.create_repo(f"{OWNER}/nope", repo_type="space", space_template="jupyterlab")
    # Asked for directly (no client check first): a 404 that names the templates.
    raw = httpx.post(
        f"{platform.url}/api/repos/create",
        json={"name": "nope", "type": "space", "sdk": "gradio", "template": "x/jupyterlab"},
        headers={"authorization": f"Bearer {token}"},
    )
    assert raw.status_code == 404 and "spaceport/gradio-hello" in raw.json()["error"]
    assert raw.headers["X-Error-Message"]
    mismatch = httpx.post(
        f"{platform.url}/api/repos/create",
        json={"name": "nope", "type": "space", "sdk": "docker", "template": "Gradio"},
        headers={"authorization": f"Bearer {token}"},
    )
    assert mismatch.status_code == 400, mismatch.text
    assert not api.repo_exists(f"{OWNER}/nope", repo_type="space")


def test_gitignore_is_honoured_from_the_commit_and_from_the_branch(api: HfApi, space: str) -> None:
    api.create_commit(
        space,
        [
            CommitOperationAdd(".gitignore", b"*.log\nbuild/\n"),
            CommitOperationAdd("debug.log", b"noise\n"),
            CommitOperationAdd("build/out.js", b"x\n"),
            CommitOperationAdd("main.py", b"print(1)\n"),
        ],
        commit_message="with a .gitignore",
        repo_type="space",
    )
    files = set(api.list_repo_files(space, repo_type="space"))
    assert {".gitignore", "main.py"} <= files
    assert not {"debug.log", "build/out.js"} & files

    # No .gitignore in this commit: the branch's applies.
    api.create_commit(
        space,
        [CommitOperationAdd("again.log", b"x\n"), CommitOperationAdd("kept.txt", b"x\n")],
        commit_message="after",
        repo_type="space",
    )
    files = set(api.list_repo_files(space, repo_type="space"))
    assert "kept.txt" in files and "again.log" not in files
    # Every file ignored: the client sends no operation, and the commit is empty.
    before = api.space_info(space).sha
    empty = api.upload_file(
        path_or_fileobj=b"x\n", path_in_repo="only.log", repo_id=space, repo_type="space"
    )
    assert empty.oid != before
    assert set(api.list_repo_files(space, repo_type="space")) == files


def test_paths_that_climb_with_backslashes_are_refused(api: HfApi, space: str) -> None:
    for bad in ("..\\x", "a\\..\\..\\b"):
        with pytest.raises(HfHubHTTPError) as refused:
            api.upload_file(
                path_or_fileobj=b"x", path_in_repo=bad, repo_id=space, repo_type="space"
            )
        assert refused.value.response.status_code == 422
        assert "invalid path" in refused.value.response.headers["X-Error-Message"]
    assert api.list_repo_files(space, repo_type="space") == [".gitattributes", "README.md"]


def test_a_folder_is_deleted_by_its_plain_path(api: HfApi, space: str) -> None:
    adds = [CommitOperationAdd(p, b"x\n") for p in ("one/a", "one/b/c", "two/a", "keep.txt")]
    api.create_commit(space, adds, commit_message="folders", repo_type="space")
    api.delete_folder("one", repo_id=space, repo_type="space")
    # is_folder="auto" sends "two" as a file: the Hub deletes the folder of that name.
    api.create_commit(
        space, [CommitOperationDelete("two")], commit_message="rm two", repo_type="space"
    )
    files = set(api.list_repo_files(space, repo_type="space"))
    assert files == {".gitattributes", "README.md", "keep.txt"}


def test_validate_yaml_takes_what_a_push_takes(
    platform: Platform, api: HfApi, token: str, space: str
) -> None:
    # Settings the Space can't run with are accepted, then shown as its CONFIG_ERROR.
    api.upload_file(
        path_or_fileobj=b"---\nsdk: gradio\napp_port: seventy\n---\n",
        path_in_repo="README.md",
        repo_id=space,
        repo_type="space",
    )
    runtime = platform.wait_for_stage(*space.split("/"), token, timeout=60, stages={"CONFIG_ERROR"})
    assert "app_port" in runtime["errorMessage"]
    api.upload_file(
        path_or_fileobj=b"# No front matter\n",
        path_in_repo="README.md",
        repo_id=space,
        repo_type="space",
    )
    # YAML that is not settings is still refused before the commit.
    with pytest.raises(ValueError, match="Invalid metadata in README.md"):
        api.upload_file(
            path_or_fileobj=b"---\nsdk: gradio\ncolorFrom: red: orange\n---\n",
            path_in_repo="README.md",
            repo_id=space,
            repo_type="space",
        )
