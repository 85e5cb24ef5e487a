"""The static server of sdk: static Spaces serves only the app's files: no dotfiles, no
Spaceport files, no directory listings, no links out of the site; a 404 page otherwise."""

from __future__ import annotations

import functools
import http.client
import http.server
import importlib.util
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

SERVER = Path(__file__).parents[2] / "builder" / "templates" / "static_server.py"


def _module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("static_server", SERVER)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[str, int]]:
    root = tmp_path / "site"
    (root / "assets").mkdir(parents=True)
    (root / "docs").mkdir()
    (root / "empty").mkdir()
    (root / "home.html").write_text("<p>home</p>")
    (root / "index.html").write_text("<p>index</p>")
    (root / "assets" / "app.js").write_text("console.log(1)")
    (root / "assets" / "app.wasm").write_bytes(b"\0asm")
    (root / "docs" / "index.html").write_text("<p>docs</p>")
    (root / ".dockerignore").write_text("x")
    (root / ".spaceport").mkdir()
    (root / ".spaceport" / "static_server.py").write_text("x")
    (root / ".git").mkdir()
    (root / ".git" / "config").write_text("x")
    (tmp_path / "outside.txt").write_text("secret")
    (root / "escape.txt").symlink_to(tmp_path / "outside.txt")
    module = _module()

    class Handler(module.Handler):  # type: ignore[name-defined,misc]
        index = "home.html"

        def log_message(self, *_: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Handler, directory=str(root))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield "127.0.0.1", server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def get(site: tuple[str, int], path: str, method: str = "GET") -> http.client.HTTPResponse:
    connection = http.client.HTTPConnection(*site, timeout=5)
    connection.request(method, path)
    response = connection.getresponse()
    response.body = response.read()  # type: ignore[attr-defined]
    connection.close()
    return response


def test_the_app_file_is_the_page_for_the_root(site: tuple[str, int]) -> None:
    response = get(site, "/?x=1")
    assert response.status == 200
    assert response.body == b"<p>home</p>"  # type: ignore[attr-defined]
    assert response.getheader("Content-Type") == "text/html; charset=utf-8"


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/assets/app.js", "text/javascript; charset=utf-8"),
        ("/assets/app.wasm", "application/wasm"),
        ("/index.html", "text/html; charset=utf-8"),
    ],
)
def test_files_get_their_content_type(site: tuple[str, int], path: str, content_type: str) -> None:
    response = get(site, path)
    assert response.status == 200
    assert response.getheader("Content-Type") == content_type


@pytest.mark.parametrize(
    "path",
    [
        "/.dockerignore",
        "/.spaceport/static_server.py",
        "/.spaceport/",
        "/.git/config",
        "/%2Egit/config",
        "/assets/../.git/config",
        "/assets/",  # a folder without index.html: no listing
        "/assets",
        "/empty/",
        "/escape.txt",  # a link out of the site
        "/missing.html",
        "/opt/spaceport/static_server.py",
    ],
)
def test_anything_but_the_apps_files_is_a_404(site: tuple[str, int], path: str) -> None:
    response = get(site, path)
    assert response.status == 404, path
    assert b"404" in response.body  # type: ignore[attr-defined]
    assert b"static_server" not in response.body  # type: ignore[attr-defined]
    assert get(site, path, "HEAD").status == 404


def test_a_folder_with_an_index_is_served_after_a_redirect(site: tuple[str, int]) -> None:
    response = get(site, "/docs")
    assert response.status == 301
    assert response.getheader("Location") == "/docs/"
    response = get(site, "/docs/")
    assert response.status == 200 and response.body == b"<p>docs</p>"  # type: ignore[attr-defined]
