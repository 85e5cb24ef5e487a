"""The limiters and the body-size middleware, alone (tests/test_limits.py drives them through
a real Spaceport)."""

from __future__ import annotations

import asyncio
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.api.errors import HubError
from orchestrator.core.limits import BodySizeLimit, KeyedLimiter, TooMany, body_limit
from orchestrator.core.settings import Settings
from orchestrator.repos import commit as repo_commit
from orchestrator.repos import store as repos
from orchestrator.repos.commit import AddFile, CommitError, Delete
from sandbox import log_stream


def test_keyed_limiter_counts_per_key_all_or_nothing() -> None:
    limiter = KeyedLimiter()
    first = limiter.acquire({"space:a": 2, "client:x": 1})
    with pytest.raises(TooMany) as refused:
        limiter.acquire({"space:a": 2, "client:x": 1})
    assert refused.value.key == "client:x"
    # The refused call took nothing: space:a still has one free slot.
    assert limiter.held("space:a") == 1
    second = limiter.acquire({"space:a": 2, "client:y": 1})
    with pytest.raises(TooMany):
        limiter.acquire({"space:a": 2, "client:z": 1})
    first()
    first()  # releasing twice frees one slot only
    assert limiter.held("space:a") == 1
    second()
    assert limiter.held("space:a") == 0 and limiter.held("client:x") == 0


def test_body_limits_by_route() -> None:
    settings = Settings(max_request_bytes=10, max_commit_bytes=20, max_validate_yaml_bytes=5)
    assert body_limit("POST", "/api/spaces/a/b/commit/main", settings) == (20, "max_commit_bytes")
    assert body_limit("POST", "/api/validate-yaml", settings)[0] == 5
    assert body_limit("POST", "/api/repos/create", settings) == (10, "max_request_bytes")
    push = body_limit("POST", "/spaces/a/b.git/git-receive-pack", settings)
    assert push[1] == "max_push_bytes"
    oid = "a" * 64
    assert body_limit("PUT", f"/spaces/a/b.git/info/lfs/objects/{oid}", settings)[1] == (
        "max_lfs_object_bytes"
    )


def _run_middleware(
    monkeypatch: pytest.MonkeyPatch, chunks: list[bytes], headers: list[tuple[bytes, bytes]]
) -> tuple[list[dict], list[int]]:
    monkeypatch.setenv("SPACEPORT_MAX_REQUEST_BYTES", "10")
    from orchestrator.core.settings import get_settings

    get_settings.cache_clear()
    read: list[int] = []
    sent: list[dict] = []

    async def app(scope: dict, receive, send) -> None:  # type: ignore[no-untyped-def]
        while True:
            message = await receive()
            read.append(len(message.get("body", b"")))
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    messages = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
        for i, c in enumerate(chunks)
    ]

    async def receive() -> dict:
        return messages.pop(0)

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/api/repos/create", "headers": headers}
    try:
        asyncio.run(BodySizeLimit(app)(scope, receive, send))  # type: ignore[arg-type]
    except HubError as exc:
        sent.append({"type": "error", "status": exc.status_code})
    finally:
        get_settings.cache_clear()
    return sent, read


def test_declared_length_over_the_limit_is_refused_unread(monkeypatch: pytest.MonkeyPatch) -> None:
    sent, read = _run_middleware(monkeypatch, [b"x" * 11], [(b"content-length", b"11")])
    assert sent[0]["status"] == 413 and read == []


def test_chunked_body_is_stopped_when_it_passes_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    sent, read = _run_middleware(monkeypatch, [b"x" * 6, b"x" * 6, b"x" * 6], [])
    assert sent == [{"type": "error", "status": 413}]
    assert read == [6]  # the app never saw the chunk that passed the limit


def test_body_within_the_limit_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    sent, read = _run_middleware(monkeypatch, [b"x" * 5, b"x" * 5], [])
    assert sent[0]["status"] == 200 and read == [5, 5]


def test_follower_thread_ends_and_frees_its_slot_when_the_client_leaves() -> None:
    limiter = KeyedLimiter()
    release = limiter.acquire({"space:a": 1})
    gate = threading.Event()
    closed = threading.Event()

    class Quiet:
        """A log that prints one line, then waits (like a quiet app) until closed."""

        def __init__(self) -> None:
            self.sent = False

        def __iter__(self) -> Iterator[str]:
            return self

        def __next__(self) -> str:
            if not self.sent:
                self.sent = True
                return "hello"
            gate.wait(30)
            raise StopIteration

        def close(self) -> None:
            closed.set()
            gate.set()

    async def client() -> list[str]:
        stream = log_stream.in_thread(Quiet)
        first = await stream.__anext__()
        await stream.aclose()  # what a disconnect does to the response's iterator
        release()  # what the response does once its stream is closed
        return [first]

    assert asyncio.run(client()) == ["hello"]
    assert closed.is_set()  # the blocking read was ended, and the thread with it
    assert limiter.held("space:a") == 0


def _commit(repo: Path, parent: str | None, files: dict[str, str], deletes=()) -> str:  # type: ignore[no-untyped-def]
    scratch = Path(tempfile.mkdtemp())
    ops: list = []
    for index, (path, text) in enumerate(files.items()):
        source = scratch / str(index)
        source.write_text(text)
        ops.append(AddFile(path, source))
    ops += [Delete(path, folder) for path, folder in deletes]
    return repo_commit.create_commit(repo, "refs/heads/main", parent, ops, "m\n", ("a", "a@x"))


def test_commit_checks_folders_and_files_as_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SPACEPORT_HOME", str(tmp_path))
    from orchestrator.core.settings import get_settings

    get_settings.cache_clear()
    try:
        repo = repos.init_bare("u", "s")
        head = _commit(repo, None, {"a/b/c.txt": "1", "a/d.txt": "2", "e.txt": "3"})
        with pytest.raises(CommitError, match="is a file, not a folder"):
            _commit(repo, head, {"e.txt/x": "4"})
        with pytest.raises(CommitError, match="is a folder"):
            _commit(repo, head, {"a/b": "4"})
        with pytest.raises(CommitError, match="doesn't exist"):
            _commit(repo, head, {}, [("a/zzz", True)])
        # Deleting folder a/b empties it: a file may then take its name, in the same commit.
        scratch = Path(tempfile.mkdtemp()) / "f"
        scratch.write_text("now a file")
        ops = [Delete("a/b", True), AddFile("a/b", scratch)]
        head = repo_commit.create_commit(repo, "refs/heads/main", head, ops, "m\n", ("a", "a@x"))
        listed = repos.git(repo, "ls-tree", "-r", "--name-only", head).decode().split()
        assert listed == ["a/b", "a/d.txt", "e.txt"]
    finally:
        get_settings.cache_clear()
