"""The readiness probe waits for a slow first page instead of abandoning it."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator

import pytest

from sandbox import readiness


class _SlowFirstPage(http.server.BaseHTTPRequestHandler):
    delay = 3.0  # longer than the 2 s the probe used to wait
    served = 0

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        type(self).served += 1
        time.sleep(self.delay)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def slow_app() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _SlowFirstPage)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_an_app_slow_to_render_its_first_page_is_found_ready(slow_app: str) -> None:
    assert readiness.answers(slow_app)


def test_an_app_not_listening_is_not_ready_at_once() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again below: nothing listens there
    started = time.monotonic()
    assert not readiness.answers(f"http://127.0.0.1:{port}")
    assert time.monotonic() - started < readiness.CONNECT_TIMEOUT_SECONDS
