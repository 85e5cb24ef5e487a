"""The control plane's web application: API and git hosting in one FastAPI app, wrapped by
the gateway that serves each Space on its own host."""

from __future__ import annotations

from fastapi import FastAPI

from orchestrator import db, git_http
from orchestrator.api import logs as logs_api
from orchestrator.api import spaces as spaces_api
from orchestrator.api import users as users_api
from orchestrator.gateway.proxy import Gateway


def create_app(*, migrate: bool = True) -> Gateway:
    if migrate:
        db.migrate()
    git_http.install_hooks()
    app = FastAPI(title="Spaceport", version="0.1.0")

    @app.get("/api/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    app.include_router(users_api.router)
    app.include_router(spaces_api.router)
    app.include_router(git_http.router)
    app.include_router(logs_api.router)
    return Gateway(app)
