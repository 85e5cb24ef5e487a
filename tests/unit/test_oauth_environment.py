"""A Space whose README says `hf_oauth: true` gets its OAuth app's variables, as on the Hub,
so `gr.LoginButton` starts unchanged (orchestrator/controller/environment.py)."""

from __future__ import annotations

import json

from sqlmodel import Session

from orchestrator.controller.environment import space_environment
from orchestrator.core import auth, db, redaction, status
from orchestrator.core.models import Space, Variable
from orchestrator.spaces import lifecycle
from orchestrator.spaces import registry as spaces


def _space(session: Session, name: str, card: dict) -> Space:
    owner = auth.get_or_create_user(session, "alice")
    space = spaces.create_space(session, owner, name)
    status.change_spec(session, space, card_data=json.dumps(card))
    session.commit()
    session.refresh(space)
    return space


def test_hf_oauth_gives_the_space_its_oauth_app(database: str) -> None:
    with Session(db.get_engine()) as session:
        login = _space(session, "login", {"hf_oauth": True, "hf_oauth_scopes": ["email"]})
        other = _space(session, "other", {"hf_oauth": True})
        plain = _space(session, "plain", {"title": "Plain"})
        env = space_environment(session, login)
        assert env["OAUTH_CLIENT_ID"] == login.uid
        assert env["OAUTH_SCOPES"] == "openid profile email"
        assert env["OPENID_PROVIDER_URL"]
        secret = env["OAUTH_CLIENT_SECRET"]
        assert len(secret) == 64
        assert space_environment(session, login)["OAUTH_CLIENT_SECRET"] == secret  # stable
        assert space_environment(session, other)["OAUTH_CLIENT_SECRET"] != secret
        assert not any(key.startswith("OAUTH_") for key in space_environment(session, plain))
        # Masked wherever the Space's secrets are (run logs, build logs, error messages).
        assert secret in redaction.space_secret_values(session, login.id)
        assert "***" in redaction.for_space(session, login.id)(f"printed {secret}")


def test_the_owners_own_oauth_variables_win(database: str) -> None:
    with Session(db.get_engine()) as session:
        space = _space(session, "login", {"hf_oauth": True})
        lifecycle.upsert(
            session,
            space,
            Variable,
            "OPENID_PROVIDER_URL",
            "https://sso.example.org",
            actor="alice",
        )
        session.commit()
        env = space_environment(session, space)
        assert env["OPENID_PROVIDER_URL"] == "https://sso.example.org"
        assert env["OAUTH_CLIENT_ID"] == space.uid
