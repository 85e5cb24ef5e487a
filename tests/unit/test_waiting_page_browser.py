"""The visitor queue's waiting page in a real browser (Debian's Chromium through Playwright;
under CI=true a missing one fails: scripts/bootstrap.sh --test installs both).

The real Gateway under uvicorn, a Space at its concurrency of 1 whose slot another visitor
holds: the page shows place 1 in an ARIA live region, fits 390 px and 1280 px without
sideways scrolling (screenshots of both are kept in the test's tmp dir), carries the
no-JavaScript refresh, and once the other visitor has gone idle lets the visitor in by
itself, without a reload by hand, within LET_IN_SECONDS of the slot freeing (its long-poll
is told: a poll every POLL_SECONDS would be later). A real clock and a short idle time:
the waiting page keeps its place by asking, as it does for real.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from orchestrator.core.settings import get_settings
from orchestrator.gateway.visitor_admission import VisitorQueue
from orchestrator.gateway.visitor_queue import MemoryQueueStore
from tests import services
from tests.unit.test_visitor_queue import (
    BROWSER,
    Routes,
    Upstream,
    _route,
    control_plane,
)

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--host-resolver-rules=MAP * 127.0.0.1",  # the Space's host name, without DNS
]
IDLE = 10.0  # the idle time: the first visitor's slot frees this long after its last request
# At most, from the slot freeing to the app shown: the long-poll's answer and the reload
# (a poll every POLL_SECONDS, 3 s, would often be later).
LET_IN_SECONDS = 2.5


def _require_browser() -> None:
    try:
        import playwright  # noqa: F401
    except ImportError:
        found = False
    else:
        found = os.access(CHROMIUM, os.X_OK)
    services.require(
        "Chromium and Playwright",
        found,
        "scripts/bootstrap.sh --test (apt chromium, pip playwright)",
    )


class Served:
    """The gateway under uvicorn on a free port, in a thread."""

    def __init__(self, port: int, upstream: Upstream) -> None:
        from orchestrator.gateway.proxy import Gateway

        self.gateway = Gateway(control_plane)  # type: ignore[arg-type]
        self.gateway.routes = Routes(_route(upstream.address))  # type: ignore[assignment]
        self.gateway.queue = VisitorQueue(MemoryQueueStore())  # the real clock
        config = uvicorn.Config(self.gateway, host="127.0.0.1", port=port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


@pytest.fixture
def served(migrated_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    _require_browser()
    port = services.free_port()
    monkeypatch.setenv("SPACEPORT_SPACES_DOMAIN", f"spaces.test:{port}")
    monkeypatch.setenv("SPACEPORT_VISITOR_IDLE_SECONDS", str(IDLE))
    get_settings.cache_clear()
    upstream = Upstream()
    server = Served(port, upstream)
    yield f"http://alice-demo.spaces.test:{port}/"
    server.stop()
    upstream.close()


def test_the_waiting_page_shows_the_place_fits_small_screens_and_lets_the_visitor_in(
    served: str, tmp_path: Path
) -> None:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    url = served
    host = url.split("/")[2]
    # The first visitor takes the one slot (from the test process: straight to 127.0.0.1),
    # and keeps it, active, until the test lets it go.
    address = "http://127.0.0.1:" + host.rsplit(":", 1)[1] + "/"
    answer = httpx.get(address, headers={**BROWSER, "host": host})
    assert answer.status_code == 200 and answer.text == "app"
    cookie = answer.headers["set-cookie"].split(";")[0]
    first = {**BROWSER, "host": host, "cookie": cookie}
    leave = threading.Event()
    last_request = [time.time()]

    def stay_active() -> None:
        while not leave.wait(IDLE / 5):
            last_request[0] = time.time()
            assert httpx.get(address, headers=first).text == "app"

    active = threading.Thread(target=stay_active, daemon=True)
    active.start()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            visitor = browser.new_context()  # one visitor (one cookie jar), two screens
            page = visitor.new_page()
            for width, height in ((390, 844), (1280, 800)):
                page.set_viewport_size({"width": width, "height": height})
                response = page.goto(url)  # the second load keeps the place
                assert response is not None and response.status == 503
                assert page.locator("#place").inner_text() == "1"
                assert page.locator("[role=status][aria-live=polite]").count() == 1
                assert "at a time" in page.locator("#doing").inner_text()
                overflow = page.evaluate("document.documentElement.scrollWidth")
                assert overflow <= width, f"{overflow} px wide at a {width} px viewport"
                shot = tmp_path / f"waiting-{width}.png"
                page.screenshot(path=str(shot), full_page=True)
                assert shot.stat().st_size > 0

            # Without JavaScript, the page still comes back by itself.
            quiet = browser.new_context(java_script_enabled=False).new_page()
            quiet.goto(url)
            assert quiet.locator('meta[http-equiv="refresh"]').count() == 1

            # The first visitor leaves (goes idle); the open page (place 1) is told at once
            # that the slot is free, and reloads into the app.
            leave.set()
            active.join()
            assert page.locator("#place").inner_text() == "1"  # still waiting meanwhile
            frees = last_request[0] + IDLE
            try:
                page.wait_for_function(
                    "document.body.innerText.trim() === 'app'",
                    timeout=(frees + LET_IN_SECONDS + 30 - time.time()) * 1000,
                )
            except PlaywrightTimeout:
                raise AssertionError(f"never let in; the page says:\n{page.content()}") from None
            let_in = time.time()
            assert let_in >= frees - IDLE / 10, "let in before the slot was free"  # the slack
            assert let_in - frees < LET_IN_SECONDS, f"let in {let_in - frees:.2f} s after"
        finally:
            leave.set()
            browser.close()


def test_a_starting_spaces_page_reloads_only_when_there_is_news(
    migrated_home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The status page of a Space on its way asks for itself again and stays put while the
    answer is the same page (a reload moves a screen reader's place); it reloads into the
    app once that serves, and into the error, with its details behind a toggle, once the
    stage says the Space failed. Without JavaScript its meta refresh does the asking."""
    from playwright.sync_api import sync_playwright

    _require_browser()
    port = services.free_port()
    monkeypatch.setenv("SPACEPORT_SPACES_DOMAIN", f"spaces.test:{port}")
    get_settings.cache_clear()
    upstream = Upstream()
    server = Served(port, upstream)
    routes = server.gateway.routes
    starting = _route(None, stage="APP_STARTING", concurrency=None)
    routes.route = starting  # type: ignore[attr-defined]
    url = f"http://alice-demo.spaces.test:{port}/"
    reloads_within = 2 * 3 + 5  # two of its asks (every 3 s) and slack: seconds
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 390, "height": 844})
            response = page.goto(url)
            assert response is not None and response.status == 503
            assert page.title() == "alice/demo is starting"
            assert page.locator('meta[http-equiv="refresh"]').count() == 0  # in <noscript>
            page.evaluate("window.notReloaded = true")
            page.wait_for_timeout(7000)  # two asks, with the same answer
            assert page.evaluate("window.notReloaded === true"), "reloaded with no news"
            page.screenshot(path=str(tmp_path / "starting.png"), full_page=True)

            routes.route = _route(upstream.address, concurrency=None)  # type: ignore[attr-defined]
            page.wait_for_function(
                "document.body.innerText.trim() === 'app'", timeout=reloads_within * 1000
            )

            routes.route = starting  # type: ignore[attr-defined]
            page.goto(url)
            page.evaluate("window.notReloaded = true")
            routes.route = _route(  # type: ignore[attr-defined]
                None, stage="RUNTIME_ERROR", error_message="Traceback: boom", concurrency=None
            )
            page.wait_for_function(
                "document.title === 'alice/demo has a runtime error'",
                timeout=reloads_within * 1000,
            )
            details = page.locator("details")
            assert details.locator("summary").inner_text() == "Details"
            assert not page.locator("pre").is_visible()  # behind the toggle
            details.locator("summary").click()
            assert page.locator("pre").inner_text() == "Traceback: boom"
            page.screenshot(path=str(tmp_path / "failed.png"), full_page=True)

            routes.route = starting  # type: ignore[attr-defined]
            quiet = browser.new_context(java_script_enabled=False).new_page()
            quiet.goto(url)
            assert quiet.locator('meta[http-equiv="refresh"]').count() == 1
        finally:
            browser.close()
            server.stop()
            upstream.close()
