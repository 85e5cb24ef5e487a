"""Spaceport's pages end to end in a real browser, on a real `spaceport up`: Debian's
Chromium (through Playwright, never a downloaded browser) signs in, creates a Space from
the form, and after a real `git push` watches the build log stream into the page (shown
once, though its stream is asked again after the build ends) and the Gradio app appear in
the page's frame; then on the Community tab opens a discussion and a pull request through
the forms, pushes a commit to its refs/pr/N with git and merges it, and sees the commit on
main; duplicates the Space through the dialog; and in Settings asks for a paid tier (with
credit), sets a secret, a variable and a visitor concurrency of 1; then, with two other
visitors ahead of it, watches its place in line advance in the Space page's frame (2, then
1) until the app is shown there. Each step's screenshot is kept in the test's tmp dir (or
SPACEPORT_TEST_SHOTS)."""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.platform import Platform, commit_change, push, sample_checkout, until
from tests.test_space_sign_in_browser import CHROMIUM_ARGS, _set_password
from tests.test_visitor_queue import BROWSER
from tests.unit.test_waiting_page_browser import CHROMIUM, _require_browser

pytestmark = pytest.mark.parametrize("platform", ["sqlite-embedded"], indirect=True)

USER, PASSWORD = "flowtester", "a long test password"
NAME, COPY = "flow", "flow-copy"
IDLE_SECONDS = 8  # SPACEPORT_VISITOR_IDLE_SECONDS on the test platform (tests/conftest.py)


