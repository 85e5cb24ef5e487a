"""What the controller asks a backend to run for a Space: its revision (image, port,
hardware, environment, restart generation). Any change of these is a new revision key, so a
new container: a variable, a secret, a rename (SPACE_ID, SPACE_HOST), a restart."""

from __future__ import annotations

import json
from typing import Any

from sqlmodel import Session, select

from orchestrator.core import secret_store
from orchestrator.core.models import Secret, Space, Variable
from orchestrator.core.settings import get_settings
from orchestrator.oauth import clients as oauth_clients
from orchestrator.oauth import spaces_door
from orchestrator.spaces import registry as spaces_module
from orchestrator.volumes import mounts as volume_mounts
from sandbox.backend import Revision
from sandbox.hardware import sized_tier


def space_environment(session: Session, space: Space) -> dict[str, str]:
    """The variables a Space's process sees: its own, its secrets, and Spaces' standard ones."""
    settings = get_settings()
    tier = sized_tier(space.requested_hardware, settings.hardware_overrides)
    card = json.loads(space.card_data) if space.card_data else {}
    # The OAuth app first: the owner's own variables and secrets of those names win.
    env = oauth_environment(space, card, spaces_door.provider_url(settings))
    variables = session.exec(select(Variable).where(Variable.space_id == space.id))
    env.update({v.key: v.value for v in variables})
    env.update(
        {s.key: s.value for s in session.exec(select(Secret).where(Secret.space_id == space.id))}
    )
    title = card.get("title") or space.name
    env.update(
        {
            "SYSTEM": "spaces",
            "SPACE_ID": space.full_name,
            "SPACE_AUTHOR_NAME": space.owner,
            "SPACE_REPO_NAME": space.name,
            "SPACE_TITLE": str(title),
            "SPACE_HOST": f"{spaces_module.subdomain(space)}.{settings.spaces_domain}",
            # The user who created it (an organisation's Space was created by a member).
            "SPACE_CREATOR_USER_ID": str(space.creator_id or space.owner_id),
            "CPU_CORES": f"{tier.cpu:g}",
            "MEMORY": f"{tier.memory_gib:g}Gi",
            "ACCELERATOR": tier.name if tier.gpu_count else "none",
            "GRADIO_SERVER_NAME": "0.0.0.0",
            "GRADIO_SERVER_PORT": str(space.app_port),
        }
    )
    return env


def oauth_environment(space: Space, card: dict[str, Any], provider_url: str) -> dict[str, str]:
    """What the Hub gives a Space whose README says `hf_oauth: true`: its OAuth app. Gradio's
    `gr.LoginButton` refuses to start without these; Spaceport is the OpenID Connect provider
    they name (orchestrator/oauth/). The client secret is masked like the Space's secrets."""
    if not oauth_clients.uses_sign_in(card):
        return {}
    scopes = oauth_clients.space_scopes(card)
    return {
        "OAUTH_CLIENT_ID": space.uid,
        "OAUTH_CLIENT_SECRET": secret_store.oauth_client_secret(space.uid),
        "OAUTH_SCOPES": " ".join(scopes),
        "OPENID_PROVIDER_URL": provider_url.rstrip("/"),
    }


def revision_of(session: Session, space: Space) -> Revision | None:
    """The built revision as it should run now; None when nothing is built. (Whether it
    should run at all, paused or not, is the reconciler's question.)"""
    if not space.built_image or not space.built_sha:
        return None
    return Revision(
        space_id=space.uid,  # never reused, unlike the row number
        space=space.full_name,
        sha=space.built_sha,
        image=space.built_image,
        port=space.app_port,
        hardware=sized_tier(space.requested_hardware, get_settings().hardware_overrides),
        env=space_environment(session, space),
        generation=space.restart_count,
        # Its volumes (MountError when a source is gone: the reconciler shows it).
        mounts=volume_mounts.space_mounts(session, space),
    )
