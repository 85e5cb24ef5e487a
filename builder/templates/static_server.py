"""The static server of sdk: static Spaces: serves the site folder (the working directory),
with the Space's app_file as the page for "/". Standard library only, so it runs on any
Python base.

Only the app's files are served: a path with a dot-segment (`.git*`, `.dockerignore`,
`.spaceport/`), a file reached through a link out of the site, or a folder without an
index.html answers 404 (never a directory listing).
"""

import argparse
import email.utils
import functools
import http.server
import os
import urllib.parse

NOT_FOUND_PAGE = (
    b'<!DOCTYPE html>\n<html lang="en">\n<head><meta charset="utf-8">'
    b"<title>404 Not Found</title></head>\n<body><h1>404</h1><p>Sorry, we can't find the "
    b"page you are looking for.</p></body>\n</html>\n"
)
# Types the mimetypes module gets wrong or lacks on a bare base image (no /etc/mime.types).
EXTRA_TYPES = {
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".css": "text/css",
    ".json": "application/json",
    ".map": "application/json",
    ".wasm": "application/wasm",
    ".svg": "image/svg+xml",
    ".webp": "image/webp",
    ".avif": "image/avif",
    ".ico": "image/x-icon",
    ".webmanifest": "application/manifest+json",
    ".woff": "font/woff",
    ".woff2": "font/woff2",
    ".ttf": "font/ttf",
    ".otf": "font/otf",
    ".md": "text/markdown",
    ".txt": "text/plain",
    ".glb": "model/gltf-binary",
    ".gltf": "model/gltf+json",
}
TEXT_TYPES = ("text/", "application/javascript", "application/json", "image/svg+xml")


class Handler(http.server.SimpleHTTPRequestHandler):
    index = "index.html"
    server_version = "static"
    sys_version = ""
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, **EXTRA_TYPES}

    def send_head(self):  # noqa: ANN201 - the base class's protocol: a file object or None
        url = urllib.parse.urlsplit(self.path)
        path = urllib.parse.unquote(url.path)
        if path in ("", "/"):
            path = "/" + self.index
        parts = [part for part in path.split("/") if part]
        if any(part.startswith(".") or "\\" in part or "\0" in part for part in parts):
            return self.not_found()
        root = os.path.realpath(self.directory)
        target = os.path.realpath(os.path.join(root, *parts))
        if target != root and not target.startswith(root + os.sep):
            return self.not_found()  # a link out of the site
        if os.path.isdir(target):
            page = os.path.join(target, "index.html")
            if not os.path.isfile(page):
                return self.not_found()  # no directory listings
            if not path.endswith("/"):
                self.send_response(301)
                location = urllib.parse.quote(path) + "/" + (f"?{url.query}" if url.query else "")
                self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return None
            target = page
        if not os.path.isfile(target):
            return self.not_found()
        try:
            handle = open(target, "rb")  # noqa: SIM115 - the base class closes it
        except OSError:
            return self.not_found()
        stat = os.fstat(handle.fileno())
        content_type = self.guess_type(target)
        if content_type.startswith(TEXT_TYPES) and "charset" not in content_type:
            content_type += "; charset=utf-8"
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(stat.st_size))
        self.send_header("Last-Modified", email.utils.formatdate(stat.st_mtime, usegmt=True))
        self.end_headers()
        return handle

    def not_found(self) -> None:
        self.send_response(404)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(NOT_FOUND_PAGE)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(NOT_FOUND_PAGE)
        return None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--index", default="index.html")
    args = parser.parse_args()
    Handler.index = args.index
    handler = functools.partial(Handler, directory=".")
    http.server.ThreadingHTTPServer(("0.0.0.0", args.port), handler).serve_forever()


if __name__ == "__main__":
    main()
