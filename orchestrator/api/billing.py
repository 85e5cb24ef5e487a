"""Credit and usage (Spaceport's own; the Hub bills through its website): the caller's
balance, or an organisation's they admin; the ledger, as pages and as a CSV export; and
site administrators' grants."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Body, Depends, Query
from fastapi.responses import StreamingResponse
from sqlmodel import Session, col, select

from orchestrator.api import bodies, wire
from orchestrator.api.deps import current_principal, require_principal
from orchestrator.api.errors import ERROR_RESPONSES, HubError
from orchestrator.api.timefmt import hub_time
from orchestrator.billing import accounts
from orchestrator.core.auth import Principal
from orchestrator.core.db import get_session, session_scope
from orchestrator.core.models import CreditEntry, OrgRole, User

router = APIRouter(prefix="/api/billing", responses=ERROR_RESPONSES)
CSV_COLUMNS = (
    "id",
    "at",
    "kind",
    "amount_usd",
    "amount_micro_usd",
    "space",
    "hardware",
    "started_at",
    "ended_at",
    "seconds",
    "actor",
    "note",
)


def credit_owner(session: Session, principal: Principal | None, account: str | None) -> User:
    """Whose credit the caller asks about: their own, an organisation's where they are an
    admin, anyone's for a site administrator."""
    principal = require_principal(principal)
    if account is None or principal.is_named(account):
        return principal.user
    try:
        owner = accounts.find_owner(session, account)
    except accounts.CreditError as exc:
        raise HubError(404, str(exc)) from exc
    if principal.is_admin or (owner.is_org and principal.role_in(owner.id or 0) == OrgRole.ADMIN):
        return owner
    raise HubError(
        403,
        f"You see your own credit and that of organisations you admin, not {owner.name}'s",
    )


def _balance(session: Session, owner: User) -> wire.CreditBalance:
    assert owner.id is not None
    balance = accounts.balance_of(session, owner.id)
    return wire.CreditBalance(
        account=owner.name,
        kind="org" if owner.is_org else "user",
        balance_micro_usd=balance,
        balance=accounts.usd(balance),
    )


def _entry(entry: CreditEntry) -> wire.CreditEntryInfo:
    return wire.CreditEntryInfo(
        id=entry.id or 0,
        kind=str(entry.kind),  # type: ignore[arg-type]  # a CreditEntryKind value
        at=hub_time(entry.created_at),
        amount_micro_usd=entry.amount_micro_usd,
        space=entry.space_name,
        space_id=entry.space_uid,
        hardware=entry.hardware,
        started_at=hub_time(entry.started_at),
        ended_at=hub_time(entry.ended_at),
        seconds=round(entry.seconds, 3) if entry.kind == "charge" else None,
        actor=entry.actor,
        note=entry.note,
    )


@router.get("/balance", response_model=wire.CreditBalance)
def balance(
    account: str | None = Query(default=None, max_length=96),
    session: Session = Depends(get_session),
    principal: Principal | None = Depends(current_principal),
) -> wire.CreditBalance:
    return _balance(session, credit_owner(session, principal, account))


@router.get("/usage", response_model=wire.CreditUsage)
def usage(
    account: str | None = Query(default=None, max_length=96),
    before: int | None = Query(default=None, ge=1, le=2**62),
    limit: int = Query(default=100, ge=1, le=accounts.PAGE_LIMIT),
    session: Session = Depends(get_session),
    principal: Principal | None = Depends(current_principal),
) -> wire.CreditUsage:
    owner = credit_owner(session, principal, account)
    assert owner.id is not None
    found = accounts.account_of(session, owner.id)
    rows = accounts.entries(session, found, before=before, limit=limit) if found else []
    return wire.CreditUsage(
        account=owner.name,
        balance_micro_usd=found.balance_micro_usd if found else 0,
        entries=[_entry(row) for row in rows],
        next=rows[-1].id if len(rows) == limit else None,
    )


@router.get("/usage.csv", response_class=StreamingResponse)
def usage_csv(
    account: str | None = Query(default=None, max_length=96),
    session: Session = Depends(get_session),
    principal: Principal | None = Depends(current_principal),
) -> StreamingResponse:
    """The whole ledger, oldest first, streamed a page at a time (any length, bounded
    memory)."""
    owner = credit_owner(session, principal, account)
    assert owner.id is not None
    found = accounts.account_of(session, owner.id)
    return StreamingResponse(
        _csv_rows(found.id if found and found.id else None),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="credit-{owner.name}.csv"'},
    )


def _csv_rows(account_id: int | None) -> Iterator[str]:
    """Sync, so Starlette runs each page's query in a thread, off the event loop."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    yield _drain(out)
    after = 0
    while account_id is not None:
        with session_scope() as session:
            page = list(
                session.exec(
                    select(CreditEntry)
                    .where(CreditEntry.account_id == account_id, col(CreditEntry.id) > after)
                    .order_by(col(CreditEntry.id))
                    .limit(accounts.PAGE_LIMIT)
                )
            )
        for entry in page:
            writer.writerow(_csv_row(entry))
        if page:
            yield _drain(out)
        if len(page) < accounts.PAGE_LIMIT:
            return
        after = page[-1].id or after


def _csv_row(entry: CreditEntry) -> list[Any]:
    return [
        entry.id,
        hub_time(entry.created_at),
        entry.kind,
        accounts.usd(entry.amount_micro_usd),
        entry.amount_micro_usd,
        entry.space_name or "",
        entry.hardware or "",
        hub_time(entry.started_at) or "",
        hub_time(entry.ended_at) or "",
        f"{entry.seconds:.3f}" if entry.kind == "charge" else "",
        entry.actor,
        entry.note or "",
    ]


def _drain(out: io.StringIO) -> str:
    text = out.getvalue()
    out.seek(0)
    out.truncate()
    return text


@router.post("/grants", response_model=wire.CreditBalance)
def grant(
    body: dict[str, Any] = Body(...),
    session: Session = Depends(get_session),
    principal: Principal | None = Depends(current_principal),
) -> wire.CreditBalance:
    principal = require_principal(principal)
    checked = bodies.check(bodies.CreditGrant, body)
    if not principal.is_admin:
        raise HubError(403, "Only site administrators grant credit (an admin token)")
    try:
        amount = accounts.parse_usd(checked.amount)
    except accounts.CreditError as exc:
        raise HubError(400, str(exc)) from exc
    try:
        owner = accounts.find_owner(session, checked.account)
    except accounts.CreditError as exc:
        raise HubError(404, str(exc)) from exc
    accounts.grant(session, owner, amount, actor=principal.user.name, note=checked.note)
    session.commit()
    return _balance(session, owner)
