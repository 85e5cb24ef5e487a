"""A Space's runtime and what its owner can do to it: hardware, sleep time, pause, restart,
secrets and variables (Hub: /api/spaces/{id}/...)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends, Query
from sqlmodel import Session, select

from orchestrator.api import bodies, wire
from orchestrator.api.deps import current_principal, visible_space
from orchestrator.api.errors import ERROR_RESPONSES, HubError
from orchestrator.api.spaces import runtime_json
from orchestrator.api.timefmt import hub_time
from orchestrator.core.auth import Access, Principal
from orchestrator.core.db import get_session
from orchestrator.core.events import ACTOR_SYSTEM
from orchestrator.core.models import Secret, Space, Variable
from orchestrator.core.settings import get_settings
from orchestrator.spaces import lifecycle
from sandbox.hardware import CATALOGUE, UnknownHardware, sized_tier

router = APIRouter(prefix="/api/spaces", responses=ERROR_RESPONSES)


@router.get("/hardware", response_model=list[wire.HardwareTier])
def list_hardware() -> list[dict[str, Any]]:
    # The sizes a Space really gets here (SPACEPORT_HARDWARE_OVERRIDES), HF's names and prices.
    overrides = get_settings().hardware_overrides
    return [
        wire.HardwareTier.model_validate(sized_tier(name, overrides).to_hub_json())
        for name in CATALOGUE
    ]


def _owned(session: Session, principal: Principal | None, owner: str, name: str) -> Space:
    return visible_space(session, principal, owner, name, need=Access.WRITE)


def _actor(principal: Principal | None) -> str:
    """Who an owner action's event names (the principal is known: the action needs write)."""
    return principal.user.name if principal is not None else ACTOR_SYSTEM


def _run(action, *args: Any, **kwargs: Any) -> None:  # type: ignore[no-untyped-def]
    try:
        action(*args, **kwargs)
    except (lifecycle.LifecycleError, UnknownHardware) as exc:
        raise HubError(400, str(exc)) from exc


@router.post("/{owner}/{name}/hardware", response_model=wire.SpaceRuntime)
def request_hardware(
    owner: str,
    name: str,
    body: dict[str, Any] = Body(default={}),
    session: Session = Depends(get_session),
    principal: Principal | None = Depends(current_principal),
) -> wire.SpaceRuntime:
    bodies.check(bodies.Hardware, body)
    space = _owned(session, principal, owner, name)
    sleep = body.get("sleepTimeSeconds")
    _run(
        lifecycle.request_hardware,
        session,
        space,
        body.get("flavor"),
        int(sleep) if sleep is not None else None,
        actor=_actor(principal),
    )
    return runtime_json(space)


@router.post("/{owner}/{name}/sleeptime", response_model=wire.SpaceRuntime)
def set_sleep_time(
    owner: str,
    name: str,
    body: dict[str, Any] = Body(...),
    session: Session = Depends(get_session),
    principal: Principal | None = Depends(current_principal),
) -> wire.SpaceRuntime:
    bodies.check(bodies.SleepTime, body)
    space = _owned(session, principal, owner, name)
    try:
        seconds = int(body["seconds"])
    except (KeyError, TypeError, ValueError) as exc:
        raise HubError(400, 'send {"seconds": N}, or -1 to never sleep') from exc
    _run(lifecycle.set_sleep_time, session, space, seconds, actor=_actor(principal))
    return runtime_json(space)


@router.post("/{owner}/{name}/pause", response_model=wire.SpaceRuntime)
def pause(
    owner: str,
    name: str,
    session: Session = Depends(get_session),
    principal: Principal | None = Depends(current_principal),
) -> wire.SpaceRuntime:
    space = _owned(session, principal, owner, name)
    _run(lifecycle.pause, session, space, actor=_actor(principal))
    return runtime_json(space)


