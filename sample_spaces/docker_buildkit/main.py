"""Serves what the build left behind: the heredoc's file, the build secret's hash, data.json."""

import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

BUILT = Path("/app/built")


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the http.server name
        body = json.dumps(
            {
                "data": json.loads(Path("data.json").read_text()),
                "heredoc": (BUILT / "heredoc.txt").read_text().strip(),
                "token_sha256": (BUILT / "token.sha256").read_text().strip(),
                "user": os.getuid(),
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


ThreadingHTTPServer(("0.0.0.0", 7860), Handler).serve_forever()
