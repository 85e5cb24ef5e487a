"""The event log through the API, and followed streams, against the real API app served by
uvicorn on 127.0.0.1 (no Docker: run logs come from an in-memory backend), on SQLite and
PostgreSQL: pages with a cursor, kind filters, who may read, the live SSE stream (replay,
Last-Event-ID, events as they are committed, heartbeats), and a follower that leaves
freeing its slot, for event, build-log and run-log streams.
"""

from __future__ import annotations

import json
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import sqlalchemy
import uvicorn
from sqlmodel import Session

from orchestrator.api import followers, logs
from orchestrator.core import auth, changes, db, events
from orchestrator.core.events import EventKind
from orchestrator.core.models import Build, BuildLogLine, BuildStatus, Space, TokenRole
from orchestrator.core.settings import get_settings
from orchestrator.spaces import registry as spaces
from sandbox.backend import Instance, InstanceState
from sandbox.log_stream import split_timestamp
from sandbox.memory_backend import MemoryBackend

HEARTBEAT = 0.2


class QuietLog:
    """A followed run log: its lines, then silence until closed (like a quiet app)."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = list(lines)
        self.closed = threading.Event()

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        if self.lines:
            return self.lines.pop(0)
        self.closed.wait(30)
        raise StopIteration

    def close(self) -> None:
        self.closed.set()


class FollowingBackend(MemoryBackend):
    def __init__(self) -> None:
        super().__init__()
        self.followed: list[QuietLog] = []

    def logs(self, instance_id: str, tail: int | None = None, follow: bool = False, timestamps: bool = False):  # type: ignore[no-untyped-def]  # noqa: E501
        if not follow:
            return super().logs(instance_id, tail, timestamps=timestamps)
        self.followed.append(QuietLog(self.log_lines.get(instance_id, [])))
        return self.followed[-1]


@dataclass
class Api:
    url: str
    alice: str  # write token of alice, who owns public "demo" and private "hidden"
    bob: str
    admin: str
    demo: Space
    hidden: Space
    backend: FollowingBackend

    def get(self, path: str, token: str | None = None, **kwargs: object) -> httpx.Response:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        return httpx.get(self.url + path, headers=headers, timeout=10, **kwargs)  # type: ignore[arg-type]


def _fresh_database(request: pytest.FixtureRequest) -> str:
    """An empty database of its own on the module's server."""
    server = sqlalchemy.make_url(request.getfixturevalue("postgres_url"))
    name = f"api_{uuid.uuid4().hex[:12]}"
    engine = sqlalchemy.create_engine(server, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.exec_driver_sql(f"CREATE DATABASE {name}")
    engine.dispose()
    return server.set(database=name).render_as_string(hide_password=False)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(params=["sqlite", "postgresql"])
def api(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Api]:
    for key in list(os.environ):
        if key.startswith("SPACEPORT_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("SPACEPORT_HOME", str(tmp_path))
    monkeypatch.setenv("SPACEPORT_CHANGE_POLL_SECONDS", "0.02")
    monkeypatch.setenv("SPACEPORT_LOG_HEARTBEAT_SECONDS", str(HEARTBEAT))
    if request.param == "postgresql":
        monkeypatch.setenv("SPACEPORT_DATABASE_URL", _fresh_database(request))
    get_settings.cache_clear()
    db.get_engine.cache_clear()
    changes.reset_feed()
    backend = FollowingBackend()
    monkeypatch.setattr(logs, "backend", lambda: backend)
    from orchestrator.app import create_api

    app = create_api()
    with Session(db.get_engine(), expire_on_commit=False) as session:
        alice = auth.get_or_create_user(session, "alice")
        bob = auth.get_or_create_user(session, "bob")
        root = auth.get_or_create_user(session, "root")
        tokens = [
            auth.create_token(session, alice),
            auth.create_token(session, bob),
            auth.create_token(session, root, TokenRole.ADMIN),
        ]
        demo = spaces.create_space(session, alice, "demo")
        hidden = spaces.create_space(session, alice, "hidden", visibility="private")  # type: ignore[arg-type]
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, "the server to start")
    try:
        yield Api(f"http://127.0.0.1:{port}", *tokens, demo, hidden, backend)
    finally:
        for log in backend.followed:
            log.close()
        server.should_exit = True
        thread.join(10)
        db.get_engine().dispose()
        get_settings.cache_clear()
        db.get_engine.cache_clear()
        changes.reset_feed()


def wait_for(condition: Callable[[], object], what: str, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def record(space: Space, kind: EventKind, **data: object) -> int:
    with Session(db.get_engine(), expire_on_commit=False) as session:
        entry = events.record(session, kind, "alice", space, **data)
        session.commit()
        assert entry.id is not None
        return entry.id


def test_a_page_of_events_pages_on_with_its_cursor_and_filters_by_kind(api: Api) -> None:
    record(api.demo, EventKind.PAUSED)
    record(api.demo, EventKind.SLEEP_TIME_CHANGED, **{"from": None, "to": 600})
    record(api.hidden, EventKind.PAUSED)  # another Space's: never in demo's pages
    first = api.get("/api/spaces/alice/demo/events?limit=2").json()
    assert [e["kind"] for e in first["events"]] == ["space.created", "paused"]
    created = first["events"][0]
    assert created["space"] == "alice/demo" and created["spaceId"] == api.demo.uid
    assert created["at"].endswith("Z") and created["actor"] == "alice"
    rest = api.get(f"/api/spaces/alice/demo/events?after={first['cursor']}").json()
    assert [e["kind"] for e in rest["events"]] == ["sleep_time.changed"]
    assert rest["events"][0]["data"] == {"to": 600}
    end = api.get(f"/api/spaces/alice/demo/events?after={rest['cursor']}").json()
    assert end == {"events": [], "cursor": rest["cursor"]}
    paused = api.get("/api/spaces/alice/demo/events?kind=paused,space.created").json()
    assert [e["kind"] for e in paused["events"]] == ["space.created", "paused"]
    unknown = api.get("/api/spaces/alice/demo/events?kind=nope")
    assert unknown.status_code == 400 and "paused" in unknown.json()["error"]


def test_events_are_read_by_whoever_may_see_the_space(api: Api) -> None:
    assert api.get("/api/spaces/alice/hidden/events", api.alice).status_code == 200
    refusals = [
        api.get(f"/api/spaces/alice/{name}/events{tail}", token)
        for name in ("hidden", "missing")
        for tail in ("", "/stream")
        for token in (api.bob, None)
    ]
    assert {r.status_code for r in refusals} == {404}
    assert {r.json()["error"].rsplit("/", 1)[0] for r in refusals} == {
        "Repository not found: alice"
    }


def test_the_installation_wide_log_is_for_admins(api: Api) -> None:
    record(api.hidden, EventKind.PAUSED)
    assert api.get("/api/events").status_code == 401
    refused = api.get("/api/events", api.alice)
    assert refused.status_code == 403 and "admin" in refused.json()["error"]
    page = api.get("/api/events", api.admin).json()
    assert {e["space"] for e in page["events"]} == {"alice/demo", "alice/hidden"}


def _sse(response: httpx.Response) -> Iterator[tuple[str, str]]:
    """(field, value) of each line, ("", "") at each frame's end."""
    for line in response.iter_lines():
        if not line:
            yield "", ""
            continue
        field, _, value = line.partition(":")
        yield field, value.strip()


def _next_event(lines: Iterator[tuple[str, str]]) -> dict[str, object]:
    frame: dict[str, str] = {}
    for field, value in lines:
        if field == "" and value == "" and "data" in frame:
            return {"id": int(frame["id"]), "event": frame["event"]} | json.loads(frame["data"])
        if field:
            frame[field] = value
    raise AssertionError("the stream ended")


def test_the_stream_replays_then_follows_what_is_committed(api: Api) -> None:
    url = f"{api.url}/api/spaces/alice/demo/events/stream"
    with httpx.stream("GET", url, params={"after": 0}, timeout=10) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = _sse(response)
        replayed = _next_event(lines)
        assert replayed["event"] == replayed["kind"] == "space.created"
        new = record(api.demo, EventKind.PAUSED)
        record(api.hidden, EventKind.PAUSED)  # not demo's: not sent
        restarted = record(api.demo, EventKind.RESTARTED, factory_reboot=True)
        assert [_next_event(lines)["id"] for _ in range(2)] == [new, restarted]
    # A reconnecting EventSource resumes after the last id it saw.
    headers = {"last-event-id": str(new)}
    with httpx.stream("GET", url, headers=headers, timeout=10) as response:
        event = _next_event(_sse(response))
        assert event["id"] == restarted and event["data"] == {"factory_reboot": True}


def test_a_silent_stream_sends_heartbeats_and_a_follower_that_leaves_frees_its_slot(
    api: Api,
) -> None:
    key = f"space:{api.demo.uid}"
    url = f"{api.url}/api/spaces/alice/demo/events/stream"
    with httpx.stream("GET", url, timeout=10) as response:  # from now: nothing to replay
        assert followers.held(key) == 1
        lines = response.iter_lines()
        assert next(line for line in lines if line) == ": heartbeat"
    wait_for(lambda: followers.held(key) == 0, "the slot to be freed")


def test_a_build_log_is_followed_until_the_build_ends(api: Api) -> None:
    with Session(db.get_engine(), expire_on_commit=False) as session:
        build = Build(space_id=api.demo.id, commit_sha="a" * 40, status=BuildStatus.RUNNING)
        session.add(build)
        session.commit()
        session.add(BuildLogLine(build_id=build.id, line="step 1"))
        session.commit()
        build_id = build.id
    key = f"space:{api.demo.uid}"
    url = f"{api.url}/api/spaces/alice/demo/logs/build"
    with httpx.stream("GET", url, timeout=10) as response:
        lines = response.iter_lines()
        # A heartbeat may come first on a loaded machine (the first read is in a thread).
        first = next(line for line in lines if line.startswith("data: "))
        assert json.loads(first.removeprefix("data: "))["data"] == "step 1"
        # The build is silent: the stream is not.
        assert next(line for line in lines if line) == ": heartbeat"
        with Session(db.get_engine()) as session:
            session.add(BuildLogLine(build_id=build_id, line="step 2"))
            changes.ring(session, changes.Channel.BUILD_LOGS)
            stored = session.get(Build, build_id)
            assert stored is not None
            stored.status = BuildStatus.SUCCEEDED
            session.add(stored)
            session.commit()
        rest = [line for line in lines if line.startswith("data: ")]
        assert [json.loads(r.removeprefix("data: "))["data"] for r in rest] == ["step 2"]
    wait_for(lambda: followers.held(key) == 0, "the slot to be freed")


def test_a_run_log_follower_gets_heartbeats_and_leaving_ends_its_read(api: Api) -> None:
    instance = Instance(
        id="i-1",
        space_id=api.demo.uid,
        space="alice/demo",
        revision="r",
        sha="b" * 40,
        state=InstanceState.RUNNING,
        address=None,
    )
    api.backend.running["i-1"] = instance
    api.backend.log_lines["i-1"] = ["hello"]
    key = f"space:{api.demo.uid}"
    url = f"{api.url}/api/spaces/alice/demo/logs/run"
    with httpx.stream("GET", url, timeout=10) as response:
        lines = response.iter_lines()
        assert json.loads(next(lines).removeprefix("data: "))["data"] == "hello"
        assert [next(lines), next(lines)] == ["", ": heartbeat"]
    wait_for(lambda: followers.held(key) == 0, "the slot to be freed")
    assert api.backend.followed[0].closed.is_set()  # the blocking read was ended
    once = api.get("/api/spaces/alice/demo/logs/run?follow=false")
    assert "hello" in once.text and followers.held(key) == 0


def test_a_run_log_line_carries_the_time_it_was_written(api: Api) -> None:
    """fetch_space_logs(follow=False) stops at the first event stamped after the answer's
    Date: a line must carry when the app wrote it (Docker's log timestamp), not when it was
    read."""
    api.backend.running["i-1"] = Instance(
        id="i-1",
        space=api.demo.full_name,
        space_id=api.demo.uid,
        revision="r1",
        sha="b" * 40,
        state=InstanceState.RUNNING,
        address=None,
    )
    written = "2026-01-02T03:04:05.678901234Z"
    api.backend.log_lines["i-1"] = [f"{written} started", "no stamp here"]
    answer = api.get("/api/spaces/alice/demo/logs/run?follow=false")
    events = [json.loads(x.removeprefix("data: ")) for x in answer.text.split("\n\n") if x]
    assert events[0] == {"data": "started", "timestamp": "2026-01-02T03:04:05.678Z"}
    # A line without a time (a backend that could not say) is stamped when it is read.
    assert events[1]["data"] == "no stamp here" and events[1]["timestamp"] > written


def test_split_timestamp_reads_docker_and_kubernetes_stamps() -> None:
    assert split_timestamp("2026-12-02T07:20:01.123456789Z a b") == (
        "a b",
        datetime(2026, 12, 2, 7, 20, 1, 123456, tzinfo=UTC),
    )
    assert split_timestamp("2026 is near") == ("2026 is near", None)
    assert split_timestamp("plain") == ("plain", None)


# Git's own endpoints answer git in its text protocol; everything else in the one shape.
GIT_PROTOCOL = ("/info/refs", "/git-upload-pack", "/git-receive-pack", "/{repo}/{path}")
HOSTILE = ["missing", "%ff%fe", "a" * 300, "99999999999999999999"]


def _check_error(response: httpx.Response, where: str) -> str | None:
    if response.status_code < 400 or response.request.method == "HEAD":
        return None
    response.read()
    try:
        body = response.json()
    except ValueError:
        return f"{where}: {response.status_code} is not JSON: {response.text[:80]!r}"
    if not isinstance(body, dict) or not isinstance(body.get("error"), str) or not body["error"]:
        return f"{where}: {response.status_code} {body!r:.120}"
    if set(body) - {"error", "url", "message", "error_description"}:
        return f"{where}: extra fields {sorted(body)}"
    if not response.headers.get("x-error-message"):
        return f"{where}: no X-Error-Message"
    return None


def test_every_refusal_of_every_route_has_the_one_error_shape(api: Api) -> None:
    spec = httpx.get(f"{api.url}/openapi.json").json()
    assert "ErrorBody" in spec["components"]["schemas"]
    problems: list[str] = []
    sent = 0
    with httpx.Client(base_url=api.url, timeout=10) as client:
        for path, operations in spec["paths"].items():
            if any(part in path for part in GIT_PROTOCOL):
                continue
            for method in operations:
                targets = []
                for value in HOSTILE:
                    filled = path
                    for param in re.findall(r"{(\w+)(?::path)?}", path):
                        filled = re.sub(r"{" + param + r"(?::path)?}", value, filled)
                    targets.append(filled)
                targets.append(path.replace("{owner}", "alice").replace("{name}", "demo"))
                for target in targets:
                    for token in (None, api.bob):
                        headers = {"content-type": "application/json"}
                        if token:
                            headers["authorization"] = f"Bearer {token}"
                        with client.stream(
                            method.upper(),
                            target + "?limit=-1&kind=x",
                            headers=headers,
                            content=b"{",
                        ) as response:
                            sent += 1
                            problem = _check_error(response, f"{method.upper()} {target}")
                            if problem:
                                problems.append(problem)
        for method, target in (("GET", "/api/no-such-route"), ("DELETE", "/api/whoami-v2")):
            sent += 1
            if problem := _check_error(client.request(method, target), f"{method} {target}"):
                problems.append(problem)
    assert sent > 100
    assert not problems, "\n".join(problems[:30])


def _take(lines: Iterator[tuple[str, str]], count: int, seconds: float = 10) -> list[int]:
    """The ids of the next `count` events, within `seconds` (heartbeats keep lines coming)."""
    deadline = time.monotonic() + seconds
    ids: list[int] = []
    for field, value in lines:
        if field == "id":
            ids.append(int(value))
            if len(ids) == count:
                return ids
        assert time.monotonic() < deadline, f"only {ids} in {seconds} s"
    raise AssertionError("the stream ended")


@pytest.mark.parametrize("api", ["postgresql"], indirect=True)  # SQLite commits in id order
def test_an_event_that_commits_after_a_newer_one_is_not_skipped(api: Api) -> None:
    """PostgreSQL hands out ids at insert: a page or stream that moved past a committed id
    while a lower one was still open never showed the lower one."""
    start = api.get("/api/spaces/alice/demo/events").json()["cursor"]
    url = f"{api.url}/api/spaces/alice/demo/events/stream"
    with (
        Session(db.get_engine(), expire_on_commit=False) as slow,
        httpx.stream("GET", url, params={"after": start}, timeout=10) as response,
    ):
        late = events.record(slow, EventKind.PAUSED, "alice", api.demo)
        slow.flush()  # its id is taken; it commits only below
        newer = record(api.demo, EventKind.RESTARTED)
        assert late.id is not None and late.id < newer
        page = api.get(f"/api/spaces/alice/demo/events?after={start}").json()
        assert page["events"] == [] and page["cursor"] < late.id  # waits for the open one
        slow.commit()
        assert _take(_sse(response), 2) == [late.id, newer]  # in order, none skipped
    page = api.get(f"/api/spaces/alice/demo/events?after={start}").json()
    assert [e["id"] for e in page["events"]] == [late.id, newer]
