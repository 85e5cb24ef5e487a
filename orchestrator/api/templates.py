"""Space templates (Hub: GET /api/spaces/templates), read by `list_space_templates()` and
by `create_repo(space_template=...)`, which resolves the name here before it creates."""

from __future__ import annotations

from fastapi import APIRouter

from orchestrator.api import wire
from orchestrator.api.errors import ERROR_RESPONSES
from orchestrator.spaces import templates

router = APIRouter(prefix="/api", responses=ERROR_RESPONSES)


@router.get("/spaces/templates", response_model=wire.SpaceTemplates)
def list_templates() -> wire.SpaceTemplates:
    """Public, as on the Hub: the list is the same for everyone."""
    return wire.SpaceTemplates(
        templates=[
            wire.SpaceTemplate(
                name=t.name, repo_id=t.repo_id, sdk=t.sdk, preferred_private=t.preferred_private
            )
            for t in templates.available()
        ]
    )
