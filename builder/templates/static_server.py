"""The static server of sdk: static Spaces: serves the working directory, with the Space's
app_file as the page for "/". Standard library only, so it runs on any Python base."""

import argparse
import functools
import http.server


class Handler(http.server.SimpleHTTPRequestHandler):
    index = "index.html"

    def send_head(self):  # noqa: ANN201
        if self.path.split("?", 1)[0] in ("", "/"):
            self.path = "/" + self.index
        return super().send_head()


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