@router.post("/{owner}/{name}/restart", response_model=wire.SpaceRuntime)
def restart(
    owner: str,
    name: str,
    factory: bool = Query(default=False),
    session: Session = Depends(get_session),
    principal: Principal | None = Depends(current_principal),
) -> wire.SpaceRuntime:
    space = _owned(session, principal, owner, name)
    _run(lifecycle.restart, session, space, factory=factory, actor=_actor(principal))
    session.refresh(space)
    return runtime_json(space)


# -- secrets and variables ---------------------------------------------------------------


def _key_value(body: dict[str, Any]) -> tuple[str, str, str | None]:
    if not isinstance(body.get("key"), str) or "value" not in body:
        raise HubError(400, 'send {"key": ..., "value": ..., "description"?: ...}')
    return body["key"], str(body["value"]), body.get("description")


def _variables_json(session: Session, space: Space) -> wire.Variables:
    rows = session.exec(select(Variable).where(Variable.space_id == space.id)).all()
    return wire.Variables(
        {
            v.key: wire.VariableInfo(
                value=v.value, description=v.description, updated_at=hub_time(v.updated_at)
            )
            for v in rows
        }
    )


@router.get("/{owner}/{name}/secrets", response_model=wire.Secrets)
def list_secrets(
    owner: str,
    name: str,
    session: Session = Depends(get_session),
    principal: Principal | None = Depends(current_principal),
) -> wire.Secrets:
    space = _owned(session, principal, owner, name)
    rows = session.exec(select(Secret).where(Secret.space_id == space.id)).all()
    # Values never leave the server.
    return wire.Secrets(
        {
            s.key: wire.SecretInfo(description=s.description, updated_at=hub_time(s.updated_at))
            for s in rows
        }
    )


@router.post("/{owner}/{name}/secrets", response_model=wire.KeyAnswer)
def add_secret(
    owner: str,
    name: str,
    body: dict[str, Any] = Body(...),
    session: Session = Depends(get_session),
    principal: Principal | None = Depends(current_principal),
) -> wire.KeyAnswer:
    bodies.check(bodies.KeyValue, body)
    space = _owned(session, principal, owner, name)
    key, value, description = _key_value(body)
    _run(lifecycle.upsert, session, space, Secret, key, value, description, actor=_actor(principal))
    return wire.KeyAnswer(key=key)


@router.delete("/{owner}/{name}/secrets", response_model=wire.KeyAnswer)
def delete_secret(
    owner: str,
    name: str,
    body: dict[str, Any] = Body(...),
    session: Session = Depends(get_session),
    principal: Principal | None = Depends(current_principal),
) -> wire.KeyAnswer:
    bodies.check(bodies.Key, body)
    space = _owned(session, principal, owner, name)
    _run(lifecycle.remove, session, space, Secret, str(body.get("key")), actor=_actor(principal))
    return wire.KeyAnswer(key=str(body.get("key")))


@router.get("/{owner}/{name}/variables", response_model=wire.Variables)
def list_variables(
    owner: str,
    name: str,
    session: Session = Depends(get_session),
    principal: Principal | None = Depends(current_principal),
) -> wire.Variables:
    return _variables_json(session, _owned(session, principal, owner, name))


@router.post("/{owner}/{name}/variables", response_model=wire.Variables)
def add_variable(
    owner: str,
    name: str,
    body: dict[str, Any] = Body(...),
    session: Session = Depends(get_session),
    principal: Principal | None = Depends(current_principal),
) -> wire.Variables:
    bodies.check(bodies.KeyValue, body)
    space = _owned(session, principal, owner, name)
    key, value, description = _key_value(body)
    _run(
        lifecycle.upsert, session, space, Variable, key, value, description, actor=_actor(principal)
    )
    return _variables_json(session, space)


@router.delete("/{owner}/{name}/variables", response_model=wire.Variables)
def delete_variable(
    owner: str,
    name: str,
    body: dict[str, Any] = Body(...),
    session: Session = Depends(get_session),
    principal: Principal | None = Depends(current_principal),
) -> wire.Variables:
    bodies.check(bodies.Key, body)
    space = _owned(session, principal, owner, name)
    _run(lifecycle.remove, session, space, Variable, str(body.get("key")), actor=_actor(principal))
    return _variables_json(session, space)
