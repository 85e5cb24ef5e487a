"""A Space's app for the gateway's tests: a local HTTP server behind the real Gateway."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Upstream:
    """Answers every GET with 'app', or 'app {name} {path}' when named (to tell apart the
    apps a test routes to), and remembers the headers of each request (names lower-cased)."""

    def __init__(self, name: str | None = None) -> None:
        seen: list[dict[str, str]] = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                seen.append({k.lower(): v for k, v in self.headers.items()})
                body = ("app" if name is None else f"app {name} {self.path}").encode()
                self.send_response(200)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.seen = seen
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def cookies(self) -> list[str]:
        """The Cookie header of each request ('' where there was none)."""
        return [headers.get("cookie", "") for headers in self.seen]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
