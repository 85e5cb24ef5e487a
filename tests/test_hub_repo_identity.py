"""A Space's identity and info as on the Hub, driven through the unmodified huggingface_hub
against a real Spaceport: `siblings` and `files_metadata`, `expand=`, the exists helpers
(ids without a namespace, missing files and revisions), old ids after move_repo, ids
compared regardless of case, X-Request-Id. No Space here has an app file: nothing builds.

Identity lookups are one query on either database (the migration and the registry are
unit-tested on both in tests/unit/test_repo_names.py), so this runs once.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from huggingface_hub import HfApi, constants, hf_hub_download
from huggingface_hub.errors import (
    BadRequestError,
    HfHubHTTPError,
    RepositoryNotFoundError,
)

from tests.platform import Platform, git

pytestmark = pytest.mark.parametrize("platform", ["sqlite-embedded"], indirect=True)

GITATTRIBUTES = b"*.bin filter=lfs diff=lfs merge=lfs -text\n"
WEIGHTS = b"\x00\x01weights" * 100


@pytest.fixture(scope="module")
def tokens(platform: Platform) -> dict[str, str]:
    return {"alice": platform.token("ida-alice"), "bob": platform.token("ida-bob")}


@pytest.fixture
def no_xet(monkeypatch: pytest.MonkeyPatch) -> None:
    """HF_HUB_DISABLE_XET=1, as a user sets it: the LFS file goes through the batch API."""
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)


@pytest.fixture
def made(platform: Platform, tokens: dict[str, str]) -> Iterator[list[str]]:
    """Ids of the Spaces a test creates (as their owner ida-alice): deleted after it."""
    created: list[str] = []
    yield created
    for repo_id in created:
        platform.delete_space(*repo_id.split("/"), tokens["alice"])


def hub(platform: Platform, token: str | None) -> HfApi:
    return HfApi(endpoint=platform.url, token=token or False)


def new_space(api: HfApi, made: list[str], repo_id: str, private: bool = False) -> None:
    api.create_repo(repo_id, repo_type="space", space_sdk="gradio", private=private)
    made.append(repo_id)


def test_siblings_with_and_without_files_metadata(
    platform: Platform, tokens: dict[str, str], made: list[str], no_xet: None
) -> None:
    api = hub(platform, tokens["alice"])
    repo_id = "ida-alice/files"
    new_space(api, made, repo_id)
    for path, data in ((".gitattributes", GITATTRIBUTES), ("notes.txt", b"hello\n")):
        api.upload_file(path_or_fileobj=data, path_in_repo=path, repo_id=repo_id, repo_type="space")
    commit = api.upload_file(
        path_or_fileobj=WEIGHTS, path_in_repo="w/weights.bin", repo_id=repo_id, repo_type="space"
    )

    info = api.space_info(repo_id)
    assert info.sha == commit.oid
    names = {s.rfilename for s in info.siblings or []}
    assert {".gitattributes", "notes.txt", "w/weights.bin"} <= names
    assert all(s.size is None and s.lfs is None for s in info.siblings or [])

    for detailed in (
        api.space_info(repo_id, files_metadata=True),
        api.repo_info(repo_id, repo_type="space", files_metadata=True),
        api.space_info(repo_id, revision="main", files_metadata=True),
    ):
        files = {s.rfilename: s for s in detailed.siblings or []}
        notes, weights = files["notes.txt"], files["w/weights.bin"]
        assert notes.size == 6 and notes.lfs is None
        assert notes.blob_id == hashlib.sha1(b"blob 6\0hello\n").hexdigest()
        assert weights.size == len(WEIGHTS) and weights.lfs is not None
        assert weights.lfs.sha256 == hashlib.sha256(WEIGHTS).hexdigest()
        assert weights.lfs.size == len(WEIGHTS) and 100 < weights.lfs.pointer_size < 200


def test_expand_returns_only_what_it_names(
    platform: Platform, tokens: dict[str, str], made: list[str]
) -> None:
    api = hub(platform, tokens["alice"])
    repo_id = "ida-alice/expand"
    new_space(api, made, repo_id)
    api.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=repo_id, repo_type="space")

    info = api.space_info(repo_id, expand=["sha", "likes", "usedStorage"])
    assert info.id == repo_id and re.fullmatch(r"[0-9a-f]{40}", info.sha or "")
    assert info.likes == 0 and (info.used_storage or 0) > 0
    assert info.host is None and info.runtime is None and info.siblings is None
    assert info.author is None and info.private is None

    listed = api.space_info(repo_id, expand=["siblings", "sdk", "runtime"])
    assert "x.txt" in {s.rfilename for s in listed.siblings or []}
    assert listed.sdk == "gradio" and listed.runtime is not None and listed.sha is None
    at_main = api.space_info(repo_id, revision="main", expand=["sha"])
    assert at_main.sha == info.sha and at_main.siblings is None

    spaces = list(api.list_spaces(author="ida-alice", expand=["sdk", "private"]))
    mine = next(s for s in spaces if s.id == repo_id)
    assert mine.sdk == "gradio" and mine.private is False and mine.runtime is None
    with_files = next(
        s for s in api.list_spaces(author="IDA-ALICE", expand=["siblings"]) if s.id == repo_id
    )
    assert "x.txt" in {s.rfilename for s in with_files.siblings or []}

    for call in (
        lambda: api.space_info(repo_id, expand=["sha", "downloads"]),  # type: ignore[list-item]
        lambda: api.space_info(repo_id, revision="main", expand=["nope"]),  # type: ignore[list-item]
        lambda: list(api.list_spaces(expand=["nope"])),  # type: ignore[list-item]
    ):
        with pytest.raises(BadRequestError) as refused:
            call()
        assert refused.value.response.status_code == 400
        assert "expand must be one of author, cardData" in str(refused.value)


def test_exists_helpers_answer_false_for_what_is_not_there(
    platform: Platform, tokens: dict[str, str], made: list[str]
) -> None:
    api = hub(platform, tokens["alice"])
    repo_id = "ida-alice/exists"
    new_space(api, made, repo_id)
    api.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=repo_id, repo_type="space")

    assert api.repo_exists(repo_id, repo_type="space")
    assert not api.repo_exists("exists", repo_type="space")  # no namespace
    assert not api.repo_exists("ida-alice/nothing", repo_type="space")
    assert not api.repo_exists("ida-alice/exists")  # a model: Spaceport hosts Spaces only
    assert api.file_exists(repo_id, "x.txt", repo_type="space")
    assert not api.file_exists(repo_id, "missing.txt", repo_type="space")
    assert not api.file_exists(repo_id, "x.txt", repo_type="space", revision="nope")
    assert not api.file_exists("exists", "x.txt", repo_type="space")
    assert not api.file_exists("ida-alice/nothing", "x.txt", repo_type="space")
    assert not api.file_exists(repo_id, "x.txt")  # the model URL form
    assert api.revision_exists(repo_id, "main", repo_type="space")
    assert not api.revision_exists(repo_id, "nope", repo_type="space")
    assert not api.revision_exists("exists", "main", repo_type="space")
    with pytest.raises(RepositoryNotFoundError):
        api.space_info("exists")

    # HEAD on every form of resolve URL: the Hub's 404 and error code, never a 405.
    for path, code in (
        (
            "/spaces/exists/resolve/main/x.txt",
            "RepoNotFound",
        ),
        ("/spaces/ida-alice/exists/resolve/nope/x.txt", "RevisionNotFound"),
        (
            "/spaces/ida-alice/exists/resolve/main/missing.txt",
            "EntryNotFound",
        ),
    ):
        answer = httpx.head(platform.url + path, timeout=30)
        assert (answer.status_code, answer.headers.get("x-error-code")) == (404, code), path


def test_an_old_id_redirects_after_a_move_until_another_space_takes_it(
    platform: Platform, tokens: dict[str, str], made: list[str], workdir: Path
) -> None:
    alice, bob = hub(platform, tokens["alice"]), hub(platform, tokens["bob"])
    old, new = "ida-alice/before", "ida-alice/after"
    new_space(alice, made, old, private=True)
    alice.upload_file(
        path_or_fileobj=b"moved\n", path_in_repo="x.txt", repo_id=old, repo_type="space"
    )
    alice.move_repo(old, new, repo_type="space")
    made[made.index(old)] = new

    assert alice.space_info(old).id == new
    assert alice.space_info(old, revision="main").id == new
    assert alice.file_exists(old, "x.txt", repo_type="space")
    path = hf_hub_download(
        old,
        "x.txt",
        repo_type="space",
        cache_dir=workdir / "cache",
        endpoint=platform.url,
        token=tokens["alice"],
    )
    assert Path(path).read_bytes() == b"moved\n"
    alice.upload_file(path_or_fileobj=b"2", path_in_repo="y.txt", repo_id=old, repo_type="space")
    assert "y.txt" in alice.list_repo_files(new, repo_type="space")
    answer = httpx.get(
        f"{platform.url}/api/spaces/{old}/runtime",
        headers={"authorization": f"Bearer {tokens['alice']}"},
        timeout=30,
    )
    assert answer.status_code == 307
    assert answer.headers["location"] == f"/api/spaces/{new}/runtime"
    # Private: for anyone who can't see it, the old id is as missing as any other.
    with pytest.raises(RepositoryNotFoundError):
        bob.space_info(old)

    clone = workdir / "clone"
    url = platform.git_url(*old.split("/"), tokens["alice"])
    result = git(workdir, "clone", "-q", url, str(clone), check=False)
    assert result.returncode == 0, result.stderr
    assert (clone / "x.txt").read_bytes() == b"moved\n"
    (clone / "pushed.txt").write_text("by git\n")
    git(clone, "add", "pushed.txt")
    git(clone, "commit", "-q", "-m", "push to the old id")
    result = git(clone, "push", "-q", "origin", "main", check=False)  # origin: the old id
    assert result.returncode == 0, result.stderr
    assert "pushed.txt" in alice.list_repo_files(new, repo_type="space")

    new_space(alice, made, old)  # the old id is a Space's own name again
    assert alice.space_info(old).id == old
    assert "x.txt" not in alice.list_repo_files(old, repo_type="space")


def test_ids_are_compared_regardless_of_case(
    platform: Platform, tokens: dict[str, str], made: list[str], workdir: Path
) -> None:
    api = hub(platform, tokens["alice"])
    repo_id = "ida-alice/Case-Demo"
    new_space(api, made, repo_id)
    api.upload_file(
        path_or_fileobj=b"c", path_in_repo="c.txt", repo_id="IDA-ALICE/case-demo", repo_type="space"
    )
    info = api.space_info("Ida-Alice/CASE-DEMO")
    assert info.id == repo_id and "c.txt" in {s.rfilename for s in info.siblings or []}
    with pytest.raises(HfHubHTTPError) as taken:
        api.create_repo("ida-alice/case-demo", repo_type="space", space_sdk="gradio")
    assert taken.value.response.status_code == 409
    clone = workdir / "case"
    url = platform.git_url("IDA-Alice", "case-DEMO", tokens["alice"])
    result = git(workdir, "clone", "-q", url, str(clone), check=False)
    assert result.returncode == 0, result.stderr
    assert (clone / "c.txt").read_bytes() == b"c"


def test_every_answer_has_a_request_id(platform: Platform, tokens: dict[str, str]) -> None:
    api = hub(platform, tokens["alice"])
    with pytest.raises(RepositoryNotFoundError) as missing:
        api.space_info("ida-alice/no-such-space")
    assert re.fullmatch(r"[0-9a-f]{32}", missing.value.request_id or "")
    assert f"Request ID: {missing.value.request_id}" in str(missing.value)

    sent = httpx.get(
        f"{platform.url}/api/spaces/ida-alice/no-such-space",
        headers={"x-request-id": "my-trace-42"},
        timeout=30,
    )
    assert sent.headers["x-request-id"] == "my-trace-42"
    odd = httpx.get(f"{platform.url}/api/health", headers={"x-request-id": "a b\tc"}, timeout=30)
    assert re.fullmatch(r"[0-9a-f]{32}", odd.headers["x-request-id"])
    refs = httpx.get(
        f"{platform.url}/spaces/ida-alice/no-such-space/info/refs?service=git-upload-pack",
        timeout=30,
    )
    assert refs.status_code == 401 and refs.headers["x-request-id"]
    batch = httpx.post(
        f"{platform.url}/spaces/ida-alice/no-such-space.git/info/lfs/objects/batch",
        json={"operation": "download", "objects": []},
        timeout=30,
    )
    assert batch.headers["x-request-id"]
    log = (platform.home / "logs" / "up.log").read_text(errors="replace")
    assert re.search(
        r'"GET /api/spaces/ida-alice/no-such-space HTTP/1.1" 404 .*request_id=my-trace-42', log
    )
