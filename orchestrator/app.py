"""The control plane's web application: API and git hosting in one FastAPI app, wrapped by
the gateway that serves each Space on its own host."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.types import ASGIApp

from orchestrator.api import access_check as access_check_api
from orchestrator.api import billing as billing_api
from orchestrator.api import commits as commits_api
from orchestrator.api import discussions as discussions_api
from orchestrator.api import events as events_api
from orchestrator.api import files as files_api
from orchestrator.api import input_errors, renames, wire
from orchestrator.api import lfs as lfs_api
from orchestrator.api import likes as likes_api
from orchestrator.api import logs as logs_api
from orchestrator.api import missing_repos as missing_repos_api
from orchestrator.api import oauth as oauth_api
from orchestrator.api import organizations as organizations_api
from orchestrator.api import refs as refs_api
from orchestrator.api import repos as repos_api
from orchestrator.api import runtime as runtime_api
from orchestrator.api import space_info as space_info_api
from orchestrator.api import space_jwt as space_jwt_api
from orchestrator.api import spaces as spaces_api
from orchestrator.api import templates as templates_api
from orchestrator.api import users as users_api
from orchestrator.api import volumes as volumes_api
from orchestrator.api.request_ids import RequestIds
from orchestrator.core import db
from orchestrator.core.limits import BodySizeLimit
from orchestrator.core.settings import get_settings
from orchestrator.gateway.proxy import Gateway
from orchestrator.oauth import spaces_door
from orchestrator.push import git_http
from orchestrator.web import routes as web_routes


def create_app(*, migrate: bool = True) -> ASGIApp:
    # Body limits apply to the control plane's own routes; Space hosts are proxied as is.
    # Every control-plane answer, a body refused for its size too, carries X-Request-Id.
    app: ASGIApp = Gateway(RequestIds(BodySizeLimit(create_api(migrate=migrate))))
    # Outermost: what comes in through the sign-in door never reaches the gateway's routing
    # by Host, nor any other route (orchestrator/oauth/spaces_door.py).
    if door := spaces_door.door_host(get_settings()):
        app = spaces_door.SpacesDoor(app, door)
    return app


def create_api(*, migrate: bool = True) -> FastAPI:
    """The API and git hosting alone, without the gateway (what the API's tests drive)."""
    if migrate:
        db.migrate()
    git_http.install_hooks()
    app = FastAPI(title="Spaceport", version="0.1.0")

    # One error shape for every refusal (api/errors.py); malformed JSON, wrong types, NUL
    # in URLs: a clear 4xx, never a 500.
    input_errors.install(app)
    renames.install(app)  # old ids after move_repo: a redirect to the current one

    @app.get("/api/health", response_model=wire.Health)
    def health() -> wire.Health:
        return wire.Health(status="ok")

    app.include_router(users_api.router)
    app.include_router(organizations_api.router)
    # Fixed paths (/api/spaces/hardware, /api/spaces/templates) before the {owner}/{name} ones.
    app.include_router(templates_api.router)
    app.include_router(runtime_api.router)
    app.include_router(billing_api.router)
    app.include_router(volumes_api.router)
    app.include_router(space_jwt_api.router)
    app.include_router(oauth_api.router)
    app.include_router(access_check_api.router)
    app.include_router(spaces_api.router)
    app.include_router(space_info_api.router)
    app.include_router(repos_api.router)
    app.include_router(lfs_api.router)
    app.include_router(files_api.router)
    app.include_router(commits_api.router)
    app.include_router(discussions_api.router)
    app.include_router(likes_api.router)
    app.include_router(refs_api.router)
    app.include_router(git_http.router)
    app.include_router(logs_api.router)
    app.include_router(events_api.router)
    web_routes.install(app)  # the pages (orchestrator/web/), after the API's own paths
    # Last: only what no route above took (ids without a namespace, models, datasets), then
    # a user's page, which takes any one-segment path.
    app.include_router(missing_repos_api.router)
    web_routes.install_last(app)
    return app
