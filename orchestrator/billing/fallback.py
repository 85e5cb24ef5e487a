"""At zero credit an owner's paid Spaces fall back to cpu-basic, and the owner is told why.

The fallback is an owner action taken in billing's name (`lifecycle.request_hardware`,
actor spaceport:billing): it writes the spec (cpu-basic, and the notice the runtime shows
as `hardwareNotice`) with a `billing.out_of_credit` event and a `fallback` ledger entry,
and the controller carries it out as for any hardware change. So the Space keeps running,
on free hardware, and nothing but the controller touches its instances.
"""

from __future__ import annotations

from sqlmodel import Session, select

from orchestrator.billing import accounts
from orchestrator.core import events
from orchestrator.core.events import EventKind
from orchestrator.core.models import CreditEntry, CreditEntryKind, Space, User
from orchestrator.spaces import lifecycle


def notice(owner: str, tier: str, balance: int) -> str:
    return (
        f"Moved from {tier} to {accounts.FREE_TIER}: {owner} ran out of credit (balance "
        f"{accounts.usd(balance)}). Ask an administrator to grant some (`spaceport credit grant "
        f"{owner} 10`), then request {tier} again."
    )


def fall_back(session: Session, owner_id: int) -> list[str]:
    """Move the owner's Spaces on paid tiers to cpu-basic if their balance is zero or less;
    the Spaces moved, by name. Each is committed on its own (request_hardware commits)."""
    balance = accounts.balance_of(session, owner_id)
    owner = session.get(User, owner_id)
    if balance > 0 or owner is None:
        return []
    paid = [
        space
        for space in session.exec(select(Space).where(Space.owner_id == owner_id)).all()
        if accounts.price_per_hour(space.requested_hardware) > 0
    ]
    moved = []
    for space in paid:
        tier = space.requested_hardware
        told = notice(owner.name, tier, balance)
        account = accounts.open_account(session, owner_id)
        session.add(
            CreditEntry(
                account_id=account.id or 0,
                kind=CreditEntryKind.FALLBACK,
                space_uid=space.uid,
                space_name=space.full_name,
                hardware=tier,
                actor=events.ACTOR_BILLING,
                note=told[:500],
            )
        )
        events.record(
            session,
            EventKind.BILLING_OUT_OF_CREDIT,
            events.ACTOR_BILLING,
            space,
            account=owner.name,
            balance_micro_usd=balance,
            **{"from": tier, "to": accounts.FREE_TIER},
        )
        lifecycle.request_hardware(
            session, space, accounts.FREE_TIER, actor=events.ACTOR_BILLING, notice=told
        )
        moved.append(space.full_name)
    return moved
