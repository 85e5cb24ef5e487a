// Spaceport's pages work without this script; it keeps them live: stage badges, the
// activity feed, streaming logs, and the CSRF header on the pages' own API calls.
"use strict";

const csrfToken = () => document.querySelector('meta[name="csrf-token"]')?.content || "";

// Reads a text/event-stream with fetch (EventSource only delivers unnamed events, and the
// event stream names each by its kind), calling onEvent(name, data) per event and onOpen()
// as each connection opens. Reconnects after a drop or an end, after `retryMs`.
async function readStream(url, onEvent, retryMs = 3000, onOpen = () => {}) {
  for (;;) {
    try {
      const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "text/event-stream" } });
      if (!response.ok || !response.body) return; // 404: nothing to follow
      onOpen();
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let end;
        while ((end = buffer.indexOf("\n\n")) !== -1) {
          const frame = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          let name = "message";
          const data = [];
          for (const line of frame.split("\n")) {
            if (line.startsWith("event:")) name = line.slice(6).trim();
            else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
          }
          if (data.length) onEvent(name, data.join("\n"));
        }
      }
    } catch (_error) {
      // a dropped connection: try again below
    }
    await new Promise((resolve) => setTimeout(resolve, retryMs));
  }
}

function setBadge(badge, info) {
  badge.textContent = info.words;
  badge.className = "badge " + info.badge;
  badge.dataset.stage = info.stage;
}

// Listing pages: ask /web/stages about the badges shown, every few seconds.
function liveBadges(container) {
  const badges = [...container.querySelectorAll("[data-stage-of]")];
  if (!badges.length || document.querySelector("[data-events-src]")) return;
  const query = badges.map((b) => "space=" + encodeURIComponent(b.dataset.stageOf)).join("&");
  const poll = async () => {
    try {
      const response = await fetch("/web/stages?" + query, { credentials: "same-origin" });
      if (response.ok) {
        const stages = await response.json();
        for (const badge of badges) {
          const info = stages[badge.dataset.stageOf];
          if (info) setBadge(badge, info);
        }
      }
    } catch (_error) { /* the next poll tries again */ }
  };
  setInterval(poll, 5000);
}

// The error panel or the app's frame, whichever the stage calls for now: a page rendered
// at an error (no app file yet, a failed build) shows the app once a push fixes it, and a
// running one shows the error when it fails. True when it loaded the frame just now.
function showFailure(body, answer) {
  const panel = body.querySelector("[data-error-panel]");
  const app = body.querySelector("[data-app-frame]");
  if (!panel || !app) return false;
  panel.hidden = !answer.failed;
  app.hidden = answer.failed;
  if (answer.failed) {
    const stage = answer.words;
    panel.querySelector("[data-error-words]").textContent = stage;
    panel.querySelector("[data-error-stage]").textContent = stage.toLowerCase();
    panel.querySelector("[data-error-message]").textContent = answer.errorMessage || "";
    panel.querySelector("[data-error-details]").hidden = !answer.errorMessage;
    return false;
  }
  const frame = app.querySelector("iframe");
  if (frame && !frame.getAttribute("src") && frame.dataset.src) {
    frame.src = frame.dataset.src;
    return true;
  }
  return false;
}

// A Space's page: each event on its stream refreshes the feed and the stage badge, and
// reloads the app's frame when the Space starts serving.
function liveSpace(body) {
  const space = document.querySelector("[data-space]")?.dataset.space;
  const feed = body.querySelector("[data-feed]");
  const badge = document.querySelector(`[data-stage-of="${CSS.escape(space)}"]`);
  const frame = body.querySelector(".app-frame iframe");
  let newest = Number(new URL(body.dataset.eventsSrc, location.href).searchParams.get("after") || 0);
  let pending = false;
  const refresh = async () => {
    if (pending) return;
    pending = true;
    try {
      const response = await fetch(`/web/feed?space=${encodeURIComponent(space)}&after=${newest}`, { credentials: "same-origin" });
      if (!response.ok) return;
      const answer = await response.json();
      newest = answer.newest;
      for (const item of answer.items.reverse()) {
        const li = document.createElement("li");
        const time = document.createElement("time");
        time.textContent = item.at;
        li.append(time, " " + item.text);
        feed?.prepend(li);
      }
      if (badge) {
        const wasServing = badge.dataset.stage?.startsWith("RUNNING");
        setBadge(badge, answer);
        const loaded = showFailure(body, answer);
        if (frame && !loaded && !wasServing && answer.stage.startsWith("RUNNING")) frame.src = frame.src;
      }
    } finally {
      pending = false;
    }
  };

  readStream(body.dataset.eventsSrc, () => refresh());
}

// Build and container logs: follow the SSE log stream into the <pre>, kept scrolled to the
// end unless the reader scrolled up. Each connection sends the log from its start (the
// build log's ends with the build, and is asked again), so the lines already shown are
// kept, not repeated; a line that differs (a new build's log) replaces the rest.
function liveLog(pre) {
  const MAX_LINES = 5000;
  let next = 0; // this connection's next line, as an index into the lines shown
  const onLine = (_name, data) => {
    let line;
    try { line = JSON.parse(data).data; } catch (_error) { return; }
    if (typeof line !== "string") return;
    const text = line.endsWith("\n") ? line : line + "\n";
    const shown = pre.childNodes;
    if (next < shown.length && shown[next].textContent === text) { next++; return; }
    while (shown.length > next) pre.lastChild.remove();
    const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 8;
    pre.append(text);
    next++;
    while (shown.length > MAX_LINES) { pre.firstChild.remove(); next--; }
    if (atEnd) pre.scrollTop = pre.scrollHeight;
  };
  readStream(pre.dataset.logSrc, onLine, 3000, () => { next = 0; });
}

// Page scripts calling the API on the session's behalf send its CSRF token.
window.spaceportFetch = (url, options = {}) =>
  fetch(url, {
    credentials: "same-origin",
    ...options,
    headers: { "X-CSRF-Token": csrfToken(), ...(options.headers || {}) },
  });

// <dialog> openers: a button with data-opens="id" shows that dialog.
function dialogs() {
  for (const opener of document.querySelectorAll("[data-opens]")) {
    const dialog = document.getElementById(opener.dataset.opens);
    if (dialog && dialog.showModal) {
      opener.addEventListener("click", (event) => { event.preventDefault(); dialog.showModal(); });
    }
  }
  // A confirmation that must name the thing: the button stays off until it is typed.
  for (const input of document.querySelectorAll("[data-must-equal]")) {
    const button = input.form?.querySelector("[type=submit]");
    const check = () => { if (button) button.disabled = input.value !== input.dataset.mustEqual; };
    input.addEventListener("input", check);
    check();
  }
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-live-stages]").forEach(liveBadges);
  document.querySelectorAll("[data-events-src]").forEach(liveSpace);
  document.querySelectorAll("[data-log-src]").forEach(liveLog);
  dialogs();
});
