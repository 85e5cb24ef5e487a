"""The Settings tab's forms (web/settings_page.py shows them): each takes its fields, calls
the domain function the API route calls for the same change, and answers with the tab and
a notice; a refusal shows the tab again with the reason, in words, beside that form.

Who may send them is the tab's rule (settings_page.writable: write access), checked on
every form, since a form can be sent without the page. A secret's value is only passed on:
no notice, refusal or page ever holds it.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import Response
from sqlmodel import Session

from orchestrator.api.errors import HubError
from orchestrator.billing.accounts import OutOfCredit
from orchestrator.core import organizations as orgs
from orchestrator.core.auth import Principal, may_move_into
from orchestrator.core.db import get_session
from orchestrator.core.models import Secret, Space, Variable, Visibility
from orchestrator.spaces import lifecycle, visitor_limit
from orchestrator.spaces.lifecycle import EnvKind
from orchestrator.volumes import lifecycle as volume_lifecycle
from orchestrator.volumes import spec as volume_spec
from orchestrator.web.render import done
from orchestrator.web.settings_page import (
    MAX_VALUE,
    Refusal,
    settings_url,
    settings_view,
    writable,
)
from orchestrator.web.viewer import form_sender
from sandbox.hardware import UnknownHardware

router = APIRouter(include_in_schema=False)
BASE = "/spaces/{owner}/{name}/settings"
MAX_KEY = 128  # the secret and variable tables' key column (api/bodies.KeyName)
MAX_DESCRIPTION = 500
MAX_NAME = 96  # the Hub's longest repo name
MAX_PATH = 256  # volumes/spec.py's longest source or mount path


class Refused(Exception):
    """A form's fields that can't be taken as they are; the message says why."""

    def __init__(self, message: str, status_code: int = 400) -> None:
        super().__init__(message)
        self.status_code = status_code


# What a form does to the Space: its notice on success, else one of the errors below.
Change = Callable[[Space], str]


def _apply(
    request: Request,
    session: Session,
    sender: Principal,
    owner: str,
    name: str,
    section: str,
    change: Change,
    then: Callable[[Space], str] = settings_url,
) -> Response:
    """Carry out `change` on the Space the sender writes to, then go to `then(space)` with
    its notice; or show the tab again with why it was refused (nothing written)."""
    found = writable(request, session, sender, owner, name)
    if isinstance(found, Response):
        return found
    space, access = found
    try:
        notice = change(space)
    except OutOfCredit as exc:
        refusal = Refusal(section, str(exc), credit_link=True)
        status_code = 402
    except volume_spec.VolumeError as exc:
        refusal, status_code = Refusal(section, str(exc)), exc.status
    except Refused as exc:
        refusal, status_code = Refusal(section, str(exc)), exc.status_code
    except HubError as exc:  # a limit the domain checks with the API's error (build room)
        refusal, status_code = Refusal(section, str(exc.detail)), exc.status_code
    except (lifecycle.LifecycleError, UnknownHardware) as exc:
        refusal, status_code = Refusal(section, str(exc)), 400
    else:
        return done(then(space), notice)
    session.rollback()  # whatever the change had begun
    session.refresh(space)
    return settings_view(request, session, sender, space, access, refusal, status_code)


def _limited(value: str, most: int, what: str) -> str:
    if len(value) > most:
        raise Refused(f"{what} has at most {most} characters")
    return value


@router.post(BASE + "/hardware")
def change_hardware(
    request: Request,
    owner: str,
    name: str,
    flavor: str = Form(default=""),
    session: Session = Depends(get_session),
    sender: Principal = Depends(form_sender),
) -> Response:
    def change(space: Space) -> str:
        if not flavor:
            raise Refused("Choose a hardware tier.")
        tier = _limited(flavor, MAX_NAME, "A tier's name")
        before = space.requested_hardware
        lifecycle.request_hardware(session, space, tier, actor=sender.user.name)
        if space.requested_hardware == before:
            return f"{space.full_name} asks for {before} already: nothing changed."
        return f"{space.full_name} asked for {space.requested_hardware}: it restarts on it."

    return _apply(request, session, sender, owner, name, "hardware", change)


@router.post(BASE + "/sleep")
def change_sleep_time(
    request: Request,
    owner: str,
    name: str,
    seconds: str = Form(default=""),
    session: Session = Depends(get_session),
    sender: Principal = Depends(form_sender),
) -> Response:
    def change(space: Space) -> str:
        try:
            value = int(seconds[:12])
        except ValueError:
            raise Refused("Choose a sleep time from the list.") from None
        lifecycle.set_sleep_time(session, space, value, actor=sender.user.name)
        return f"The sleep time of {space.full_name} is set."

    return _apply(request, session, sender, owner, name, "sleep", change)


@router.post(BASE + "/concurrency")
def change_concurrency(
    request: Request,
    owner: str,
    name: str,
    concurrency: str = Form(default=""),
    session: Session = Depends(get_session),
    sender: Principal = Depends(form_sender),
) -> Response:
    def change(space: Space) -> str:
        text = concurrency.strip()[:12]
        try:
            value = int(text) if text else None
        except ValueError:
            raise Refused(
                "Visitor concurrency is a whole number, or empty for the hardware's own."
            ) from None
        visitor_limit.set_visitor_concurrency(session, space, value, actor=sender.user.name)
        session.commit()
        if value is None:
            return f"{space.full_name} lets in as many visitors at once as its hardware does."
        return f"{space.full_name} lets in {value} visitors at once."

    return _apply(request, session, sender, owner, name, "concurrency", change)


@router.post(BASE + "/visibility")
def change_visibility(
    request: Request,
    owner: str,
    name: str,
    visibility: str = Form(default=""),
    session: Session = Depends(get_session),
    sender: Principal = Depends(form_sender),
) -> Response:
    def change(space: Space) -> str:
        if visibility not in (Visibility.PUBLIC.value, Visibility.PRIVATE.value):
            raise Refused("A Space is public or private.")
        lifecycle.set_visibility(session, space, Visibility(visibility), actor=sender.user.name)
        return f"{space.full_name} is {visibility} now."

    return _apply(request, session, sender, owner, name, "visibility", change)


def _set_env(kind: EnvKind, section: str, words: str) -> Callable[..., Response]:
    """The add-or-replace form of secrets or of variables (lifecycle.upsert)."""

    def route(
        request: Request,
        owner: str,
        name: str,
        key: str = Form(default=""),
        value: str = Form(default=""),
        description: str = Form(default=""),
        session: Session = Depends(get_session),
        sender: Principal = Depends(form_sender),
    ) -> Response:
        def change(space: Space) -> str:
            name_of = _limited(key.strip(), MAX_KEY, "A name")
            _limited(value, MAX_VALUE, "A value")
            about = _limited(description.strip(), MAX_DESCRIPTION, "A description")
            lifecycle.upsert(
                session, space, kind, name_of, value, about or None, actor=sender.user.name
            )
            return f"{words} {name_of} is set: {space.full_name} restarts with it."

        return _apply(request, session, sender, owner, name, section, change)

    return route


def _delete_env(kind: EnvKind, section: str, words: str) -> Callable[..., Response]:
    """The delete button of one secret or variable (lifecycle.remove)."""

    def route(
        request: Request,
        owner: str,
        name: str,
        key: str = Form(default=""),
        session: Session = Depends(get_session),
        sender: Principal = Depends(form_sender),
    ) -> Response:
        def change(space: Space) -> str:
            name_of = _limited(key, MAX_KEY, "A name")
            lifecycle.remove(session, space, kind, name_of, actor=sender.user.name)
            return f"{words} {name_of} is deleted: {space.full_name} restarts without it."

        return _apply(request, session, sender, owner, name, section, change)

    return route


router.post(BASE + "/secrets")(_set_env(Secret, "secrets", "Secret"))
router.post(BASE + "/secrets/delete")(_delete_env(Secret, "secrets", "Secret"))
router.post(BASE + "/variables")(_set_env(Variable, "variables", "Variable"))
router.post(BASE + "/variables/delete")(_delete_env(Variable, "variables", "Variable"))


@router.post(BASE + "/volumes")
def mount_bucket(
    request: Request,
    owner: str,
    name: str,
    bucket: str = Form(default=""),
    mount_path: str = Form(default=""),
    read_only: str = Form(default=""),
    session: Session = Depends(get_session),
    sender: Principal = Depends(form_sender),
) -> Response:
    def change(space: Space) -> str:
        source = _limited(bucket.strip(), MAX_PATH, "A bucket's name")
        path = _limited(mount_path.strip(), MAX_PATH, "A mount path")
        # The whole new list, checked as the API's set_space_volumes checks it (sizes,
        # overlaps, that the sender and the Space's owner may use each source).
        wanted = [v.to_wire() for v in volume_spec.stored(space)]
        wanted.append(
            {"type": "bucket", "source": source, "mountPath": path, "readOnly": bool(read_only)}
        )
        volumes = volume_spec.parse(session, sender, space, wanted)
        volume_lifecycle.set_volumes(session, space, volumes, actor=sender.user.name)
        return f"{source} is mounted at {path}: {space.full_name} restarts with it."

    return _apply(request, session, sender, owner, name, "volumes", change)


@router.post(BASE + "/volumes/delete")
def unmount(
    request: Request,
    owner: str,
    name: str,
    mount_path: str = Form(default=""),
    session: Session = Depends(get_session),
    sender: Principal = Depends(form_sender),
) -> Response:
    def change(space: Space) -> str:
        kept = [v for v in volume_spec.stored(space) if v.mount_path != mount_path]
        if len(kept) == len(volume_spec.stored(space)):
            raise Refused("Nothing is mounted there (any more).", 404)
        # Fewer mounts need no new check: set as the API's delete does.
        volume_lifecycle.set_volumes(session, space, kept, actor=sender.user.name)
        return f"Nothing is mounted at {mount_path} now: {space.full_name} restarts."

    return _apply(request, session, sender, owner, name, "volumes", change)


@router.post(BASE + "/pause")
def pause(
    request: Request,
    owner: str,
    name: str,
    session: Session = Depends(get_session),
    sender: Principal = Depends(form_sender),
) -> Response:
    def change(space: Space) -> str:
        lifecycle.pause(session, space, actor=sender.user.name)
        return f"{space.full_name} is paused: restart it to run it again."

    return _apply(request, session, sender, owner, name, "run", change)


@router.post(BASE + "/restart")
def restart(
    request: Request,
    owner: str,
    name: str,
    factory: str = Form(default=""),
    session: Session = Depends(get_session),
    sender: Principal = Depends(form_sender),
) -> Response:
    def change(space: Space) -> str:
        lifecycle.restart(session, space, factory=bool(factory), actor=sender.user.name)
        if factory:
            return f"{space.full_name} is being rebuilt from scratch."
        return f"{space.full_name} is restarting."

    return _apply(request, session, sender, owner, name, "run", change)


@router.post(BASE + "/move")
def move(
    request: Request,
    owner: str,
    name: str,
    namespace: str = Form(default=""),
    new_name: str = Form(default=""),
    session: Session = Depends(get_session),
    sender: Principal = Depends(form_sender),
) -> Response:
    def change(space: Space) -> str:
        old = space.full_name
        target = _limited(namespace.strip(), MAX_NAME, "An owner's name") or space.owner
        wanted = _limited(new_name.strip(), MAX_NAME, "A name")
        if (target, wanted) == (space.owner, space.name):
            raise Refused(f"{space.full_name} has that name already: nothing to rename.")
        new_owner = orgs.find_name(session, target)  # a user or an organisation
        # The API's rule (api/repos.move_repo): write access where it goes.
        if new_owner is None or not may_move_into(sender, target):
            raise Refused(f"You can't move Spaces into {target!r}.", 403)
        try:
            lifecycle.move(session, space, new_owner, wanted, actor=sender.user.name)
        except lifecycle.LifecycleError as exc:  # taken, or not a name: the API's 409
            raise Refused(str(exc), 409) from exc
        return f"{old} is {space.full_name} now; its old name redirects here."

    return _apply(request, session, sender, owner, name, "move", change)


@router.post(BASE + "/delete")
def delete(
    request: Request,
    owner: str,
    name: str,
    confirm: str = Form(default=""),
    session: Session = Depends(get_session),
    sender: Principal = Depends(form_sender),
) -> Response:
    owner_page = ""  # read before the row goes: the owner's page is where one lands

    def change(space: Space) -> str:
        nonlocal owner_page
        if confirm.strip() != space.full_name:
            raise Refused(f"Type {space.full_name} exactly to delete it: nothing was deleted.")
        owner_page, full_name = f"/{space.owner}", space.full_name
        lifecycle.delete(session, space, actor=sender.user.name)
        return f"{full_name} is deleted."

    return _apply(
        request, session, sender, owner, name, "delete", change, then=lambda _gone: owner_page
    )
