"""Who a visitor is, for the visitor queue: their place belongs to them, not to a connection.

A browser gets a cookie holding a random id and its HMAC (the installation's Space-token key,
orchestrator/spaces/tokens.py, so every gateway replica checks what any other signed),
scoped to the Space's host and bound to the Space's uid: a reload keeps the place, a forged
or copied cookie is a new visitor. The name starts with `spaceport`, so the gateway never
passes it to the app and the app cannot set it (gateway/credentials.py).

A client that keeps no cookies (gradio_client, curl) is named by its address, hashed the
same way, so its requests count as one visitor instead of taking a slot each. Clients
behind one address share that place: the queue errs on letting API clients through, since
browsers are the visitors it orders.

A Space's page embeds the app in a frame from the Space's own host, which is another site
than the page's. Over HTTPS the cookie is `SameSite=None; Secure; Partitioned` so the frame
keeps it (partitioned: that place exists only under the page that embeds it). Over plain
HTTP a browser neither keeps a Lax cookie in a cross-site frame nor accepts SameSite=None
without Secure, so the gateway names such a frame by its address, as a client without
cookies (visitor_admission._visitor).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from orchestrator.core.settings import Settings, get_settings
from orchestrator.spaces import tokens as space_tokens

COOKIE = "spaceport-visitor"
COOKIE_SECONDS = 24 * 3600  # a place outlives a day's reloads; an idle one is gone sooner
ID_BYTES = 16
MAX_COOKIE_CHARS = 128  # longer values are not ours: not even worth an HMAC


_key_of: tuple[Settings, bytes] | None = None  # the settings it was read for, and the key


def _key() -> bytes:
    """The signing key, read once per settings object (tests change homes): every request
    verifies a cookie, and building the key file's path each time cost more than the HMAC."""
    global _key_of
    settings = get_settings()
    if _key_of is None or _key_of[0] is not settings:
        _key_of = (settings, space_tokens.signing_key())
    return _key_of[1]


def _mac(space_uid: str, visitor_id: str) -> str:
    message = f"visitor:{space_uid}:{visitor_id}".encode()
    digest = hmac.digest(_key(), message, hashlib.sha256)
    return base64.urlsafe_b64encode(digest[:16]).decode().rstrip("=")


def new_id() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(ID_BYTES)).decode().rstrip("=")


def cookie_value(space_uid: str, visitor_id: str) -> str:
    return f"{visitor_id}.{_mac(space_uid, visitor_id)}"


def verified_id(space_uid: str, value: str) -> str | None:
    """The visitor id in a cookie value this installation signed for this Space; else None."""
    if len(value) > MAX_COOKIE_CHARS:
        return None
    visitor_id, dot, mac = value.partition(".")
    if not dot or not visitor_id:
        return None
    return visitor_id if hmac.compare_digest(mac, _mac(space_uid, visitor_id)) else None


def cookieless_id(space_uid: str, address: str) -> str:
    """A stable id for a client that sends no cookie: the same for each of its requests."""
    return "c-" + _mac(space_uid, f"address:{address}")


def set_cookie(space_uid: str, visitor_id: str, secure: bool) -> str:
    attributes = [
        f"{COOKIE}={cookie_value(space_uid, visitor_id)}",
        f"Max-Age={COOKIE_SECONDS}",
        "Path=/",
        "HttpOnly",
    ]
    if secure:
        # Sent from a Space page's frame too, whose site is not the Space's: partitioned
        # (CHIPS), so it is this place only under the page that embeds it.
        attributes += ["SameSite=None", "Secure", "Partitioned"]
    else:
        attributes.append("SameSite=Lax")  # SameSite=None needs Secure
    # No Domain attribute: the cookie goes back to this Space's host only.
    return "; ".join(attributes)
