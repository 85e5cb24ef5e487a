"""/new-space: the New Space form (the Hub's URL for it). A Space starts blank (the Hub's
default README, waiting for a first push) or from one of the templates in sample_spaces/
(spaces/templates.py), which builds at once. Made by api/repos.create_repo, as
`huggingface_hub.create_repo(repo_type="space")` makes one (see web/space_forms.py)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from sqlmodel import Session

from orchestrator.api import repos as repos_api
from orchestrator.api.errors import HubError
from orchestrator.core.auth import Principal
from orchestrator.core.db import get_session
from orchestrator.spaces import templates
from orchestrator.spaces.config import SDKS
from orchestrator.web import space_forms
from orchestrator.web.errors import sign_in_redirect
from orchestrator.web.render import done, page
from orchestrator.web.viewer import form_sender, page_viewer

router = APIRouter(include_in_schema=False)
PATH = "/new-space"
BLANK = ""  # the template field's value for "no template"


def _form(
    request: Request, viewer: Principal, values: dict[str, str], error: str = "", status: int = 200
) -> HTMLResponse:
    return page(
        request,
        "new_space.html",
        viewer,
        status_code=status,
        owners=space_forms.owner_choices(viewer),
        sdks=SDKS,
        templates=templates.available(),
        hardware=space_forms.hardware_choices(),
        visibilities=space_forms.VISIBILITIES,
        values=values,
        error=error,
        name_max=space_forms.NAME_MAX,
    )


@router.get(PATH, response_class=HTMLResponse)
def new_space_form(
    request: Request,
    template: str = BLANK,
    viewer: Principal | None = Depends(page_viewer),
) -> Response:
    if viewer is None:
        return sign_in_redirect(PATH)
    chosen = next((t for t in templates.available() if t.repo_id == template), None)
    values = {
        "owner": viewer.user.name,
        "name": "",
        "sdk": chosen.sdk if chosen else SDKS[0],
        "template": chosen.repo_id if chosen else BLANK,
        "hardware": "cpu-basic",
        "visibility": "public",
    }
    return _form(request, viewer, values)


@router.post(PATH)
def create_space(
    request: Request,
    owner: str = Form(default="", max_length=space_forms.NAME_MAX),
    name: str = Form(default="", max_length=200),
    sdk: str = Form(default="gradio", max_length=32),
    template: str = Form(default=BLANK, max_length=200),
    hardware: str = Form(default="cpu-basic", max_length=64),
    visibility: str = Form(default="public", max_length=16),
    session: Session = Depends(get_session),
    sender: Principal = Depends(form_sender),
) -> Response:
    values = {
        "owner": owner or sender.user.name,
        "name": space_forms.clean_name(name),
        "sdk": sdk,
        "template": template,
        "hardware": hardware,
        "visibility": visibility,
    }
    if not values["name"]:
        return _form(request, sender, values, "Give the Space a name.", 400)
    body: dict[str, Any] = {
        "type": "space",
        "name": values["name"],
        "sdk": sdk,
        "hardware": hardware,
        "visibility": visibility,
    }
    if values["owner"] != sender.user.name:
        body["organization"] = values["owner"]
    if template:
        chosen = next((t for t in templates.available() if t.repo_id == template), None)
        # A template brings its own sdk: the form's sdk choice is for a blank Space.
        body["sdk"] = values["sdk"] = chosen.sdk if chosen else sdk
        body["template"] = template
    try:
        made = repos_api.create_repo(request, body, session, sender)
    except HubError as refused:
        session.rollback()
        return _form(request, sender, values, str(refused.detail), refused.status_code)
    full_name = f"{values['owner']}/{values['name']}"
    if isinstance(made, JSONResponse):  # 409: it exists already
        return _form(
            request, sender, values, f"{full_name} already exists: pick another name.", 409
        )
    said = (
        f"{made.name} is created from the {template} template and is building."
        if template
        else f"{made.name} is created: push your app to it with git (below)."
    )
    return done(f"/spaces/{made.name}", said)
