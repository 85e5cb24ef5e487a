"""The owner's volume changes: spec and event together (a new set of mounts is a new
revision, so the controller restarts the Space with them)."""

from __future__ import annotations

from sqlmodel import Session

from orchestrator.core import events
from orchestrator.core.events import EventKind
from orchestrator.core.models import Space
from orchestrator.core.status import change_spec
from orchestrator.volumes.spec import Volume, stored, to_column


def set_volumes(session: Session, space: Space, volumes: list[Volume], *, actor: str) -> None:
    """Replace the Space's volumes (none: remove them all); committed. Unchanged: no-op."""
    if volumes == stored(space):
        return
    events.record(
        session,
        EventKind.VOLUMES_CHANGED,
        actor,
        space,
        volumes=[
            {"type": v.type, "source": v.source, "mountPath": v.mount_path, "readOnly": v.read_only}
            for v in volumes
        ],
    )
    change_spec(session, space, volumes=to_column(volumes))
    session.flush()
    session.commit()
