"""Followed streams (logs, events), bounded: a few per Space, per client address and in
all. Each slot is released when its stream ends or its client leaves
(orchestrator/api/sse.py), and a run log's reading thread has ended by then
(sandbox/log_stream.py), so a client can't pile up threads by reconnecting.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Request

from orchestrator.api.errors import HubError
from orchestrator.core.limits import TOO_MANY, KeyedLimiter, TooMany
from orchestrator.core.models import Space
from orchestrator.core.settings import get_settings

_followers = KeyedLimiter()


def take_slot(request: Request, space: Space) -> Callable[[], None]:
    """A follower's slot for one of `space`'s streams, or a 429 that names the limit."""
    return take(request, f"space:{space.uid}", f"{space.full_name}'s logs")


def take(request: Request, key: str, what: str) -> Callable[[], None]:
    """A follower's slot under `key` (at most MAX_LOG_FOLLOWERS_PER_SPACE followers each),
    your address's and everyone's; `what` names the stream in the 429."""
    settings = get_settings()
    client = request.client.host if request.client else "unknown"
    limits = {
        key: settings.max_log_followers_per_space,
        f"client:{client}": settings.max_log_followers_per_client,
        "all": settings.max_log_followers,
    }
    try:
        return _followers.acquire(limits)
    except TooMany as exc:
        named = {
            key: (what, "MAX_LOG_FOLLOWERS_PER_SPACE"),
            f"client:{client}": ("logs from your address", "MAX_LOG_FOLLOWERS_PER_CLIENT"),
            "all": ("logs on this server", "MAX_LOG_FOLLOWERS"),
        }[exc.key]
        raise HubError(
            429,
            f"Too many clients are following {named[0]} (at most {exc.limit} at once, "
            f"SPACEPORT_{named[1]}); close another log stream or try again later",
            TOO_MANY,
        ) from exc


def held(key: str) -> int:
    return _followers.held(key)
