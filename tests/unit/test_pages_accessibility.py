"""Every page in a real browser, checked by an accessibility engine (Debian's Chromium through
Playwright, axe-core from tests/browser/package-lock.json; under CI=true a missing one fails:
scripts/bootstrap.sh --test installs them).

The API app under uvicorn on a seeded home (Spaces with card data, a commit, a discussion with
comments, a pull request, a token, credit); each page, signed in and signed out where that
differs, at a phone's 390 px and a desktop's 1280 px: axe's WCAG 2.1 A and AA rules find
nothing (contrast, names of controls, landmarks, headings), the page does not scroll sideways,
and the first Tab stops are the skip link and then the header's, in document order, each with
a visible focus. The gateway's own pages (the waiting page, a Space's status page) too. One
screenshot per page and width lands in the test's tmp dir, or SPACEPORT_TEST_SHOTS.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import pytest
import uvicorn
from sqlmodel import Session

from orchestrator.api import wire
from orchestrator.billing import accounts
from orchestrator.community import discussions, pull_requests
from orchestrator.controller.environment import oauth_environment
from orchestrator.core import auth, db, status, web_sessions
from orchestrator.core.models import Secret, Variable
from orchestrator.core.settings import get_settings
from orchestrator.gateway import pages as gateway_pages
from orchestrator.gateway import waiting_page
from orchestrator.repos import commit as repo_commit
from orchestrator.repos import store as repos
from orchestrator.spaces import lifecycle
from orchestrator.spaces import registry as spaces
from tests import services
from tests.unit.test_waiting_page_browser import CHROMIUM, _require_browser

AXE = Path(__file__).parents[1] / "browser" / "node_modules" / "axe-core" / "axe.min.js"
BROWSER_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
WIDTHS = ((390, 844), (1280, 800))
AXE_RULES = {"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]}}
PASSWORD = "correct horse battery"
HEADER_TABS = 4  # the skip link, then this many stops inside the header


def _require_axe() -> None:
    services.require("axe-core", AXE.is_file(), "scripts/bootstrap.sh --test (npm ci)")


@dataclass
class Site:
    base: str
    oauth_query: str  # /oauth/authorize's query for alice/login, a Space that signs people in


def _seed(tmp: Path) -> str:
    """alice's Spaces (one with files, a discussion and a pull request), bob, a token, credit;
    the consent page's query."""
    with Session(db.get_engine()) as session:
        alice = auth.get_or_create_user(session, "alice")
        bob = auth.get_or_create_user(session, "bob")
        for user in (alice, bob):
            web_sessions.set_password(session, user, PASSWORD)
        cards = {
            "demo": {"title": "Demo", "emoji": "🚀", "colorFrom": "green", "colorTo": "yellow"},
            "painter": {"title": "Painter", "emoji": "🎨", "colorFrom": "red", "colorTo": "blue"},
            "login": {"title": "Login demo", "emoji": "🔑", "hf_oauth": True},
        }
        for name, card in cards.items():
            space = spaces.create_space(session, alice, name, sdk="gradio")
            status.change_spec(session, space, card_data=json.dumps(card))
        demo = spaces.get_space(session, "alice", "demo")
        assert demo is not None
        lifecycle.upsert(session, demo, Secret, "API_KEY", "secret-value", actor="alice")
        lifecycle.upsert(session, demo, Variable, "MODEL", "tiny", actor="alice")
        accounts.grant(session, alice, 3 * accounts.MICRO, actor="admin")
        auth.create_token(session, alice, display_name="laptop")
        session.commit()

    repo = repos.repo_path("alice", "demo")
    files = {
        "README.md": b"# Demo\n\nA small demo of **Spaceport**.\n\n- one\n- two\n",
        "app.py": b"import gradio as gr\n\ngr.Interface(lambda x: x, 'text', 'text').launch()\n",
        "requirements.txt": b"gradio\n",
    }
    operations: list[repo_commit.Operation] = []
    for path, content in files.items():
        source = tmp / path
        source.write_bytes(content)
        operations.append(repo_commit.AddFile(path, source))
    repo_commit.create_commit(
        repo, "refs/heads/main", None, operations, "First version\n", repos.identity("alice")
    )

    with Session(db.get_engine()) as session:
        alice = auth.get_or_create_user(session, "alice")
        bob = auth.get_or_create_user(session, "bob")
        demo = spaces.get_space(session, "alice", "demo")
        assert demo is not None
        talk = discussions.open_discussion(
            session, demo, bob, "Does it run on a phone?", "It looks small.", pull_request=False
        )
        discussions.comment(session, demo, talk, alice, "It does: try it at 390 px.")
        discussions.comment(session, demo, talk, bob, "Thanks!")
        session.commit()
        pull_requests.open_pull_request(session, demo, bob, "Fix a typo", "In the README.")
        login = spaces.get_space(session, "alice", "login")
        assert login is not None
        env = oauth_environment(
            login, json.loads(login.card_data or "{}"), get_settings().public_url
        )
        host = f"{login.host}.{get_settings().spaces_domain}"
    return urlencode(
        {
            "response_type": "code",
            "client_id": env["OAUTH_CLIENT_ID"],
            "redirect_uri": f"https://{host}/login/callback",
            "scope": env["OAUTH_SCOPES"],
            "state": "state-123",
            "nonce": "nonce-456",
        }
    )


