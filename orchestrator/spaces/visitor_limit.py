"""The owner's visitor concurrency: how many visitors a Space lets in at once before the
rest wait in the gateway's visitor queue (orchestrator/gateway/visitor_queue.py).

Spec, written with its event like every owner action (spaces/lifecycle.py); None goes back
to the tier's concurrency (sandbox/hardware_catalogue.yaml). The gateway's route table
hears the event and applies the new limit to the next visit.
"""

from __future__ import annotations

from sqlmodel import Session

from orchestrator.core import events
from orchestrator.core.events import EventKind
from orchestrator.core.models import Space
from orchestrator.core.settings import get_settings
from orchestrator.core.status import change_spec
from orchestrator.spaces.lifecycle import LifecycleError


def set_visitor_concurrency(
    session: Session, space: Space, concurrency: int | None, *, actor: str
) -> None:
    """Check and store it (not committed); nothing is written when it is unchanged."""
    highest = get_settings().max_visitor_concurrency
    if concurrency is not None and not 1 <= concurrency <= highest:
        raise LifecycleError(
            f"visitorConcurrency must be between 1 and {highest} (or null for the tier's)"
        )
    if concurrency == space.visitor_concurrency:
        return
    events.record(
        session,
        EventKind.VISITOR_CONCURRENCY_CHANGED,
        actor,
        space,
        **{"from": space.visitor_concurrency, "to": concurrency},
    )
    change_spec(session, space, visitor_concurrency=concurrency)
    session.flush()
