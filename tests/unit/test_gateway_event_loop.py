"""Nothing blocks the event loop that proxies every Space.

The real app (orchestrator.app.create_app) runs under uvicorn on an asyncio loop in debug
mode, which reports every callback that holds the loop longer than
`loop.slow_callback_duration`. The database is made slow (each query waits SLOW_QUERY
seconds), so a query run on the loop, anywhere on the paths exercised here, holds it that
long and is reported: proxied requests to a public and a private Space, a host the route
table does not know yet, an anonymous clone and a push that creates its Space (its token
checked, the row written, `git init`, the pack spooled to disk and checked against the
limits). Before this, git's endpoints checked tokens and created Spaces on the loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
import uvicorn
from sqlalchemy import event
from sqlmodel import Session

from orchestrator.app import create_app
from orchestrator.core import auth, db, status
from orchestrator.core.models import Stage, Visibility
from orchestrator.core.settings import get_settings
from orchestrator.spaces import registry as spaces
from tests import services

SLOW_QUERY = 0.4  # seconds each query takes while the database is slow
SLOW_CALLBACK = 0.2  # what the loop reports; a query on the loop takes twice that


class SlowCallbacks(logging.Handler):
    """asyncio's debug-mode reports: 'Executing <Handle ...> took 0.412 seconds'."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.reports: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("Executing"):
            self.reports.append(message)


class Server:
    """uvicorn in a thread, on a debug-mode loop of its own."""

    def __init__(self, app: object, port: int) -> None:
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")  # type: ignore[arg-type]
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "uvicorn did not start"
            time.sleep(0.02)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        loop.set_debug(True)
        loop.slow_callback_duration = SLOW_CALLBACK
        asyncio.set_event_loop(loop)
        loop.run_until_complete(self.server.serve())
        loop.close()

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)


class App(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        body = b"hello from the app"
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def platform(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, str, str]]:
    """The app on 127.0.0.1, with a running public Space, a private one and a token:
    (base URL, spaces domain, token)."""
    for key in list(os.environ):
        if key.startswith("SPACEPORT_"):
            monkeypatch.delenv(key)
    port = services.free_port()
    domain = f"localhost:{port}"
    monkeypatch.setenv("SPACEPORT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SPACEPORT_PUBLIC_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("SPACEPORT_SPACES_DOMAIN", domain)
    monkeypatch.setenv("SPACEPORT_PUSH_FOLLOW_SECONDS", "0")  # the hook hands back at once
    get_settings.cache_clear()
    db.get_engine.cache_clear()
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), App)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    address = f"http://127.0.0.1:{upstream.server_address[1]}"
    app = create_app()
    with Session(db.get_engine(), expire_on_commit=False) as session:
        alice = auth.get_or_create_user(session, "alice")
        token = auth.create_token(session, alice)
        for name, visibility in (("open", Visibility.PUBLIC), ("closed", Visibility.PRIVATE)):
            space = spaces.create_space(session, alice, name, visibility=visibility)
            assert status.write_status(session, space, stage=Stage.RUNNING, serving_address=address)
            session.commit()
    server = Server(app, port)
    try:
        yield f"http://127.0.0.1:{port}", domain, token
    finally:
        server.stop()
        upstream.shutdown()
        upstream.server_close()
        db.get_engine().dispose()
        get_settings.cache_clear()
        db.get_engine.cache_clear()


def _git(*args: str, cwd: Path) -> None:
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
    done = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr


def _traffic(base: str, domain: str, token: str, workdir: Path, round_: int) -> None:
    """Visits and git, at the same time: each in its own thread."""
    authed = base.replace("://", f"://alice:{token}@")

    def visits() -> None:
        with httpx.Client(base_url=base, timeout=60) as client:
            for _ in range(5):
                public = client.get("/", headers={"host": f"alice-open.{domain}"})
                assert public.text == "hello from the app"
                private = client.get(
                    "/",
                    headers={"host": f"alice-closed.{domain}", "authorization": f"Bearer {token}"},
                )
                assert private.text == "hello from the app"
                missing = client.get("/", headers={"host": f"nobody-{round_}.{domain}"})
                assert missing.status_code == 404

    def clone() -> None:
        _git(
            "clone", "-q", f"{base}/spaces/alice/open", str(workdir / f"clone{round_}"), cwd=workdir
        )

    def push() -> None:
        repo = workdir / f"new{round_}"
        repo.mkdir()
        (repo / "README.md").write_text("---\nsdk: static\n---\n")
        (repo / "index.html").write_text("<p>hi</p>\n")
        _git("init", "-q", "-b", "main", cwd=repo)
        _git("add", ".", cwd=repo)
        _git("commit", "-q", "-m", "first", cwd=repo)
        _git("push", "-q", f"{authed}/spaces/alice/new{round_}", "main", cwd=repo)

    failures: list[BaseException] = []

    def run(work: object) -> None:
        try:
            work()  # type: ignore[operator]
        except BaseException as exc:  # noqa: BLE001 - re-raised below, in the test's thread
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(w,)) for w in (visits, clone, push)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    if failures:
        raise failures[0]


def test_no_request_blocks_the_event_loop(platform: tuple[str, str, str], tmp_path: Path) -> None:
    base, domain, token = platform
    # A first round unmeasured: first-use work (imports, the JWT key) is not the point.
    _traffic(base, domain, token, tmp_path, 0)

    slow = threading.Event()

    def slow_query(*_args: object) -> None:
        if slow.is_set():
            time.sleep(SLOW_QUERY)

    reports = SlowCallbacks()
    logging.getLogger("asyncio").addHandler(reports)
    event.listen(db.get_engine(), "before_cursor_execute", slow_query)
    slow.set()
    try:
        _traffic(base, domain, token, tmp_path, 1)
    finally:
        slow.clear()
        event.remove(db.get_engine(), "before_cursor_execute", slow_query)
        logging.getLogger("asyncio").removeHandler(reports)
    assert reports.reports == [], "\n".join(reports.reports)
