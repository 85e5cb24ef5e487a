"""Sign in with Spaceport through a real Gradio LoginButton: the login_button sample
(`hf_oauth: true`, gr.LoginButton and gr.OAuthProfile, unchanged) is pushed and run in a
container by `spaceport up`; Debian's Chromium clicks its button, signs in to Spaceport,
allows the Space on the consent page, and is back in the Space signed in, whose own server
(authlib inside the container) traded the code through the sign-in door
(orchestrator/oauth/spaces_door.py) and verified the ID token. Each step's screenshot is
kept in the test's tmp dir (or SPACEPORT_TEST_SHOTS)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.platform import Platform, push, sample_checkout
from tests.unit.test_waiting_page_browser import CHROMIUM, _require_browser

pytestmark = pytest.mark.parametrize("platform", ["sqlite-embedded"], indirect=True)

OWNER, NAME = "oauthdemo", "login"
VISITOR, PASSWORD = "visitor", "a long test password"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _set_password(platform: Platform, user: str, password: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "user", "password", user],
        env=platform.env,
        input=password + "\n",
        text=True,
        check=True,
        capture_output=True,
    )


def test_a_gradio_login_button_signs_a_person_in_with_spaceport(
    platform: Platform, tmp_path: Path
) -> None:
    _require_browser()
    from playwright.sync_api import expect, sync_playwright

    shots = Path(os.environ.get("SPACEPORT_TEST_SHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    token = platform.token(OWNER)
    result = push(sample_checkout("login_button", tmp_path), platform.git_url(OWNER, NAME, token))
    assert "Build succeeded" in result.stderr, result.stderr[-4000:]
    runtime = platform.wait_for_stage(OWNER, NAME, timeout=300)
    assert runtime["stage"] == "RUNNING", runtime
    _set_password(platform, VISITOR, PASSWORD)
    app = platform.app_url(OWNER, NAME)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(app + "/", wait_until="networkidle")
            button = page.get_by_role("button", name="Sign in with Hugging Face")
            expect(button).to_be_visible(timeout=30_000)
            page.screenshot(path=shots / "1-space-signed-out.png")
            button.click()

            # Spaceport's sign-in page, then the consent page for this Space.
            page.wait_for_url(f"{platform.url}/login?**", timeout=30_000)
            page.screenshot(path=shots / "2-spaceport-sign-in.png")
            page.get_by_label("User name").fill(VISITOR)
            page.get_by_label("Password").fill(PASSWORD)
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url(f"{platform.url}/oauth/authorize?**", timeout=30_000)
            expect(page.get_by_role("heading", level=1)).to_contain_text("Sign in to")
            page.screenshot(path=shots / "3-consent.png")
            page.get_by_role("button", name="Allow").click()

            # Back in the Space, signed in: its server traded the code and read the profile.
            page.wait_for_url(app + "/**", timeout=60_000)
            expect(page.get_by_role("button", name=f"Logout ({VISITOR})")).to_be_visible(
                timeout=30_000
            )
            page.get_by_role("button", name="Who am I?").click()
            expect(page.get_by_text(f"Hello, {VISITOR}!")).to_be_visible(timeout=30_000)
            page.screenshot(path=shots / "4-space-signed-in.png")
        finally:
            browser.close()
            platform.delete_space(OWNER, NAME, token)  # the platform is shared: leave nothing
