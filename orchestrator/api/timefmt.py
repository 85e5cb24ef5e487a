"""The one timestamp form every Hub client parses: UTC with milliseconds and a Z."""

from __future__ import annotations

from datetime import UTC, datetime


def hub_time(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + (
        f"{moment.microsecond // 1000:03d}Z"
    )
