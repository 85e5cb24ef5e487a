"""The visitor queue's page: the visitor's place, what the Space is doing, the expected wait.

It updates itself without a reload: a small inline script asks `STATUS_PATH` (the queue's
JSON, on the Space's own host, with the visitor's cookie) every few seconds and reloads once
the visitor is let in. Without JavaScript a meta refresh (inside <noscript>) reloads the
whole page instead. Plain HTML and one column, readable from 320 px wide up; the live part is
an ARIA live region, so a screen reader hears the place change.
"""

from __future__ import annotations

import html

from orchestrator.api import wire

STATUS_PATH = "/.spaceport/queue"

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<noscript><meta http-equiv="refresh" content="{refresh}"></noscript>
<style>
body {{ font-family: system-ui, sans-serif; background: #0b0f19; color: #e5e7eb; margin: 0;
       display: flex; min-height: 100vh; align-items: center; justify-content: center; }}
main {{ width: 100%; max-width: 34rem; padding: 1.5rem; box-sizing: border-box; }}
h1 {{ font-size: 1.4rem; line-height: 1.3; overflow-wrap: anywhere; margin: 0 0 1rem; }}
.place {{ font-size: 3rem; font-weight: 700; color: #fbbf24; margin: 0; }}
.label {{ color: #9ca3af; margin: 0 0 1.25rem; }}
p {{ line-height: 1.5; }}
</style></head>
<body><main>
<h1>{name}</h1>
<div role="status" aria-live="polite">
<p class="place" id="place">{place}</p>
<p class="label" id="place-label">{place_label}</p>
<p id="doing">{doing}</p>
<p id="wait">{wait}</p>
</div>
<p>Keep this page open: it lets you in by itself when it is your turn, and a reload keeps
your place.</p>
</main>
<script>
(function () {{
  var delay = {poll_ms};
  function text(id, value) {{ document.getElementById(id).textContent = value; }}
  function ask() {{
    fetch({status_path}, {{ headers: {{ "Accept": "application/json" }},
                            credentials: "same-origin", cache: "no-store" }})
      .then(function (r) {{ return r.json(); }})
      .then(function (s) {{
        if ((s.admitted && s.ready) || s.doing === "stopped") {{ location.reload(); return; }}
        text("place", s.placeText); text("place-label", s.placeLabel);
        text("doing", s.message); text("wait", s.waitText);
        delay = Math.max(1000, Math.min(10000, (s.retryAfter || 3) * 1000));
      }})
      .catch(function () {{ delay = Math.min(10000, delay * 2); }})
      .then(function () {{ setTimeout(ask, delay); }});
  }}
  setTimeout(ask, delay);
}})();
</script>
</body></html>
"""


def render(name: str, place: wire.VisitorPlace) -> str:
    return PAGE.format(
        title=html.escape(f"{name}: {place.place_label} {place.place_text}".strip()),
        name=html.escape(name),
        place=html.escape(place.place_text),
        place_label=html.escape(place.place_label),
        doing=html.escape(place.message),
        wait=html.escape(place.wait_text),
        refresh=max(2, place.retry_after),
        poll_ms=max(1000, place.retry_after * 1000),
        status_path=f'"{STATUS_PATH}"',
    )
