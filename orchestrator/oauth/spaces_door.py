"""The sign-in provider's door for Spaces: how a Space's own server reaches the provider's
machine endpoints when it can't reach the public URL.

A Space with `hf_oauth: true` runs authlib on its server: it fetches the discovery
document, trades its code at the token endpoint and reads the signing keys, all from
OPENID_PROVIDER_URL. With the embedded default the public URL is loopback
(http://localhost:8000), which inside a container is the container itself, and the host's
firewall keeps Spaces off the host. So `spaceport up` asks the backend to open one port on
the Spaces network's gateway address (sandbox Backend.open_spaces_door: the API's own port,
on an address only Spaces reach), the API server listens there too, and `SpacesDoor` lets
through that address nothing but DOOR_PATHS. Spaces are then given
SPACEPORT_SPACES_PROVIDER_URL as OPENID_PROVIDER_URL; the discovery document read through
the door names the door for the machine endpoints and the public URL for the browser's
(authorization) one. With a public URL Spaces can reach, no door is opened.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import socket
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from orchestrator.core.settings import Settings

log = logging.getLogger(__name__)
DOOR_PATHS = frozenset(
    {"/.well-known/openid-configuration", "/oauth/token", "/oauth/userinfo", "/oauth/jwks"}
)
SCOPE_KEY = "spaceport.spaces_door"  # set on a request that came in through the door


def door_host(settings: Settings) -> str | None:
    """The address the door listens on: SPACEPORT_SPACES_PROVIDER_URL's host when it is an
    IP address (the one `spaceport up` sets); a name is a Service reached some other way."""
    if not settings.spaces_provider_url:
        return None
    host = urlsplit(settings.spaces_provider_url).hostname or ""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return None


def public_url_is_loopback(settings: Settings) -> bool:
    host = urlsplit(settings.public_url).hostname or ""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def provider_url(settings: Settings) -> str:
    """OPENID_PROVIDER_URL as a Space is given it."""
    return (settings.spaces_provider_url or settings.public_url).rstrip("/")


def came_through_door(scope: Scope) -> bool:
    return bool(scope.get(SCOPE_KEY))


class SpacesDoor:
    """Around the whole app: a request that arrived on the door's address reaches only
    DOOR_PATHS (marked with SCOPE_KEY); anything else there is a 404, so a Space can use the
    door for its sign-in and for nothing else of the platform."""

    def __init__(self, app: ASGIApp, host: str) -> None:
        self.app, self.host = app, host

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        server = scope.get("server")
        if scope["type"] not in ("http", "websocket") or not server or server[0] != self.host:
            await self.app(scope, receive, send)
            return
        if scope["type"] == "http" and scope["path"] in DOOR_PATHS:
            await self.app({**scope, SCOPE_KEY: True}, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        body = json.dumps({"error": "Only the sign-in provider is served here"}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 404,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})


def bind_door(host: str, port: int) -> list[socket.socket]:
    """The door's listening socket for the API server, or none (with a warning) when the
    address can't be bound here: Spaces' sign-in then fails, the rest works."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        log.warning(
            "sign-in door %s:%s not opened (%s): Spaces can't sign people in", host, port, exc
        )
        return []
    sock.set_inheritable(True)
    return [sock]


def open_for_up(settings: Settings, port: int) -> str | None:
    """`spaceport up`'s door, when Spaces can't reach the public URL: the backend lets them
    reach `port` on an address of its own, and SPACEPORT_SPACES_PROVIDER_URL names it for
    the API server (which listens there too) and the controller (which tells Spaces)."""
    if settings.backend != "docker" or settings.spaces_provider_url:
        return None
    if not public_url_is_loopback(settings):
        return None
    from orchestrator.core.backends import make_backend

    address = make_backend(settings).open_spaces_door(port)
    if address is None:
        return None
    host = f"[{address}]" if ":" in address else address
    return f"http://{host}:{port}"


def close_for_up(settings: Settings, port: int) -> None:
    from orchestrator.core.backends import make_backend

    make_backend(settings).close_spaces_door(port)
