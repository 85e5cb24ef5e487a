"""/spaces/{owner}/{name}/duplicate: the Duplicate dialog. It asks what the Hub's does: the
copy's owner and name, visibility, hardware (free by default) and a value for each of the
source's secrets (their names only are shown: values never leave the source); the source's
variables come filled in. Made by api/repos.duplicate_space, as
`huggingface_hub.duplicate_space` makes one (see web/space_forms.py); then the copy's page.

The secrets' fields are named `secret.KEY`, `variable.KEY` the variables': one per key the
source has, so their number is bounded by the source's own limits.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from sqlmodel import Session, col, select
from starlette.datastructures import FormData

from orchestrator.api import repos as repos_api
from orchestrator.api.errors import HubError
from orchestrator.core.auth import Principal
from orchestrator.core.db import get_session
from orchestrator.core.models import Secret, Space, Variable
from orchestrator.web import space_forms
from orchestrator.web.errors import not_found, sign_in_redirect
from orchestrator.web.render import done, page
from orchestrator.web.space_page import find, space_head
from orchestrator.web.viewer import form_sender, page_viewer

router = APIRouter(include_in_schema=False)
SECRET_FIELD = "secret."
VARIABLE_FIELD = "variable."


def _secret_names(session: Session, space: Space) -> list[tuple[str, str]]:
    """(key, description) of the source's secrets; the values are not even read."""
    rows = session.exec(
        select(Secret.key, Secret.description)
        .where(Secret.space_id == space.id)
        .order_by(col(Secret.key))
    )
    return [(key, description or "") for key, description in rows]


def _variables(session: Session, space: Space) -> list[Variable]:
    return list(
        session.exec(
            select(Variable).where(Variable.space_id == space.id).order_by(col(Variable.key))
        )
    )


async def _all_fields(request: Request) -> FormData:
    """The form as parsed (starlette keeps it): the per-secret fields have no fixed names."""
    return await request.form()


def _form(
    request: Request,
    session: Session,
    viewer: Principal,
    source: Space,
    access: Any,
    values: dict[str, str],
    error: str = "",
    status: int = 200,
) -> HTMLResponse:
    return page(
        request,
        "duplicate.html",
        viewer,
        status_code=status,
        head=space_head(session, viewer, source, access, "duplicate"),
        owners=space_forms.owner_choices(viewer),
        hardware=space_forms.hardware_choices(),
        visibilities=space_forms.VISIBILITIES,
        secrets=_secret_names(session, source),
        variables=_variables(session, source),
        values=values,
        error=error,
        name_max=space_forms.NAME_MAX,
    )


@router.get("/spaces/{owner}/{name}/duplicate", response_class=HTMLResponse)
def duplicate_form(
    request: Request,
    owner: str,
    name: str,
    session: Session = Depends(get_session),
    viewer: Principal | None = Depends(page_viewer),
) -> Response:
    source, access, _moved = find(session, viewer, owner, name)
    if source is None:
        return not_found(request, viewer, "Space")
    if viewer is None:
        return sign_in_redirect(request.url.path)
    values = {
        "owner": viewer.user.name,
        "name": source.name,
        "visibility": source.visibility,
        "hardware": "cpu-basic",
    }
    return _form(request, session, viewer, source, access, values)


@router.post("/spaces/{owner}/{name}/duplicate")
def duplicate(
    request: Request,
    owner: str,
    name: str,
    new_owner: str = Form(default="", max_length=space_forms.NAME_MAX),
    new_name: str = Form(default="", max_length=200),
    visibility: str = Form(default="public", max_length=16),
    hardware: str = Form(default="cpu-basic", max_length=64),
    fields: FormData = Depends(_all_fields),
    session: Session = Depends(get_session),
    sender: Principal = Depends(form_sender),
) -> Response:
    source, access, _moved = find(session, sender, owner, name)
    if source is None:
        return not_found(request, sender, "Space")
    values = {
        "owner": new_owner or sender.user.name,
        "name": space_forms.clean_name(new_name),
        "visibility": visibility,
        "hardware": hardware,
    }
    if not values["name"]:
        return _form(request, session, sender, source, access, values, "Name the copy.", 400)
    # Only the source's keys are taken: a stray field can't add a secret or a variable.
    secrets = [
        {"key": key, "value": str(fields.get(SECRET_FIELD + key, ""))}
        for key, _description in _secret_names(session, source)
        if fields.get(SECRET_FIELD + key)
    ]
    variables = [
        {"key": row.key, "value": str(fields.get(VARIABLE_FIELD + row.key, row.value))}
        for row in _variables(session, source)
    ]
    body: dict[str, Any] = {
        "repository": f"{values['owner']}/{values['name']}",
        "private": visibility == "private",
        "hardware": hardware,
        "secrets": secrets,
        "variables": variables,
    }
    try:
        made = repos_api.duplicate_space(source.owner, source.name, request, body, session, sender)
    except HubError as refused:
        session.rollback()
        return _form(
            request,
            session,
            sender,
            source,
            access,
            values,
            str(refused.detail),
            refused.status_code,
        )
    if isinstance(made, JSONResponse):  # 409: it exists already
        taken = f"{values['owner']}/{values['name']} already exists: pick another name."
        return _form(request, session, sender, source, access, values, taken, 409)
    return done(f"/spaces/{made.name}", f"{made.name} is a copy of {source.full_name}.")
