"""Every page's route, in the order they must match: fixed paths first, a user's page
(/{name}) last, since it takes any one-segment path."""

from __future__ import annotations

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from sqlmodel import Session

from orchestrator.core.auth import Principal
from orchestrator.core.db import get_session
from orchestrator.web import (
    community_page,
    duplicate_page,
    errors,
    files_page,
    home,
    new_space_page,
    oauth_consent,
    render,
    settings_forms,
    settings_page,
    sign_in,
    sign_in_external,
    space_page,
    tokens_page,
    usage_page,
)
from orchestrator.web.viewer import page_viewer

user_router = APIRouter(include_in_schema=False)


@user_router.get("/{name}", response_class=HTMLResponse)
def user_page(
    request: Request,
    name: str,
    session: Session = Depends(get_session),
    viewer: Principal | None = Depends(page_viewer),
) -> HTMLResponse:
    found = home.user_page(request, name, session, viewer)
    return found if found is not None else errors.not_found(request, viewer, "user")


def install(app: FastAPI) -> None:
    """The pages' routes and static files (before the API's catch-all routes)."""
    errors.install(app)
    app.mount(render.STATIC_ROUTE, StaticFiles(directory=render.STATIC), name="static")
    pages = (
        home,
        sign_in,
        sign_in_external,
        space_page,
        settings_page,
        settings_forms,
        tokens_page,
        usage_page,
        files_page,
        new_space_page,
        duplicate_page,
        community_page,
        oauth_consent,
    )
    for module in pages:
        app.include_router(module.router)


def install_last(app: FastAPI) -> None:
    app.include_router(user_router)
