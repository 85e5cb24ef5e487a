"""Old ids after move_repo, as on the Hub: a URL naming a Space by an id it had before a
move answers `307 Temporary Redirect` to the same URL with its current id, relative (no
host), so huggingface_hub follows it for API calls and for the HEAD of a download (it
follows only same-host redirects there), git for its first request, and the method and
body of a POST are kept. Only for callers who can see the Space: for anyone else the old
id is as missing as any other (404 RepoNotFound).

The old ids are registry's SpaceNameAlias rows; the host labels of the app have their own
redirect (gateway, SpaceHostAlias).
"""

from __future__ import annotations

from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import Response

from orchestrator.api.errors import error_response, repo_not_found
from orchestrator.core.models import Space

REDIRECT = 307


class SpaceMoved(Exception):  # noqa: N818 - an answer, not an error
    """`owner/name` is an old id of `space` (raised by deps.visible_space)."""

    def __init__(self, owner: str, name: str, space: Space) -> None:
        super().__init__(f"{owner}/{name} is now {space.full_name}")
        self.owner, self.name, self.space = owner, name, space


def moved_location(raw_path: str, query: str, old: tuple[str, str], space: Space) -> str | None:
    """The path (and query) with the old id's two segments after `spaces` replaced by the
    Space's current ones (a `.git` suffix kept), or None when the path does not name the
    old id there (a route that takes the id from its body: nothing to redirect)."""
    segments = raw_path.split("/")
    if "spaces" not in segments:
        return None
    at = segments.index("spaces") + 1
    if len(segments) < at + 2:
        return None
    owner, repo = segments[at], segments[at + 1]
    suffix = ".git" if repo.endswith(".git") else ""
    if (owner.lower(), repo.removesuffix(".git").lower()) != (old[0].lower(), old[1].lower()):
        return None
    segments[at : at + 2] = [quote(space.owner), quote(space.name) + suffix]
    return "/".join(segments) + (f"?{query}" if query else "")


def redirect(request: Request, owner: str, name: str, space: Space) -> Response:
    raw = (request.scope.get("raw_path") or request.url.path.encode()).decode("latin-1")
    location = moved_location(raw, request.url.query, (owner, name), space)
    if location is None:
        not_found = repo_not_found(f"{owner}/{name}")
        return error_response(404, str(not_found.detail), headers=not_found.headers)
    return Response(status_code=REDIRECT, headers={"Location": location})


def install(app: FastAPI) -> None:
    @app.exception_handler(SpaceMoved)
    async def space_moved(request: Request, exc: SpaceMoved) -> Response:
        return redirect(request, exc.owner, exc.name, exc.space)
