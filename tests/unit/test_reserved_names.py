"""A user or organisation never takes a name the site's own routes start with: its page
(/{name}) would be shadowed by the route (GET /settings is the settings page, not a user)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
from sqlmodel import Session

from orchestrator.core import auth, db, organizations


def _paths(routes: Iterable[object], prefix: str = "") -> Iterator[str]:
    """Every route's path, through included routers (FastAPI keeps them nested)."""
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            context = getattr(route, "include_context", None)
            yield from _paths(included.routes, prefix + (getattr(context, "prefix", "") or ""))
        else:
            yield prefix + str(getattr(route, "path", ""))


def test_every_first_segment_of_the_routes_is_reserved() -> None:
    from orchestrator.app import create_api

    paths = list(_paths(create_api(migrate=False).routes))
    assert "/settings/tokens" in paths and "/api/spaces" in paths  # the walk finds them
    segments = {path.split("/")[1] for path in paths if path.startswith("/")}
    fixed = {s for s in segments if s and "{" not in s and auth.valid_name(s)}
    assert fixed <= auth.RESERVED_NAMES, fixed - auth.RESERVED_NAMES


def test_a_reserved_name_is_refused_for_users_and_organisations(migrated_home: Path) -> None:
    with Session(db.get_engine()) as session:
        with pytest.raises(ValueError, match="reserved"):
            auth.get_or_create_user(session, "Settings")
        admin = auth.get_or_create_user(session, "admin")
        with pytest.raises(organizations.OrgError, match="reserved"):
            organizations.create_org(session, "spaces", admin, actor="admin")
        assert auth.get_or_create_user(session, "settings-fan").name == "settings-fan"