@pytest.fixture
def site(migrated_home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Site]:
    _require_browser()
    _require_axe()
    from orchestrator.app import create_api

    port = services.free_port()
    base = f"http://localhost:{port}"
    monkeypatch.setenv("SPACEPORT_PUBLIC_URL", base)
    get_settings.cache_clear()
    seeds = tmp_path / "seed"
    seeds.mkdir()
    query = _seed(seeds)
    config = uvicorn.Config(
        create_api(migrate=False), host="127.0.0.1", port=port, log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield Site(base, query)
    server.should_exit = True
    thread.join(timeout=30)
    get_settings.cache_clear()


DEMO = "/spaces/alice/demo"
PUBLIC = [  # what a visitor sees signed out too (the bar's links and forms differ)
    "/",
    "/spaces?sort=likes",
    "/alice",
    DEMO,
    DEMO + "/tree/main",
    DEMO + "/blob/main/app.py",
    DEMO + "/commits/main",
    DEMO + "/discussions",
    DEMO + "/discussions/1",
    DEMO + "/discussions/2",  # the pull request
    "/login",
    "/spaces/nobody/nothing",  # a 404 page
]
SIGNED_IN = [
    *[path for path in PUBLIC if path != "/login"],
    DEMO + "/discussions/new",
    DEMO + "/settings",
    DEMO + "/duplicate",
    "/new-space",
    "/settings/tokens",
    "/settings/billing",
]

# The focused element's description, whether its focus shows (outline or box-shadow), and
# where it sits: in the header, and after the previous stop in document order.
FOCUS = """(previous) => {
  const el = document.activeElement;
  if (!el || el === document.body) return {ok: false, what: 'nothing focused'};
  const style = getComputedStyle(el);
  const shown = (style.outlineStyle !== 'none' && parseFloat(style.outlineWidth) > 0)
    || (style.boxShadow && style.boxShadow !== 'none');
  const box = el.getBoundingClientRect();
  const words = el.innerText || el.value || el.getAttribute('aria-label') || '';
  const what = el.tagName.toLowerCase() + (el.id ? '#' + el.id : '')
    + ' "' + words.trim().slice(0, 30) + '"';
  const order = window.__lastFocus
    ? !!(window.__lastFocus.compareDocumentPosition(el) & Node.DOCUMENT_POSITION_FOLLOWING) : true;
  window.__lastFocus = el;
  return {ok: true, what, shown, onScreen: box.width > 0 && box.height > 0,
          inHeader: !!el.closest('header'), skip: el.classList.contains('skip'), order};
}"""


# Back to the top of the document, as a fresh load without autofocus is: a page that focuses
# its first field (the sign-in form) still starts tabbing from the skip link from there.
START_AT_TOP = """() => {
  window.scrollTo(0, 0);
  window.__lastFocus = null;
  document.body.setAttribute('tabindex', '-1');
  document.body.focus();
  document.body.removeAttribute('tabindex');
}"""


def _axe(page) -> list[str]:  # noqa: ANN001 - a Playwright Page
    page.add_script_tag(path=str(AXE))
    violations = page.evaluate(
        "(rules) => axe.run(document, rules).then(r => r.violations)", AXE_RULES
    )
    found = []
    for violation in violations:
        for node in violation["nodes"]:
            target = " ".join(map(str, node["target"]))
            why = "".join((node.get("failureSummary") or "").strip().splitlines()[-1:]).strip()
            found.append(f"{violation['id']} ({violation['impact']}) at {target}: {why}")
    return found


def _keyboard(page) -> list[str]:  # noqa: ANN001 - a Playwright Page
    """The first Tab stops from the top: the skip link, then the header's, each visible."""
    page.evaluate(START_AT_TOP)
    problems = []
    for stop in range(1 + HEADER_TABS):
        page.keyboard.press("Tab")
        focus = page.evaluate(FOCUS)
        if not focus["ok"]:
            problems.append(f"Tab {stop + 1}: {focus['what']}")
            break
        where = f"Tab {stop + 1} on {focus['what']}"
        if not (focus["shown"] and focus["onScreen"]):
            problems.append(f"{where}: no visible focus")
        if not focus["order"]:
            problems.append(f"{where}: before the previous stop in the document")
        if stop == 0 and not focus["skip"]:
            problems.append(f"{where}: the first stop is not the skip link")
        if stop > 0 and not focus["inHeader"]:
            problems.append(f"{where}: not in the header")
    return problems


def _check(page, url: str, label: str, width: int, shots: Path, header: bool = True) -> list[str]:  # noqa: ANN001
    response = page.goto(url)
    assert response is not None, url
    problems = [f"{violation}" for violation in _axe(page)]
    scroll = page.evaluate("document.documentElement.scrollWidth")
    if scroll > width:
        problems.append(f"{scroll} px wide at a {width} px viewport")
    if header:  # the gateway's pages have nothing to tab to
        problems += _keyboard(page)
    name = label.strip("/").replace("/", "_").replace("?", "_").replace("=", "-") or "home"
    page.screenshot(path=str(shots / f"{name}-{width}.png"), full_page=True)
    return [f"{label} at {width} px: {problem}" for problem in problems]


def _shots(tmp_path: Path) -> Path:
    shots = Path(os.environ.get("SPACEPORT_TEST_SHOTS") or tmp_path / "shots")
    shots.mkdir(parents=True, exist_ok=True)
    return shots


def _sign_in(page, base: str, name: str) -> None:  # noqa: ANN001
    page.goto(base + "/login")
    page.fill("#login-name", name)
    page.fill("#login-password", PASSWORD)
    page.click("button[type=submit].primary")
    page.wait_for_url(lambda url: "/login" not in url)


def test_every_page_passes_axe_fits_a_phone_and_starts_tabbing_in_the_header(
    site: Site, tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    shots = _shots(tmp_path)
    problems: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        try:
            for width, height in WIDTHS:
                visitor = browser.new_context(viewport={"width": width, "height": height})
                page = visitor.new_page()
                for path in PUBLIC:
                    problems += _check(page, site.base + path, "out" + path, width, shots)
                visitor.close()

                alice = browser.new_context(viewport={"width": width, "height": height})
                page = alice.new_page()
                _sign_in(page, site.base, "alice")
                for path in SIGNED_IN:
                    problems += _check(page, site.base + path, "in" + path, width, shots)
                consent = "/oauth/authorize?" + site.oauth_query
                problems += _check(page, site.base + consent, "in/oauth/authorize", width, shots)
                alice.close()
        finally:
            browser.close()
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems)


def _gateway_pages() -> dict[str, str]:
    place = wire.VisitorPlace(
        admitted=False,
        ready=True,
        full=False,
        position=1,
        waiting=2,
        doing="busy",
        message="alice/demo serves 1 visitor at a time",
        estimatedWaitSeconds=40.0,
        retryAfter=3,
        placeText="1",
        placeLabel="your place in line (2 waiting)",
        waitText="about a minute",
    )
    return {
        "waiting": waiting_page.render("alice/demo", place),
        "starting": gateway_pages.status_page("alice/demo", "APP_STARTING", None),
        "failed": gateway_pages.status_page("alice/demo", "RUNTIME_ERROR", "Traceback: boom"),
        "missing": gateway_pages.not_found_page("nobody-nothing.spaces.test"),
    }


def test_the_gateway_pages_pass_axe_and_fit_a_phone(tmp_path: Path) -> None:
    """The pages a Space's own host answers with, served as the gateway sends them."""
    _require_browser()
    _require_axe()
    from playwright.sync_api import sync_playwright

    shots = _shots(tmp_path)
    problems: list[str] = []
    documents = _gateway_pages()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        try:
            for width, height in WIDTHS:
                page = browser.new_page(viewport={"width": width, "height": height})

                def answer(route) -> None:  # noqa: ANN001 - a Playwright Route
                    name = route.request.url.rstrip("/").rsplit("/", 1)[-1]
                    if name in documents:
                        route.fulfill(status=503, content_type="text/html", body=documents[name])
                    else:  # the waiting page's long-poll: no news
                        route.fulfill(status=204, body="")

                page.route("http://gateway.test/**", answer)
                for name in documents:
                    url = f"http://gateway.test/{name}"
                    problems += _check(page, url, "gateway/" + name, width, shots, header=False)
                page.close()
        finally:
            browser.close()
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems)
