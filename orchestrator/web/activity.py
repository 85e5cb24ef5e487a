"""The activity feed of a Space's page: its events (core/events.py) in plain words. The
page's script adds new ones as the event stream sends them, with the same words
(static/spaceport.js asks /web/feed for them, in these same words)."""

from __future__ import annotations

import json
from typing import Any

from sqlmodel import Session, col, select

from orchestrator.core.models import Event, Space
from orchestrator.web import stage_words

FEED_LENGTH = 20
# The controller's and the pipeline's bookkeeping: every other event is something a person
# reading the feed cares about.
HIDDEN = ("status.changed", "spec.changed")


def _stage(value: Any) -> str:
    return stage_words.words(str(value)) if value else "?"


def describe(kind: str, actor: str, data: dict[str, Any]) -> str:
    """One event as a sentence."""
    who = actor or "someone"
    match kind:
        case "stage.changed":
            return f"{_stage(data.get('from'))} → {_stage(data.get('to'))}"
        case "build.queued":
            return f"Build queued for commit {str(data.get('commit', ''))[:7]}"
        case "commit.refused":
            # The message says what to fix; the feed shows its first line, the page the rest.
            reason = str(data.get("message", "")).splitlines()[0:1]
            why = f": {reason[0][:160]}" if reason else ""
            return f"Commit {str(data.get('commit', ''))[:7]} not built{why}"
        case "build.started":
            return "Build started"
        case "build.ended":
            return f"Build {data.get('status', 'ended')}"
        case "hardware.requested":
            return f"{who} asked for {data.get('hardware') or data.get('flavor') or 'hardware'}"
        case "hardware.queued":
            return f"Waiting for hardware, position {data.get('position', '?')}"
        case "hardware.granted":
            return "Hardware granted"
        case "space.slept":
            return f"Went to sleep ({data.get('depth', 'sleep')})"
        case "space.woke":
            return "Woke up"
        case "paused":
            return f"Paused by {who}"
        case "restarted":
            return f"Restarted by {who}"
        case "discussion.opened":
            # The event holds no title (it can be renamed): the number links the thread.
            what = "pull request" if data.get("pull_request") else "discussion"
            return f"{who} opened {what} #{data.get('num', '?')}"
        case "pull_request.merged":
            return f"{who} merged #{data.get('num', '?')}"
        case "space.created":
            return f"Created by {who}"
        case "secret.set" | "variable.set":
            return f"{who} set {kind.split('.')[0]} {data.get('key', '')}"
    return f"{kind.replace('.', ' ').replace('_', ' ')}" + (f" by {who}" if actor else "")


def _items(rows: list[Event]) -> list[dict[str, str]]:
    return [
        {
            "at": e.at.strftime("%Y-%m-%d %H:%M:%S") if e.at else "",
            "text": describe(e.kind, e.actor, _data(e.data)),
            "kind": e.kind,
        }
        for e in rows
    ]


def _data(raw: str | None) -> dict[str, Any]:
    try:
        data = json.loads(raw or "{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def recent(session: Session, space: Space) -> tuple[list[dict[str, str]], int]:
    """The newest FEED_LENGTH events, newest first, and the newest id (where the page's
    live updates start)."""
    rows = session.exec(
        select(Event)
        .where(Event.space_id == space.id, col(Event.kind).not_in(HIDDEN))
        .order_by(col(Event.id).desc())
        .limit(FEED_LENGTH)
    ).all()
    return _items(list(rows)), (rows[0].id or 0) if rows else 0


def since(session: Session, space: Space, after: int) -> tuple[list[dict[str, str]], int]:
    """Events after id `after` (at most FEED_LENGTH, the newest), newest first, and the
    newest id among them (0 when none)."""
    rows = session.exec(
        select(Event)
        .where(Event.space_id == space.id, col(Event.id) > after, col(Event.kind).not_in(HIDDEN))
        .order_by(col(Event.id).desc())
        .limit(FEED_LENGTH)
    ).all()
    return _items(list(rows)), (rows[0].id or 0) if rows else 0
