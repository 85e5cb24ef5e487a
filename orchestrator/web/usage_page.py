"""/settings/billing: the signed-in user's credit (or an organisation's they admin, with
`?account=`): the balance, the newest ledger entries (grants, and charges for paid hardware
by Space and tier), and the CSV export of the whole ledger (the API's /api/billing/usage.csv,
which the session's cookie opens)."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from sqlmodel import Session

from orchestrator.api.billing import credit_owner
from orchestrator.api.errors import HubError
from orchestrator.billing import accounts
from orchestrator.core.auth import Principal
from orchestrator.core.db import get_session
from orchestrator.core.models import OrgRole
from orchestrator.web.errors import error_page, sign_in_redirect
from orchestrator.web.render import page
from orchestrator.web.viewer import page_viewer

router = APIRouter(include_in_schema=False)
PATH = "/settings/billing"
SHOWN = 100  # newest entries on the page; the CSV has them all


@router.get(PATH)
def usage_page(
    request: Request,
    account: str | None = Query(default=None, max_length=96),
    session: Session = Depends(get_session),
    viewer: Principal | None = Depends(page_viewer),
) -> Response:
    if viewer is None:
        return sign_in_redirect(PATH)
    try:
        owner = credit_owner(session, viewer, account)  # the API's rule of whose credit one sees
    except HubError as exc:
        return error_page(request, viewer, exc.status_code, "Not yours to see", str(exc.detail))
    assert owner.id is not None
    found = accounts.account_of(session, owner.id)
    rows = accounts.entries(session, found, limit=SHOWN) if found else []
    return page(
        request,
        "usage.html",
        viewer,
        owner=owner,
        balance=accounts.usd(found.balance_micro_usd if found else 0),
        entries=[
            {
                "at": row.created_at.strftime("%Y-%m-%d %H:%M"),
                "kind": str(row.kind),
                "amount": accounts.usd(row.amount_micro_usd),
                "space": row.space_name or "",
                "hardware": row.hardware or "",
                "minutes": f"{row.seconds / 60:.1f}" if row.seconds else "",
                "note": row.note or "",
            }
            for row in rows
        ],
        orgs=[s.org_name for s in viewer.seats if s.role == OrgRole.ADMIN],
        csv_url="/api/billing/usage.csv" + (f"?account={quote(owner.name)}" if account else ""),
    )
