"""A Space's files through the real clients: huggingface_hub (uploads, commits, listings,
downloads) and git with git-lfs, against a real Spaceport. Runs once per stack.

Spaces are created with `git push` only. Pushing a throwaway branch makes a Space whose
main is empty (a Space created with the API starts with the Hub's first commit instead:
tests/test_hub_repo_create.py).
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest
from huggingface_hub import (
    CommitOperationAdd,
    CommitOperationCopy,
    HfApi,
    constants,
    hf_hub_download,
    snapshot_download,
)
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.hf_api import RepoFile, RepoFolder
from huggingface_hub.utils._runtime import is_xet_available

from tests import services
from tests.platform import SAMPLES, Platform, push, sample_checkout

# The database and broker are exercised on both stacks by the push, auth and run tests;
# files and LFS add nothing stack-specific, so they run once, keeping CI well under half an hour.
pytestmark = pytest.mark.parametrize("platform", ["sqlite-embedded"], indirect=True)

BIG = 12 * 1024 * 1024  # over the 10 MB LFS threshold


@pytest.fixture(scope="module")
def tokens(platform: Platform) -> dict[str, str]:
    return {"alice": platform.token("alice"), "bob": platform.token("bob")}


@pytest.fixture
def no_xet(monkeypatch: pytest.MonkeyPatch) -> None:
    """HF_HUB_DISABLE_XET=1, as a user sets it: LFS-mode files then use the LFS batch API
    (huggingface_hub reads the constant at call time)."""
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)


@pytest.fixture(scope="module")
def git_lfs() -> None:
    services.require("git-lfs", shutil.which("git-lfs") is not None, "apt-get install git-lfs")


def hub(platform: Platform, token: str | None) -> HfApi:
    return HfApi(endpoint=platform.url, token=token or False)


def empty_space(platform: Platform, token: str, name: str, workdir: Path) -> None:
    """A Space with an empty main: created by pushing the hello sample to branch `setup`."""
    push(sample_checkout("hello", workdir), platform.git_url("alice", name, token), "main:setup")


def run_git(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """git with git-lfs smudging on (whatever the caller's environment says)."""
    env = {k: v for k, v in os.environ.items() if k != "GIT_LFS_SKIP_SMUDGE"}
    env |= {
        "GIT_AUTHOR_NAME": "Tester",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "Tester",
        "GIT_COMMITTER_EMAIL": "t@example.com",
        "GIT_TERMINAL_PROMPT": "0",
    }
    result = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True)
    assert result.returncode == 0, f"git {' '.join(args)} failed:\n{result.stderr}"
    return result


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_upload_folder_to_an_empty_space_builds_it(
    platform: Platform, tokens: dict[str, str], workdir: Path
) -> None:
    empty_space(platform, tokens["alice"], "hub-hello", workdir)
    api = hub(platform, tokens["alice"])
    assert api.list_repo_files("alice/hub-hello", repo_type="space", revision="setup")

    # The client as installed (hf_xet included): small files are regular, no Xet needed.
    info = api.upload_folder(
        folder_path=SAMPLES / "hello", repo_id="alice/hub-hello", repo_type="space"
    )

    assert re.fullmatch(r"[0-9a-f]{40}", info.oid)
    assert info.commit_url == f"{platform.url}/spaces/alice/hub-hello/commit/{info.oid}"
    assert info.repo_url.repo_id == "alice/hub-hello"
    runtime = platform.wait_for_stage("alice", "hub-hello", tokens["alice"])
    assert runtime["stage"] == "RUNNING", runtime
    assert runtime["sha"] == info.oid
    assert api.list_repo_files("alice/hub-hello", repo_type="space") == [
        "README.md",
        "app.py",
        "requirements.txt",
    ]
    assert api.space_info("alice/hub-hello").sha == info.oid
    # The commit is the token owner's, on top of nothing (main was empty).
    repo = platform.home / "repos" / "alice" / "hub-hello.git"
    log = subprocess.run(
        ["git", "-C", str(repo), "log", "--format=%an %P|%s", "main"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert log == "alice |Upload folder using huggingface_hub\n"
    # Uploading the same files again changes nothing (the client sees equal oids).
    again = api.upload_folder(
        folder_path=SAMPLES / "hello", repo_id="alice/hub-hello", repo_type="space"
    )
    assert again.oid == info.oid
    assert len(platform.builds("alice", "hub-hello", tokens["alice"])) == 1


def test_large_file_goes_through_lfs_and_comes_back(
    platform: Platform, tokens: dict[str, str], workdir: Path, no_xet: None, git_lfs: None
) -> None:
    alice = tokens["alice"]
    push(sample_checkout("hello", workdir), platform.git_url("alice", "hub-lfs", alice))
    api = hub(platform, alice)
    data = os.urandom(BIG)
    (workdir / "big.bin").write_bytes(data)

    info = api.upload_file(
        path_or_fileobj=str(workdir / "big.bin"),
        path_in_repo="data/big.bin",
        repo_id="alice/hub-lfs",
        repo_type="space",
    )

    oid = sha256(data)
    assert (platform.home / "lfs" / oid[:2] / oid[2:4] / oid).stat().st_size == BIG
    (entry,) = api.get_paths_info("alice/hub-lfs", ["data/big.bin"], repo_type="space")
    assert isinstance(entry, RepoFile) and entry.lfs is not None
    assert (entry.size, entry.lfs.sha256, entry.lfs.size) == (BIG, oid, BIG)
    tree = list(api.list_repo_tree("alice/hub-lfs", repo_type="space", recursive=True))
    assert {f.path for f in tree if isinstance(f, RepoFolder)} == {"data"}
    assert "data/big.bin" in api.list_repo_files("alice/hub-lfs", repo_type="space")
    # The Hub's file metadata: the object's sha256 as etag, its size, the commit.
    head = httpx.head(
        f"{platform.url}/spaces/alice/hub-lfs/resolve/main/data/big.bin",
        headers={"authorization": f"Bearer {alice}"},
    )
    assert head.headers["X-Repo-Commit"] == info.oid
    assert head.headers["X-Linked-Etag"] == f'"{oid}"'
    assert head.headers["X-Linked-Size"] == str(BIG)
    # .gitattributes now tracks it, so git clients get the content too.
    attributes = hf_hub_download(
        "alice/hub-lfs", ".gitattributes", repo_type="space", **client(platform, alice, workdir)
    )
    assert "data/big.bin filter=lfs diff=lfs merge=lfs -text" in Path(attributes).read_text()

    downloaded = hf_hub_download(
        "alice/hub-lfs", "data/big.bin", repo_type="space", **client(platform, alice, workdir)
    )
    assert Path(downloaded).read_bytes() == data
    snapshot = Path(
        snapshot_download("alice/hub-lfs", repo_type="space", **client(platform, alice, workdir))
    )
    assert (snapshot / "data" / "big.bin").read_bytes() == data
    for name in ("README.md", "app.py", "requirements.txt"):
        assert (snapshot / name).read_bytes() == (SAMPLES / "hello" / name).read_bytes()

    # git clone with git-lfs gets the content of a file uploaded through the API.
    run_git(workdir, "clone", "-q", platform.git_url("alice", "hub-lfs", alice), "cloned")
    assert (workdir / "cloned" / "data" / "big.bin").read_bytes() == data

    # The commit deployed; the build context holds the file, and the Space runs.
    runtime = platform.wait_for_stage("alice", "hub-lfs", alice)
    assert (runtime["stage"], runtime["sha"]) == ("RUNNING", info.oid), runtime


def client(platform: Platform, token: str, workdir: Path) -> dict[str, object]:
    return {"endpoint": platform.url, "token": token, "cache_dir": workdir / "hf-cache"}


def test_file_objects_copies_and_branches(
    platform: Platform, tokens: dict[str, str], workdir: Path
) -> None:
    """Without HF_HUB_DISABLE_XET: content given as a file object goes through LFS anyway;
    commits to another branch don't deploy; server-side copies of LFS files."""
    alice = tokens["alice"]
    empty_space(platform, alice, "hub-branch", workdir)
    api = hub(platform, alice)
    data = os.urandom(BIG)

    api.upload_file(
        path_or_fileobj=io.BytesIO(data),
        path_in_repo="weights/model.bin",
        repo_id="alice/hub-branch",
        repo_type="space",
        revision="setup",
    )
    copied = api.create_commit(
        "alice/hub-branch",
        [
            CommitOperationCopy(src_path_in_repo="weights/model.bin", path_in_repo="copy.bin"),
            CommitOperationCopy(src_path_in_repo="app.py", path_in_repo="copy.py"),
        ],
        commit_message="Copy files",
        repo_type="space",
        revision="setup",
    )

    files = {
        f.path: f
        for f in api.list_repo_tree("alice/hub-branch", repo_type="space", revision="setup")
    }
    assert files["copy.bin"].lfs.sha256 == sha256(data)  # type: ignore[union-attr]
    assert files["copy.py"].blob_id == files["app.py"].blob_id  # type: ignore[union-attr]
    assert isinstance(files["weights"], RepoFolder)
    path = hf_hub_download(
        "alice/hub-branch",
        "copy.bin",
        repo_type="space",
        revision=copied.oid,
        **client(platform, alice, workdir),
    )
    assert Path(path).read_bytes() == data
    # Only main deploys: no build for commits to `setup`.
    assert platform.builds("alice", "hub-branch", alice) == []
    assert api.list_repo_files("alice/hub-branch", repo_type="space") == []


@pytest.mark.skipif(not is_xet_available(), reason="hf_xet is not installed")
def test_xet_uploads_are_refused_with_a_reason(
    platform: Platform, tokens: dict[str, str], workdir: Path
) -> None:
    """huggingface_hub >= 1.20 with hf_xet sends LFS-mode files from paths through Xet,
    which Spaceport doesn't have: the upload fails on the xet-write-token request."""
    empty_space(platform, tokens["alice"], "hub-xet", workdir)
    (workdir / "big.bin").write_bytes(os.urandom(BIG))
    with pytest.raises(Exception, match="xet-write-token"):
        hub(platform, tokens["alice"]).upload_file(
            path_or_fileobj=str(workdir / "big.bin"),
            path_in_repo="big.bin",
            repo_id="alice/hub-xet",
            repo_type="space",
            revision="setup",
        )
    assert "big.bin" not in hub(platform, tokens["alice"]).list_repo_files(
        "alice/hub-xet", repo_type="space", revision="setup"
    )


def test_listings(platform: Platform, tokens: dict[str, str], workdir: Path) -> None:
    empty_space(platform, tokens["alice"], "hub-tree", workdir)
    api = hub(platform, tokens["alice"])
    api.create_commit(
        "alice/hub-tree",
        [
            CommitOperationAdd("src/pkg/a b.py", b"a = 1\n"),
            CommitOperationAdd("src/main.py", b"print('main')\n"),
        ],
        commit_message="Add sources",
        repo_type="space",
        revision="setup",
    )

    def paths(**kwargs: object) -> list[str]:
        return sorted(
            f.path
            for f in api.list_repo_tree(
                "alice/hub-tree", repo_type="space", revision="setup", **kwargs
            )
        )

    assert paths(path_in_repo="src") == ["src/main.py", "src/pkg"]
    assert paths(path_in_repo="src", recursive=True) == [
        "src/main.py",
        "src/pkg",
        "src/pkg/a b.py",
    ]
    assert "README.md" in paths()
    (entry,) = api.list_repo_tree(
        "alice/hub-tree", "src/pkg", repo_type="space", revision="setup", expand=True
    )
    assert isinstance(entry, RepoFile) and entry.last_commit is not None
    assert entry.last_commit.title == "Add sources"
    assert entry.size == 6 and entry.lfs is None

    infos = api.get_paths_info(
        "alice/hub-tree",
        ["src", "src/main.py", "missing.txt"],
        repo_type="space",
        revision="setup",
    )
    assert [(type(i).__name__, i.path) for i in infos] == [
        ("RepoFolder", "src"),
        ("RepoFile", "src/main.py"),
    ]
    siblings = api.space_info("alice/hub-tree", revision="setup", files_metadata=True).siblings
    assert {s.rfilename: s.size for s in siblings or []}["src/main.py"] == 14

    api.delete_folder("src/pkg", repo_id="alice/hub-tree", repo_type="space", revision="setup")
    api.delete_file("src/main.py", repo_id="alice/hub-tree", repo_type="space", revision="setup")
    assert "src" not in paths()


def test_errors_map_to_client_exceptions(
    platform: Platform, tokens: dict[str, str], workdir: Path
) -> None:
    alice, bob = tokens["alice"], tokens["bob"]
    empty_space(platform, alice, "hub-errors", workdir)
    api = hub(platform, alice)
    options = client(platform, alice, workdir)

    with pytest.raises(EntryNotFoundError):
        hf_hub_download(
            "alice/hub-errors", "nope.txt", repo_type="space", revision="setup", **options
        )
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download("alice/hub-errors", "app.py", repo_type="space", revision="nope", **options)
    with pytest.raises(EntryNotFoundError, match="doesn't exist"):
        api.delete_file("nope.txt", "alice/hub-errors", repo_type="space", revision="setup")
    # Front matter that is not YAML is refused (settings a push would take are not).
    with pytest.raises(ValueError, match="Invalid metadata in README.md"):
        api.upload_file(
            path_or_fileobj=b"---\nsdk: gradio\ncolorFrom: red: orange\n---\n",
            path_in_repo="README.md",
            repo_id="alice/hub-errors",
            repo_type="space",
            revision="setup",
        )
    head = api.space_info("alice/hub-errors", revision="setup").sha
    with pytest.raises(HfHubHTTPError) as stale:
        api.upload_file(
            path_or_fileobj=b"x",
            path_in_repo="x.txt",
            repo_id="alice/hub-errors",
            repo_type="space",
            revision="setup",
            parent_commit="0" * 40,
        )
    assert stale.value.response.status_code == 412
    with pytest.raises(HfHubHTTPError) as forbidden:
        hub(platform, bob).upload_file(
            path_or_fileobj=b"x",
            path_in_repo="x.txt",
            repo_id="alice/hub-errors",
            repo_type="space",
            revision="setup",
        )
    assert forbidden.value.response.status_code == 403
    assert api.space_info("alice/hub-errors", revision="setup").sha == head

    api.update_repo_settings("alice/hub-errors", private=True, repo_type="space")
    for outsider in (bob, None):
        with pytest.raises(RepositoryNotFoundError):
            hf_hub_download(
                "alice/hub-errors",
                "app.py",
                repo_type="space",
                revision="setup",
                endpoint=platform.url,
                token=outsider or False,
                cache_dir=workdir / "outsider",
            )
        with pytest.raises(RepositoryNotFoundError):
            hub(platform, outsider).list_repo_files(
                "alice/hub-errors", repo_type="space", revision="setup"
            )
    assert hf_hub_download(
        "alice/hub-errors", "app.py", repo_type="space", revision="setup", **options
    )


def test_git_lfs_push_and_clone(
    platform: Platform, tokens: dict[str, str], workdir: Path, git_lfs: None
) -> None:
    alice = tokens["alice"]
    repo = workdir / "lfs-repo"
    shutil.copytree(SAMPLES / "hello", repo)
    run_git(repo, "init", "-q", "--initial-branch=main")
    run_git(repo, "lfs", "install", "--local")
    run_git(repo, "lfs", "track", "*.bin")
    data = os.urandom(BIG)
    (repo / "model.bin").write_bytes(data)
    run_git(repo, "add", "-A")
    run_git(repo, "commit", "-q", "-m", "hello with weights")
    assert run_git(repo, "lfs", "ls-files").stdout.split()[-1] == "model.bin"

    pushed = run_git(repo, "push", platform.git_url("alice", "hub-git-lfs", alice), "main")

    oid = sha256(data)
    assert (platform.home / "lfs" / oid[:2] / oid[2:4] / oid).read_bytes() == data
    # The build's context is made with git archive; git-lfs must stay out of it.
    assert "remote: -----> Build succeeded" in pushed.stderr, pushed.stderr[-3000:]
    run_git(workdir, "clone", "-q", platform.git_url("alice", "hub-git-lfs", alice), "back")
    assert (workdir / "back" / "model.bin").read_bytes() == data
    # Public Space: anonymous clones get the objects too.
    run_git(workdir, "clone", "-q", platform.git_url("alice", "hub-git-lfs"), "anonymous")
    assert (workdir / "anonymous" / "model.bin").read_bytes() == data
    # And huggingface_hub downloads what git-lfs uploaded.
    path = hf_hub_download(
        "alice/hub-git-lfs", "model.bin", repo_type="space", **client(platform, alice, workdir)
    )
    assert Path(path).read_bytes() == data
    runtime = platform.wait_for_stage("alice", "hub-git-lfs", alice)
    assert runtime["stage"] == "RUNNING", runtime
