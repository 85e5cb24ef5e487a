"""What a visitor sees when there is no app to show: a missing Space, or one that is not
answering yet. The waiting page reloads itself until the app is up."""

from __future__ import annotations

import html

WAITING_MESSAGES = {
    "BUILDING": "is being built",
    "RUNNING_BUILDING": "is being built",
    "APP_STARTING": "is starting",
    "RUNNING_APP_STARTING": "is starting",
    "SLEEPING": "is asleep and waking up",
    "STOPPED": "is stopped",
    "PAUSED": "is paused by its owner",
    "BUILD_ERROR": "failed to build",
    "CONFIG_ERROR": "has a configuration error",
    "NO_APP_FILE": "has no app file",
    "RUNTIME_ERROR": "has a runtime error",
}
TRANSIENT = {"BUILDING", "RUNNING_BUILDING", "APP_STARTING", "RUNNING_APP_STARTING", "SLEEPING"}

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>{refresh}
<style>
body {{ font-family: system-ui, sans-serif; background: #0b0f19; color: #e5e7eb;
       display: flex; min-height: 100vh; align-items: center; justify-content: center;
       margin: 0; }}
main {{ max-width: 40rem; padding: 2rem; }}
h1 {{ font-size: 1.5rem; }} .stage {{ font-family: monospace; color: #fbbf24; }}
pre {{ background: #111827; padding: 1rem; overflow: auto; white-space: pre-wrap; }}
</style></head>
<body><main><h1>{heading}</h1>{body}</main></body></html>
"""


def not_found_page(host: str) -> str:
    return PAGE.format(
        title="Space not found",
        refresh="",
        heading="404: no Space here",
        body=f"<p>No Space is served at <code>{html.escape(host)}</code>.</p>",
    )


def status_page(full_name: str, stage: str, error_message: str | None) -> str:
    what = WAITING_MESSAGES.get(stage, "is not running")
    transient = stage in TRANSIENT
    if transient and (error_message or "").startswith("waiting for hardware"):
        # Admission holds it back (orchestrator/controller/reconciler.py); the figures of the host's
        # free memory stay in the runtime API, for those who may see the Space.
        what = "is waiting for hardware"
    body = f'<p>Stage: <span class="stage">{html.escape(stage)}</span></p>'
    if transient:
        body += "<p>This page reloads by itself when the app is ready.</p>"
    if error_message and not transient:
        body += f"<pre>{html.escape(error_message)}</pre>"
    return PAGE.format(
        title=f"{full_name} {what}",
        refresh='<meta http-equiv="refresh" content="3">' if transient else "",
        heading=f"{html.escape(full_name)} {what}",
        body=body,
    )
