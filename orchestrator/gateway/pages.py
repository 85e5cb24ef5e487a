"""What a visitor sees when there is no app to show: a missing Space, or one that is not
answering yet.

The page of a Space that is on its way (building, starting, waking) asks for itself again
every few seconds with a small inline script, and reloads only when the answer is no
longer this page (the app serves) or says something else (a new stage, an error): a
reload the visitor did not ask for moves their focus and their screen reader's place, so
it happens only when there is news (WCAG 2.2.1, axe's meta-refresh). Without JavaScript a
meta refresh inside <noscript> reloads it instead. An error's details sit behind a toggle.
"""

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
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>{refresh}
<style>
body {{ font-family: system-ui, sans-serif; background: #0b0f19; color: #e5e7eb;
       display: flex; min-height: 100vh; align-items: center; justify-content: center;
       margin: 0; }}
main {{ max-width: 40rem; padding: 2rem; }}
h1 {{ font-size: 1.5rem; }} .stage {{ font-family: monospace; color: #fbbf24; }}
pre {{ background: #111827; padding: 1rem; overflow: auto; white-space: pre-wrap; }}
</style></head>
<body><main><h1>{heading}</h1>{body}</main>{script}</body></html>
"""
RELOAD_EVERY_MS = 3000
# Asks for this same URL as the browser would; a 502/503 with the same title is no news.
ASK_AGAIN = """<script>
(function () {
  function ask() {
    fetch(location.href, { headers: { "Accept": "text/html" }, cache: "no-store",
                           credentials: "same-origin" })
      .then(function (r) {
        if (r.status !== 502 && r.status !== 503) { location.reload(); return null; }
        return r.text().then(function (page) {
          var found = /<title>([^<]*)<\\/title>/.exec(page);
          var title = document.createElement("textarea");
          title.innerHTML = found ? found[1] : "";
          if (title.value !== document.title) { location.reload(); return null; }
          setTimeout(ask, EVERY_MS);
          return null;
        });
      })
      .catch(function () { setTimeout(ask, 2 * EVERY_MS); });
  }
  setTimeout(ask, EVERY_MS);
})();
</script>""".replace("EVERY_MS", str(RELOAD_EVERY_MS))


def not_found_page(host: str) -> str:
    return PAGE.format(
        title="Space not found",
        refresh="",
        script="",
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
    body = f'<p role="status">Stage: <span class="stage">{html.escape(stage)}</span></p>'
    if transient:
        body += "<p>This page reloads by itself when the app is ready.</p>"
    if error_message and not transient:
        body += (
            f"<details><summary>Details</summary><pre>{html.escape(error_message)}</pre></details>"
        )
    refresh = f'<meta http-equiv="refresh" content="{RELOAD_EVERY_MS // 1000}">'
    return PAGE.format(
        title=html.escape(f"{full_name} {what}"),
        refresh=f"<noscript>{refresh}</noscript>" if transient else "",
        script=ASK_AGAIN if transient else "",
        heading=f"{html.escape(full_name)} {what}",
        body=body,
    )
