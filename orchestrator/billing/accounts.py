"""Credit accounts: each user's or organisation's balance and its ledger, in integer
micro-USD (money is never a float: a price is turned into micro-USD once, here).

Administrators grant credit (`grant`: API and CLI); the charger takes it (`charge`); asking
for a paid tier with nothing left is refused (`require_credit`, raised as `OutOfCredit`,
which the API answers with 402).
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from sqlalchemy import func, update
from sqlmodel import Session, col, select

from orchestrator.core import events
from orchestrator.core.events import EventKind
from orchestrator.core.models import CreditAccount, CreditEntry, CreditEntryKind, User, utcnow
from orchestrator.core.settings import get_settings
from sandbox.hardware import UnknownHardware, get_tier

MICRO = 1_000_000  # micro-USD per USD
MAX_GRANT_USD = 1_000_000  # one grant at most: a typo of a few zeros is refused
PAGE_LIMIT = 500  # most ledger entries one page holds
FREE_TIER = "cpu-basic"


class CreditError(ValueError):
    """An amount or account that can't be used; the message says why (HTTP 400/404)."""


class OutOfCredit(Exception):  # noqa: N818 - the name says what happened, as HubError does
    """A paid tier asked for by an owner without credit (HTTP 402)."""


def price_per_hour(tier: str) -> int:
    """The tier's price in micro-USD per hour (the catalogue's, re-read on edit); 0 for a
    free tier, for a tier no longer listed, and everywhere when billing is off."""
    if not get_settings().billing_enabled:
        return 0
    try:
        return round(Decimal(str(get_tier(tier).unit_cost_usd_per_hour)) * MICRO)
    except UnknownHardware:
        return 0


def usd(micro_usd: int) -> str:
    """'$0.40', '-$1.25', '$0.000125': cents, and more digits only where they matter."""
    sign = "-" if micro_usd < 0 else ""
    value = Decimal(abs(micro_usd)) / MICRO
    text = f"{value:.6f}".rstrip("0")
    whole, _, cents = text.partition(".")
    return f"{sign}${whole}.{cents.ljust(2, '0')}"


def parse_usd(amount: object) -> int:
    """A grant's amount in USD (a number or a decimal string) as micro-USD: more than 0, at
    most MAX_GRANT_USD, at most 6 decimals."""
    try:
        value = Decimal(str(amount).strip())
    except InvalidOperation:
        raise CreditError(
            f"amount must be a number of USD, like 10 or 2.50 (got {amount!r})"
        ) from None
    if not value.is_finite() or not 0 < value <= MAX_GRANT_USD:
        raise CreditError(f"amount must be more than 0 and at most {MAX_GRANT_USD} USD")
    micro = value * MICRO
    if micro != micro.to_integral_value():
        raise CreditError("amount has at most 6 decimals (one micro-USD)")
    return int(micro)


def find_owner(session: Session, name: str) -> User:
    """A user or organisation by name, regardless of case."""
    owner = session.exec(select(User).where(func.lower(User.name) == name.lower())).first()
    if owner is None:
        raise CreditError(f"no user or organisation is called {name!r}")
    return owner


def account_of(session: Session, owner_id: int) -> CreditAccount | None:
    return session.exec(select(CreditAccount).where(CreditAccount.owner_id == owner_id)).first()


def open_account(session: Session, owner_id: int) -> CreditAccount:
    """The owner's account, made (empty) if it has none yet. Not committed."""
    account = account_of(session, owner_id)
    if account is None:
        account = CreditAccount(owner_id=owner_id)
        session.add(account)
        session.flush()
    return account


def balance_of(session: Session, owner_id: int) -> int:
    account = account_of(session, owner_id)
    return account.balance_micro_usd if account else 0


def _add(session: Session, account: CreditAccount, amount: int) -> None:
    """Move the balance by `amount` in SQL, so concurrent writers never lose one."""
    session.execute(
        update(CreditAccount)
        .where(col(CreditAccount.id) == account.id)
        .values(balance_micro_usd=CreditAccount.balance_micro_usd + amount, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    session.expire(account, ["balance_micro_usd", "updated_at"])


def grant(
    session: Session, owner: User, amount: int, *, actor: str, note: str | None = None
) -> CreditAccount:
    """Add `amount` micro-USD to the owner's credit, with its ledger entry and its
    `credit.granted` event. Not committed."""
    if not 0 < amount <= MAX_GRANT_USD * MICRO:
        raise CreditError(f"amount must be more than 0 and at most {MAX_GRANT_USD} USD")
    if note is not None and len(note) > 500:
        raise CreditError("note has at most 500 characters")
    assert owner.id is not None
    account = open_account(session, owner.id)
    _add(session, account, amount)
    session.add(
        CreditEntry(
            account_id=account.id or 0,
            kind=CreditEntryKind.GRANT,
            amount_micro_usd=amount,
            actor=actor,
            note=note,
        )
    )
    events.record(
        session,
        EventKind.CREDIT_GRANTED,
        actor,
        account=owner.name,
        amount_micro_usd=amount,
        note=note,
    )
    return account


def charge(session: Session, account: CreditAccount, entry: CreditEntry, amount: int) -> None:
    """Take `amount` micro-USD for `entry` (a new charge, or the one it extends). Not
    committed: the charger commits it with the meter that moved on."""
    entry.amount_micro_usd -= amount
    session.add(entry)
    _add(session, account, -amount)


def require_credit(session: Session, owner: User, tier: str) -> None:
    """Refuse a paid tier to an owner with no credit left (OutOfCredit, the API's 402)."""
    price = price_per_hour(tier)
    if price == 0:
        return
    assert owner.id is not None
    balance = balance_of(session, owner.id)
    if balance > 0:
        return
    left = "no credit" if balance == 0 else f"no credit ({usd(balance)})"
    raise OutOfCredit(
        f"{tier} costs {usd(price)}/hour and {owner.name} has {left}: ask an administrator "
        f"to grant some (`spaceport credit grant {owner.name} 10`), or use {FREE_TIER}, "
        "which is free"
    )


def entries(
    session: Session, account: CreditAccount, *, before: int | None = None, limit: int = 100
) -> list[CreditEntry]:
    """The account's ledger, newest first, `limit` (at most PAGE_LIMIT) entries with an id
    below `before`: one indexed range scan per page."""
    query = select(CreditEntry).where(CreditEntry.account_id == account.id)
    if before is not None:
        query = query.where(col(CreditEntry.id) < before)
    query = query.order_by(col(CreditEntry.id).desc()).limit(max(1, min(limit, PAGE_LIMIT)))
    return list(session.exec(query))
