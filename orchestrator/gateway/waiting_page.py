"""The visitor queue's page: the visitor's place, what the Space is doing, the expected wait.

It updates itself without a reload: a small inline script long-polls `STATUS_PATH` (the
queue's JSON, on the Space's own host, with the visitor's cookie: `?wait=` with what the
page shows, answered as soon as that changes) and reloads once the visitor is let in.
Without JavaScript a meta refresh (inside <noscript>) reloads the whole page instead.
Plain HTML and one column, readable from 320 px wide up; the live part is an ARIA live
region, so a screen reader hears the place change.
"""

from __future__ import annotations

import html
import json

from orchestrator.api import wire

STATUS_PATH = "/.spaceport/queue"
MAX_WAIT_SECONDS = 25  # what the page asks the gateway to wait at most (it caps it too)

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
  // A long-poll: the gateway answers as soon as the place or what the Space does changes
  // (or after {wait_s} s), so the visitor is let in the moment their slot frees.
  var delay = {poll_ms}, position = {position}, doing = {doing_js};
  function text(id, value) {{ document.getElementById(id).textContent = value; }}
  function ask() {{
    var asked = Date.now(), next = 0;
    var url = {status_path} + "?wait={wait_s}&position=" + (position === null ? "" : position) +
      "&doing=" + encodeURIComponent(doing);
    fetch(url, {{ headers: {{ "Accept": "application/json" }},
                  credentials: "same-origin", cache: "no-store" }})
      .then(function (r) {{
        if (!r.ok) {{ throw new Error(r.headers.get("Retry-After") || "3"); }}
        return r.json();
      }})
      .then(function (s) {{
        if ((s.admitted && s.ready) || s.doing === "stopped") {{
          next = null; location.reload(); return;  // and ask no more
        }}
        text("place", s.placeText); text("place-label", s.placeLabel);
        text("doing", s.message); text("wait", s.waitText);
        delay = Math.max(1000, Math.min(10000, (s.retryAfter || 3) * 1000));
        var same = s.position === position && s.doing === doing;
        position = s.position; doing = s.doing;
        // Answered at once with no news (a gateway without long-polls): poll instead.
        next = (same && Date.now() - asked < 500) ? delay : 0;
      }})
      .catch(function (e) {{
        var retry = parseInt(e && e.message, 10);
        delay = retry > 0 ? Math.min(10000, retry * 1000) : Math.min(10000, delay * 2);
        next = delay;
      }})
      .then(function () {{ if (next !== null) {{ setTimeout(ask, next); }} }});
  }}
  setTimeout(ask, 0);
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
        wait_s=int(MAX_WAIT_SECONDS),
        position="null" if place.position is None else int(place.position),
        doing_js=json.dumps(place.doing),
    )
