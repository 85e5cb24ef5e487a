"""Finding and creating Spaces: the one place that keeps a Space's row and its git repo in
step."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, select

from orchestrator.core import events
from orchestrator.core.auth import valid_name
from orchestrator.core.hostnames import choose_label
from orchestrator.core.models import Space, SpaceHostAlias, SpaceNameAlias, User, Visibility
from orchestrator.core.settings import get_settings
from orchestrator.repos import store as repos


class SpaceNameError(ValueError):
    pass


def get_space(session: Session, owner: str, name: str) -> Space | None:
    """The Space `owner/name`, compared regardless of case as on the Hub (a unique index on
    the lower-cased pair keeps it to one); it keeps the spelling it was created with."""
    return session.exec(
        select(Space).where(
            func.lower(Space.owner) == owner.lower(), func.lower(Space.name) == name.lower()
        )
    ).first()


def _alias(session: Session, owner: str, name: str) -> SpaceNameAlias | None:
    return session.exec(
        select(SpaceNameAlias).where(
            func.lower(SpaceNameAlias.owner) == owner.lower(),
            func.lower(SpaceNameAlias.name) == name.lower(),
        )
    ).first()


def moved_space(session: Session, owner: str, name: str) -> Space | None:
    """The Space that was `owner/name` before move_repo (its old id redirects there), when
    no Space has that id now."""
    alias = _alias(session, owner, name)
    return session.get(Space, alias.space_id) if alias is not None else None


def keep_old_name(session: Session, space: Space, owner: str, name: str) -> None:
    """Before a move of `space` to `owner/name`: its current id becomes an alias, and the
    new id stops being one (of this Space or another). Not committed."""
    if (taken := _alias(session, owner, name)) is not None:
        session.delete(taken)
    same = (space.owner.lower(), space.name.lower()) == (owner.lower(), name.lower())
    if not same and _alias(session, space.owner, space.name) is None:
        session.add(SpaceNameAlias(owner=space.owner, name=space.name, space_id=space.id or 0))
    session.flush()


def take_name(session: Session, owner: str, name: str) -> None:
    """A new Space takes `owner/name`: the old id of another Space no longer redirects."""
    if (alias := _alias(session, owner, name)) is not None:
        session.delete(alias)
        session.flush()


def create_space(
    session: Session,
    owner: User,
    name: str,
    *,
    sdk: str | None = None,
    visibility: Visibility = Visibility.PUBLIC,
    hardware: str = "cpu-basic",
    duplicated_from: str | None = None,
    actor: str | None = None,
) -> Space:
    """The row, its space.created event (by ``actor``, the owner unless told) and its
    empty bare repo, all or nothing: committed only once the repo exists."""
    if not valid_name(name):
        raise SpaceNameError(
            f"invalid Space name {name!r}: use letters, digits, '.', '_' and '-' "
            "(1-96 characters, not ending in .git)"
        )
    assert owner.id is not None
    take_name(session, owner.name, name)
    space = Space(
        owner=owner.name,
        name=name,
        host=choose_label(owner.name, name, lambda label: host_taken(session, label)),
        owner_id=owner.id,
        sdk=sdk,
        visibility=visibility,
        requested_hardware=hardware,
        duplicated_from=duplicated_from,
    )
    session.add(space)
    session.flush()  # its id, for the event; a name taken meanwhile fails here, repo untouched
    events.record(
        session,
        events.EventKind.SPACE_CREATED,
        actor or owner.name,
        space,
        visibility=str(visibility),
        hardware=hardware,
        duplicated_from=duplicated_from,
    )
    try:
        repos.init_bare(owner.name, name)
        session.commit()
    except Exception:
        session.rollback()
        repos.delete_repo(owner.name, name)
        raise
    session.refresh(space)
    return space


def space_url(space: Space) -> str:
    """The Space's URL on the Hub side: its git remote and the id the API returns (the app
    itself is served on its own subdomain, see app_url)."""
    return f"{get_settings().public_url.rstrip('/')}/spaces/{space.owner}/{space.name}"


def host_taken(session: Session, label: str) -> bool:
    """Whether a Space is served under `label`, or was before a rename (it redirects)."""
    if session.exec(select(Space.id).where(Space.host == label)).first() is not None:
        return True
    return session.get(SpaceHostAlias, label) is not None


def rehost(session: Session, space: Space, owner: str, name: str) -> bool:
    """Give a Space that is being renamed to `owner/name` the label that name asks for (a
    hashed one where that is taken); the old label becomes an alias that redirects to the
    new one. Its own old labels are free to take back. Not committed; True when the label
    changed."""
    old = space.host

    def taken(label: str) -> bool:
        if label == old:
            return False
        if session.exec(select(Space.id).where(Space.host == label)).first() is not None:
            return True
        alias = session.get(SpaceHostAlias, label)
        return alias is not None and alias.space_id != space.id

    new = choose_label(owner, name, taken)
    if new == old:
        return False
    if (reclaimed := session.get(SpaceHostAlias, new)) is not None:
        session.delete(reclaimed)
    session.add(SpaceHostAlias(host=old, space_id=space.id or 0))
    space.host = new
    session.add(space)
    return True


def subdomain(space: Space) -> str:
    """The Space's stored host label: the only source of its host, everywhere."""
    return space.host


def app_url(space: Space) -> str:
    scheme = get_settings().public_url.split("://", 1)[0]
    return f"{scheme}://{subdomain(space)}.{get_settings().spaces_domain}"


def front_matter(space: Space) -> dict[str, Any]:
    """The README front matter the Space was last pushed with (its `card_data`), as a dict;
    empty when there is none or it can't be read."""
    try:
        data = json.loads(space.card_data) if space.card_data else {}
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
