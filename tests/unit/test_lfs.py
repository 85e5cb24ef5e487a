"""The LFS object store, pointer files, per-Space records and build-context smudging."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from sqlmodel import Session

from orchestrator.core import db
from orchestrator.core.models import Space, User
from orchestrator.repos import commit as repo_commit
from orchestrator.repos import lfs
from orchestrator.repos import store as repos


@pytest.fixture
def home(migrated_home: Path) -> Path:
    """A fresh SPACEPORT_HOME with a migrated SQLite database (tests/unit/conftest.py)."""
    return migrated_home


def make_spaces(*names: str) -> list[int]:
    with Session(db.get_engine()) as session:
        user = User(name="alice")
        session.add(user)
        session.commit()
        assert user.id is not None
        ids = []
        for name in names:
            space = Space(owner="alice", name=name, host=f"alice-{name}", owner_id=user.id)
            session.add(space)
            session.commit()
            assert space.id is not None
            ids.append(space.id)
        return ids


def stored(data: bytes) -> str:
    oid = hashlib.sha256(data).hexdigest()
    lfs.write_object(io.BytesIO(data), oid, len(data))
    return oid


# -- pointers -------------------------------------------------------------------------


def test_pointer_round_trip() -> None:
    oid = "a" * 64
    text = lfs.pointer_text(oid, 12345)
    assert text == f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize 12345\n"
    assert lfs.parse_pointer(text.encode()) == (oid, 12345)


@pytest.mark.skipif(shutil.which("git-lfs") is None, reason="git-lfs is not installed")
def test_pointer_text_is_what_git_lfs_writes(tmp_path: Path) -> None:
    # Byte for byte, so a file uploaded through the API and the same file pushed with
    # git-lfs get the same blob id.
    path = tmp_path / "weights.bin"
    path.write_bytes(os.urandom(3000))
    out = subprocess.run(
        ["git", "lfs", "pointer", f"--file={path}"], capture_output=True, check=True
    ).stdout
    oid = hashlib.sha256(path.read_bytes()).hexdigest()
    assert out.decode() == lfs.pointer_text(oid, 3000)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"hello world\n",
        b"version https://example.com/spec/v1\noid sha256:" + b"a" * 64 + b"\nsize 1\n",
        b"version https://git-lfs.github.com/spec/v1\noid sha256:" + b"A" * 64 + b"\nsize 1\n",
        b"version https://git-lfs.github.com/spec/v1\noid sha256:" + b"a" * 63 + b"\nsize 1\n",
        b"version https://git-lfs.github.com/spec/v1\noid md5:" + b"a" * 64 + b"\nsize 1\n",
        b"version https://git-lfs.github.com/spec/v1\noid sha256:" + b"a" * 64 + b"\n",
        b"version https://git-lfs.github.com/spec/v1\noid sha256:" + b"a" * 64 + b"\nsize -1\n",
        b"version https://git-lfs.github.com/spec/v1\noid sha256:"
        + b"a" * 64
        + b"\nsize 1\nsize 2\n",
        b"version https://git-lfs.github.com/spec/v1\n\xff\xfe\n",
        lfs.pointer_text("a" * 64, 1).encode() + b"x" * 1024,
    ],
)
def test_not_pointers(data: bytes) -> None:
    assert lfs.parse_pointer(data) is None


def test_legacy_and_extended_pointers() -> None:
    oid = "b" * 64
    legacy = f"version https://hawser.github.com/spec/v1\noid sha256:{oid}\nsize 7\n"
    assert lfs.parse_pointer(legacy.encode()) == (oid, 7)
    extended = (
        f"version https://git-lfs.github.com/spec/v1\next-0-foo sha256:{'c' * 64}\n"
        f"oid sha256:{oid}\nsize 7"  # no final newline
    )
    assert lfs.parse_pointer(extended.encode()) == (oid, 7)


# -- the store ------------------------------------------------------------------------


def test_store_layout_and_invalid_oids(home: Path) -> None:
    oid = "0123" + "f" * 60
    assert lfs.store_path(oid) == home / "lfs" / "01" / "23" / oid
    for bad in ("../../etc/passwd", "F" * 64, "f" * 63, ""):
        with pytest.raises(ValueError):
            lfs.store_path(bad)
        assert not lfs.has_object(bad)


def test_write_verifies_and_renames(home: Path) -> None:
    data = os.urandom(3 * lfs.CHUNK + 17)
    oid = stored(data)
    assert lfs.has_object(oid)
    assert lfs.has_object(oid, len(data))
    assert not lfs.has_object(oid, len(data) + 1)
    with lfs.open_object(oid) as stream:
        assert stream.read() == data
    # Storing it again (another Space, a retried upload) is fine.
    assert stored(data) == oid
    assert [p.name for p in lfs.store_path(oid).parent.iterdir()] == [oid]


@pytest.mark.parametrize(
    ("body", "size", "message"),
    [
        (b"other bytes!", 12, "sha256"),
        (b"hello", 4, "larger than"),
        (b"hello", 6, "received 5 bytes"),
    ],
)
def test_write_refuses_wrong_content(home: Path, body: bytes, size: int, message: str) -> None:
    oid = hashlib.sha256(b"hello").hexdigest()
    with pytest.raises(lfs.ObjectError, match=message):
        lfs.write_object(io.BytesIO(body), oid, size)
    assert not lfs.has_object(oid)
    # No temporary file is left behind.
    assert list(lfs.store_path(oid).parent.iterdir()) == []


def test_missing_object() -> None:
    with pytest.raises(FileNotFoundError):
        lfs.open_object("e" * 64)


# -- records --------------------------------------------------------------------------


def test_records_are_per_space_and_copied(home: Path) -> None:
    first, second, third = make_spaces("one", "two", "three")
    with Session(db.get_engine()) as session:
        lfs.record(session, first, "a" * 64, 10)
        lfs.record(session, first, "a" * 64, 10)  # twice is harmless
        lfs.record(session, first, "b" * 64, 20)
        lfs.record(session, third, "b" * 64, 20)
        assert lfs.recorded(session, first, ["a" * 64, "b" * 64, "c" * 64]) == {
            "a" * 64: 10,
            "b" * 64: 20,
        }
        assert lfs.recorded(session, second, ["a" * 64]) == {}
        lfs.copy_records(session, first, second)
        lfs.copy_records(session, first, third)  # already has b: no duplicate
        session.commit()
        assert lfs.recorded(session, second, ["a" * 64, "b" * 64]) == {"a" * 64: 10, "b" * 64: 20}
        assert lfs.recorded(session, third, ["a" * 64, "b" * 64]) == {"a" * 64: 10, "b" * 64: 20}


# -- smudging build contexts ----------------------------------------------------------


def git_archive(tmp_path: Path, files: dict[str, bytes]) -> bytes:
    """A build context as builds get it: `git archive` of a commit holding `files`."""
    repo = tmp_path / "repo"
    repo.mkdir()
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@e",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@e",
    }
    for path, data in files.items():
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        (repo / path).write_bytes(data)
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "c"]):
        subprocess.run(["git", "-C", str(repo), *args], env=env, check=True)
    return subprocess.run(
        ["git", "-C", str(repo), "archive", "--format=tar", "HEAD"], capture_output=True, check=True
    ).stdout


def tar_files(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {
            m.name: tar.extractfile(m).read()  # type: ignore[union-attr]
            for m in tar.getmembers()
            if m.isfile()
        }


def test_smudge_tar(home: Path, tmp_path: Path) -> None:
    (space, other) = make_spaces("smudged", "other")
    weights, private, lost = os.urandom(5000), os.urandom(300), os.urandom(10)
    weights_oid, private_oid = stored(weights), stored(private)
    lost_oid = hashlib.sha256(lost).hexdigest()  # recorded, but not in the store
    with Session(db.get_engine()) as session:
        lfs.record(session, space, weights_oid, len(weights))
        lfs.record(session, space, lost_oid, len(lost))
        lfs.record(session, other, private_oid, len(private))
    pointers = {
        "models/weights.bin": lfs.pointer_text(weights_oid, len(weights)).encode(),
        "secret.bin": lfs.pointer_text(private_oid, len(private)).encode(),
        "lost.bin": lfs.pointer_text(lost_oid, len(lost)).encode(),
    }
    source = git_archive(tmp_path, {"app.py": b"print('hi')\n", **pointers})

    smudged = lfs.smudge_tar(space, source)

    files = tar_files(smudged)
    assert files["models/weights.bin"] == weights
    assert files["app.py"] == b"print('hi')\n"
    # Another Space's object (even though stored) and a missing object stay pointers.
    assert files["secret.bin"] == pointers["secret.bin"]
    assert files["lost.bin"] == pointers["lost.bin"]
    # git archive's global header (the commit id) survives, as do directories and modes.
    with (
        tarfile.open(fileobj=io.BytesIO(smudged)) as tar,
        tarfile.open(fileobj=io.BytesIO(source)) as original,
    ):
        assert tar.pax_headers == original.pax_headers
        assert [m.name for m in tar.getmembers()] == [m.name for m in original.getmembers()]
        assert tar.getmember("models").isdir()


def test_smudge_tar_without_pointers_is_a_no_op(home: Path, tmp_path: Path) -> None:
    (space,) = make_spaces("plain")
    source = git_archive(tmp_path, {"app.py": b"x = 1\n", "README.md": b"# hi\n"})
    assert lfs.smudge_tar(space, source) is source


def test_space_repos_never_run_git_lfs(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """git-lfs's filter configured for the whole machine (Debian's package does that) must
    not make `git archive` of a commit with LFS pointers fail."""
    config = tmp_path / "gitconfig"
    config.write_text(
        '[filter "lfs"]\n\tprocess = git-lfs filter-process\n\trequired = true\n'
        "\tsmudge = git-lfs smudge -- %f\n"
    )
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(config))
    repo = repos.init_bare("alice", "lfs-filters")
    pointer = lfs.pointer_text("d" * 64, 2000)
    files = {".gitattributes": "*.bin filter=lfs diff=lfs merge=lfs -text\n", "w.bin": pointer}
    blobs = {
        path: repos.git(repo, "hash-object", "-w", "--stdin", input_bytes=text.encode())
        for path, text in files.items()
    }
    listing = "".join(f"100644 blob {blobs[p].decode().strip()}\t{p}\n" for p in files)
    tree = repos.git(repo, "mktree", input_bytes=listing.encode()).decode().strip()
    commit = repos.git(
        repo, "-c", "user.name=t", "-c", "user.email=t@e", "commit-tree", "-m", "c", tree
    )
    sha = commit.decode().strip()
    # repos.archive switches the filter off itself, whatever the repo's config says...
    assert tar_files(repos.archive(repo, sha))["w.bin"] == pointer.encode()

    # ... and the repo's own config does too, for git commands run elsewhere on it.
    lfs.disable_repo_filters(repo)
    lfs.disable_repo_filters(repo)  # idempotent
    plain = repos.git(repo, "archive", "--format=tar", sha)
    assert tar_files(plain)["w.bin"] == pointer.encode()


# -- commits with LFS files (repo_commit) ---------------------------------------------


def write_commit(repo: Path, parent: str | None, *operations: repo_commit.Operation) -> str:
    return repo_commit.create_commit(
        repo, "refs/heads/main", parent, list(operations), "msg\n", ("alice", "a@example.com")
    )


def test_commit_writes_pointers_and_tracks_them(home: Path, tmp_path: Path) -> None:
    repo = repos.init_bare("alice", "commits")
    readme = tmp_path / "readme"
    readme.write_bytes(b"# hi\n")
    first = write_commit(repo, None, repo_commit.AddFile("README.md", readme))
    oid = "f" * 64

    second = write_commit(
        repo,
        first,
        repo_commit.AddLfs("data/my weights.bin", oid, 123),
        repo_commit.AddLfs("x[1]*.bin", oid, 123),
    )

    pointer = repos.read_file(repo, second, "data/my weights.bin")
    assert pointer == lfs.pointer_text(oid, 123).encode()
    attributes = repos.read_file(repo, second, ".gitattributes")
    assert attributes is not None
    assert attributes.decode().splitlines() == [
        '"data/my weights.bin" filter=lfs diff=lfs merge=lfs -text',
        "x\\[1]\\*.bin filter=lfs diff=lfs merge=lfs -text",
    ]
    # The patterns match exactly those files (as git itself reads them).
    assert repo_commit.lfs_tracked(
        repo, second, ["data/my weights.bin", "x[1]*.bin", "x1a.bin", "README.md"]
    ) == {"data/my weights.bin", "x[1]*.bin"}
    # Already tracked: .gitattributes is left alone.
    third = write_commit(repo, second, repo_commit.AddLfs("x[1]*.bin", "e" * 64, 5))
    assert repos.read_file(repo, third, ".gitattributes") == attributes
    assert repos.resolve(repo, "main") == third


def test_commit_refusals(home: Path, tmp_path: Path) -> None:
    repo = repos.init_bare("alice", "refusals")
    content = tmp_path / "content"
    content.write_bytes(b"x\n")
    first = write_commit(repo, None, repo_commit.AddFile("src/app.py", content))

    cases: list[tuple[str | None, repo_commit.Operation, int, str]] = [
        (first, repo_commit.Delete("nope.py", folder=False), 404, "doesn't exist"),
        (first, repo_commit.Delete("nope", folder=True), 404, "doesn't exist"),
        (first, repo_commit.AddFile("src/app.py/x", content), 400, "is a file"),
        (first, repo_commit.AddFile("src", content), 400, "is a folder"),
        # main is at `first`, not at nothing: someone else got there first.
        (None, repo_commit.AddFile("b.py", content), 409, "moved"),
    ]
    for parent, operation, status, message in cases:
        with pytest.raises(repo_commit.CommitError, match=message) as caught:
            write_commit(repo, parent, operation)
        assert caught.value.status == status
    assert repos.resolve(repo, "main") == first
    for bad in ("../x", "a/../../x", ".git/config", "a//b", "", None):
        with pytest.raises(repo_commit.CommitError):
            repo_commit.clean_path(bad)
