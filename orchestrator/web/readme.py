"""A Space's README as its page shows it: the front matter left out (the page shows what it
says), Markdown rendered by markdown-it-py with raw HTML off, and the result cleaned by nh3
anyway, so a README can't script the platform's pages. A discussion's comments are shown
with the same `markdown_html`."""

from __future__ import annotations

import functools

import nh3
from markdown_it import MarkdownIt

MAX_README_BYTES = 512 * 1024  # larger READMEs are shown cut here, with a note


@functools.cache
def _markdown() -> MarkdownIt:
    return MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table")


def body_of(text: str) -> str:
    """The README without its YAML front matter."""
    if text.startswith("---"):
        end = text.find("\n---", 3)
        if end != -1:
            after = text.find("\n", end + 4)
            return text[after + 1 :] if after != -1 else ""
    return text


def markdown_html(text: str) -> str:
    """Markdown a user wrote, as HTML safe to put in a page."""
    return nh3.clean(_markdown().render(text), link_rel="noopener noreferrer nofollow")


def render(raw: bytes) -> str:
    cut = len(raw) > MAX_README_BYTES
    text = raw[:MAX_README_BYTES].decode("utf-8", errors="replace")
    html = markdown_html(body_of(text))
    if cut:
        html += "<p><em>The README is longer than this page shows.</em></p>"
    return html