def _push_in_background(repo: Path, url: str) -> subprocess.Popen[str]:
    """`git push` answers once the build is done; the page is watched meanwhile."""
    env = dict(os.environ, GIT_TERMINAL_PROMPT="0")
    return subprocess.Popen(
        ["git", "push", "--force", url, "main"],
        cwd=repo,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


class VisitorAhead:
    """A browser-like visitor (its own cookie) that keeps asking: in line, it polls its
    place as the waiting page does; once let in, it stays active (a request every 2 s, well
    inside the platform's 8 s idle time) until it `leave`s."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.client = httpx.Client(headers=BROWSER, timeout=30)
        first = self.client.get(url)
        self.admitted = first.status_code == 200
        found = re.search(r'id="place">(\d+)<', first.text)
        self.first_place = int(found.group(1)) if found else None
        self._leaving = threading.Event()
        self._asking = threading.Thread(target=self._keep_asking, daemon=True)
        self._asking.start()

    def _keep_asking(self) -> None:
        while not self._leaving.is_set():
            if self.admitted:
                self.admitted = self.client.get(self.url).status_code == 200
                self._leaving.wait(2)
            else:
                place = self.client.get(f"{self.url}/.spaceport/queue").json()
                self.admitted = bool(place["admitted"] and place["ready"])
                self._leaving.wait(1)

    def leave(self) -> None:
        self._leaving.set()
        self._asking.join(timeout=35)
        self.client.close()


def test_a_person_runs_a_space_through_the_pages(platform: Platform, tmp_path: Path) -> None:
    _require_browser()
    from playwright.sync_api import expect, sync_playwright

    shots = Path(os.environ.get("SPACEPORT_TEST_SHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    token = platform.token(USER)
    _set_password(platform, USER, PASSWORD)
    base = f"{platform.url}/spaces/{USER}/{NAME}"
    ahead: list[VisitorAhead] = []  # the visitors of step 7, left in the end in any case

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            shot = lambda step: page.screenshot(path=shots / f"{step}.png", full_page=True)  # noqa: E731

            # 1. Sign in: the header shows who.
            page.goto(platform.url + "/login")
            page.get_by_label("User name").fill(USER)
            page.get_by_label("Password").fill(PASSWORD)
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url(re.compile(r"^(?!.*/login).*$"))
            expect(page.locator("header").first).to_contain_text(USER)
            shot("01-signed-in")

            # 2. Create a blank gradio Space from the form: its page says to push.
            page.goto(platform.url + "/new-space")
            page.get_by_label("Space name").fill(NAME)
            page.get_by_label("Blank: push your own app").check()
            page.get_by_label("gradio", exact=True).check()
            page.get_by_role("button", name="Create Space").click()
            page.wait_for_url(base)
            expect(page.get_by_text(re.compile("push", re.I)).first).to_be_visible()
            shot("02-created")

            # 3. Push the hello sample with git; the build log streams into the page, then
            # the badge says running and the frame shows the Gradio app.
            repo = sample_checkout("hello", tmp_path)
            pushing = _push_in_background(repo, platform.git_url(USER, NAME, token))
            until("a build to start", lambda: bool(platform.builds(USER, NAME, token)), 120)
            page.reload()  # the log's stream starts with the page
            log = page.get_by_label("Build log")
            if not log.is_visible():
                page.get_by_text("Build log", exact=True).click()
            expect(log).to_contain_text(re.compile(r"\S"), timeout=120_000)
            shot("03a-build-log")
            _, pushed = pushing.communicate(timeout=300)
            assert "Build succeeded" in pushed, pushed[-4000:]
            badge = page.locator("[data-stage-of]")
            expect(badge).to_have_text(re.compile("Running", re.I), timeout=300_000)
            # Rendered while still in its first stage (no app file), the page showed that
            # error: it swaps in the frame by itself, without a reload.
            expect(page.locator("[data-error-panel]")).to_be_hidden()
            frame = page.frame_locator(".app-frame iframe")
            expect(frame.get_by_role("button", name="Submit")).to_be_visible(timeout=60_000)
            page.wait_for_timeout(4_000)  # past a reconnect of the ended log's stream
            # Each reconnect sends the log from its start: it is shown once, not repeated.
            assert log.inner_text().count("Build succeeded") == 1, log.inner_text()
            shot("03b-running")

            # 4. Community: a discussion, then a draft pull request that gets a commit
            # pushed with git and is merged from its page.
            page.goto(base + "/discussions")
            page.get_by_role("link", name="New discussion").click()
            page.get_by_label("Title").fill("Say hello in French too?")
            page.get_by_label("First comment").fill("Bonjour would be nice.")
            page.get_by_role("button", name="Open").click()
            expect(page.get_by_role("heading", level=2).first).to_contain_text("French")
            shot("04a-discussion")
            page.goto(base + "/discussions/new?pull_request=1")
            page.get_by_label("Title").fill("Add a notes file")
            page.get_by_label("First comment").fill("A small change, pushed with git.")
            page.get_by_role("button", name="Open").click()
            ref = page.locator(".pr-info code").first.inner_text()
            assert re.fullmatch(r"refs/pr/\d+", ref), ref
            commit_change(repo, "notes.txt", "notes\n", "Add notes.txt")
            push(repo, platform.git_url(USER, NAME, token), f"HEAD:{ref}")
            page.reload()
            expect(page.locator(".pr-info")).to_contain_text("Add notes.txt")
            shot("04b-pull-request")
            page.get_by_role("button", name="Merge into main").click()
            expect(page.locator(".pr-info")).to_contain_text("Merged as")
            shot("04c-merged")
            page.goto(base + "/commits/main")
            expect(page.get_by_text("Add notes.txt").first).to_be_visible()
            shot("04d-commits")

            # 5. Duplicate through the dialog: the copy's page, said to be a copy.
            page.goto(base)
            page.get_by_role("link", name="Duplicate").click()
            page.get_by_label("Space name").fill(COPY)
            page.get_by_role("button", name="Duplicate Space").click()
            page.wait_for_url(f"{platform.url}/spaces/{USER}/{COPY}")
            expect(page.locator(".notice").first).to_contain_text(f"a copy of {USER}/{NAME}")
            shot("05-duplicated")

            # 6. Settings: a paid tier (with credit), a secret, a variable, concurrency 1.
            platform.cli("credit", "grant", USER, "10", "--note", "for the flow test")
            settings = base + "/settings"
            page.goto(settings)
            page.locator('input[name="flavor"][value="cpu-upgrade"]').check()
            page.get_by_role("button", name="Change hardware").click()
            expect(page.locator(".notice").first).to_contain_text("cpu-upgrade")
            page.locator("#secret-key").fill("API_KEY")
            page.locator("#secret-value").fill("flow-secret-value-123")
            page.get_by_role("button", name="Add or replace secret").click()
            expect(page.locator(".notice").first).to_contain_text("API_KEY")
            page.locator("#variable-key").fill("GREETING")
            page.locator("#variable-value").fill("Bonjour")
            page.get_by_role("button", name="Add or replace variable").click()
            expect(page.locator(".notice").first).to_contain_text("GREETING")
            page.get_by_label(re.compile("Visitor concurrency")).fill("1")
            page.get_by_role("button", name="Set visitor concurrency").click()
            expect(page.locator(".notice").first).to_be_visible()
            assert "flow-secret-value-123" not in page.content()  # write-only
            expect(page.locator("body")).to_contain_text("Bonjour")
            expect(page.get_by_label(re.compile("Visitor concurrency"))).to_have_value("1")
            shot("06-settings")
            runtime = platform.runtime(USER, NAME, token)
            assert runtime["hardware"]["requested"] == "cpu-upgrade", runtime

            # 7. In line: once it runs on its new tier, two visitors are ahead of this one.
            # The Space page's frame shows the waiting page at place 2; the first leaves
            # (goes idle) and the place becomes 1 without a reload; the second leaves and
            # the app comes into the frame by itself.
            def on_new_tier() -> bool:
                now = platform.runtime(USER, NAME, token)
                return now["stage"] == "RUNNING" and now["hardware"]["current"] == "cpu-upgrade"

            until("the restart on cpu-upgrade", on_new_tier, 300)
            app = platform.app_url(USER, NAME)
            first = VisitorAhead(app)
            ahead.append(first)
            until("the first visitor let in", lambda: first.admitted, 60)
            second = VisitorAhead(app)
            ahead.append(second)
            assert second.first_place == 1 and not second.admitted, vars(second)
            page.goto(base)
            frame = page.frame_locator(".app-frame iframe")
            expect(frame.locator("#place")).to_have_text("2", timeout=30_000)
            expect(frame.locator("#doing")).to_contain_text("at a time")
            shot("07a-in-line-place-2")
            first.leave()
            left = time.monotonic()
            until("the second visitor let in", lambda: second.admitted, IDLE_SECONDS + 40)
            # Not before its slot frees (its last request was at most 2 s before it left).
            assert time.monotonic() - left >= IDLE_SECONDS - 3
            expect(frame.locator("#place")).to_have_text("1", timeout=30_000)
            shot("07b-in-line-place-1")
            second.leave()
            expect(frame.get_by_role("button", name="Submit")).to_be_visible(timeout=60_000)
            shot("07c-let-in")
        finally:
            for visitor in ahead:
                visitor.leave()
            browser.close()
            # The platform is shared with the modules after this one: leave it no Space
            # (a paid tier's would hold its room).
            for name in (NAME, COPY):
                platform.delete_space(USER, name, token)
