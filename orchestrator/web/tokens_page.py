"""/settings/tokens: a signed-in user's API tokens, created (shown once) and revoked.

A token made here is the same as `spaceport token create` makes (core/auth.create_token):
its value is on the page that answers the form and nowhere else; only its SHA-256 is kept.
Roles offered are read and write; admin tokens stay with the operator's CLI.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, Response
from sqlmodel import Session, col, func, select

from orchestrator.core import auth
from orchestrator.core.auth import Principal
from orchestrator.core.db import get_session
from orchestrator.core.models import ApiToken, TokenRole
from orchestrator.web.errors import error_page, sign_in_redirect
from orchestrator.web.render import done, page
from orchestrator.web.viewer import form_sender, page_viewer

router = APIRouter(include_in_schema=False)
PATH = "/settings/tokens"
ROLES = (TokenRole.READ.value, TokenRole.WRITE.value)
MAX_TOKENS = 100  # per user: past it, revoke one first


def _tokens(session: Session, principal: Principal) -> list[ApiToken]:
    return list(
        session.exec(
            select(ApiToken)
            .where(ApiToken.user_id == principal.user.id)
            .order_by(col(ApiToken.id).desc())
        ).all()
    )


def _page(
    request: Request, session: Session, viewer: Principal, new_token: str = "", **extra: object
) -> HTMLResponse:
    return page(
        request,
        "tokens.html",
        viewer,
        tokens=_tokens(session, viewer),
        roles=ROLES,
        new_token=new_token,
        **extra,
    )


@router.get(PATH, response_class=HTMLResponse)
def tokens_page(
    request: Request,
    session: Session = Depends(get_session),
    viewer: Principal | None = Depends(page_viewer),
) -> Response:
    if viewer is None:
        return sign_in_redirect(PATH)
    return _page(request, session, viewer)


@router.post(PATH)
def create(
    request: Request,
    display_name: str = Form(default="", max_length=96),
    role: str = Form(default=TokenRole.READ.value),
    session: Session = Depends(get_session),
    sender: Principal = Depends(form_sender),
) -> Response:
    name = display_name.strip()
    if not name or role not in ROLES:
        return error_page(
            request,
            sender,
            400,
            "That token can't be made",
            "Give the token a name (up to 96 characters) and pick read or write.",
        )
    count = session.exec(
        select(func.count()).select_from(ApiToken).where(ApiToken.user_id == sender.user.id)
    ).one()
    if count >= MAX_TOKENS:
        return error_page(
            request,
            sender,
            400,
            "Too many tokens",
            f"You have {count} tokens, the most one user may have: revoke one you no longer use.",
        )
    value = auth.create_token(session, sender.user, TokenRole(role), display_name=name)
    # The only time its value is seen: on this answer, never stored, never redirected to.
    return _page(request, session, sender, new_token=value, new_name=name)


@router.post(PATH + "/{token_id}/revoke")
def revoke(
    request: Request,
    token_id: int,
    session: Session = Depends(get_session),
    sender: Principal = Depends(form_sender),
) -> Response:
    row = session.get(ApiToken, token_id)
    if row is None or row.user_id != sender.user.id:  # another's token reads as missing
        return error_page(request, sender, 404, "Not found", "There is no such token of yours.")
    session.delete(row)
    session.commit()
    return done(PATH, f"Token {row.display_name!r} is revoked: it no longer works.")
