"""Readiness: a backend probes its own instances until each answers, concurrently.

An instance is ready once it answers HTTP at all on / (a 404 still proves it serves). The
prober keeps a set of instances not ready yet and probes each at most once at a time, in a
bounded pool: a Space whose probe hangs holds one worker for the probe's timeout and never
delays another's. Ready instances are not probed again (a crash shows as an exit, not as a
slow answer), so a host of idle running Spaces costs no probes at all.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx

log = logging.getLogger(__name__)
# An app not listening yet refuses at once; one that listens may take a while to render
# its first page (Gradio's / on a 0.5-CPU tier of a loaded host takes seconds). A probe
# that gave up after 2 s and asked again every half second left such an app a queue of
# abandoned renders, and it never caught up: it was never found ready.
CONNECT_TIMEOUT_SECONDS = 2.0
ANSWER_TIMEOUT_SECONDS = 15.0


def answers(address: str) -> bool:
    """Healthy means the app answers HTTP at all: a 404 on / still proves it is serving."""
    timeout = httpx.Timeout(ANSWER_TIMEOUT_SECONDS, connect=CONNECT_TIMEOUT_SECONDS)
    try:
        return httpx.get(address + "/", timeout=timeout).status_code < 500
    except httpx.HTTPError:
        return False


class Prober:
    """Probes registered instances every `interval` seconds until they answer, then calls
    `on_ready(space_uid)`."""

    def __init__(
        self,
        on_ready: Callable[[str], None],
        probe: Callable[[str], bool] = answers,
        concurrency: int = 16,
        interval: float = 0.5,
    ) -> None:
        self._probe = probe
        self._on_ready = on_ready
        self._interval = interval
        self._pool = ThreadPoolExecutor(max(1, concurrency), thread_name_prefix="probe")
        self._lock = threading.Lock()
        self._pending: dict[str, tuple[str, str]] = {}  # instance id -> (address, space uid)
        self._in_flight: set[str] = set()
        self._ready: set[str] = set()
        self._wake = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None

    def is_ready(self, instance_id: str) -> bool:
        return instance_id in self._ready

    def watch(self, instance_id: str, address: str, space_uid: str) -> None:
        """Probe this instance until it answers (a no-op when it did or is probed)."""
        with self._lock:
            if instance_id in self._ready or instance_id in self._pending or self._closed:
                return
            self._pending[instance_id] = (address, space_uid)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="prober", daemon=True)
                self._thread.start()
        self._wake.set()  # probe a new instance at once, not after the interval

    def forget(self, instance_id: str) -> None:
        with self._lock:
            self._pending.pop(instance_id, None)
            self._ready.discard(instance_id)

    def keep_only(self, instance_ids: set[str]) -> None:
        """Drop what the backend no longer lists (exited or removed meanwhile)."""
        with self._lock:
            for gone in set(self._pending) - instance_ids:
                del self._pending[gone]
            self._ready &= instance_ids

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._pending.clear()
        self._wake.set()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _run(self) -> None:
        while not self._closed:
            with self._lock:
                due = [
                    (instance_id, *target)
                    for instance_id, target in self._pending.items()
                    if instance_id not in self._in_flight
                ]
                self._in_flight.update(instance_id for instance_id, _, _ in due)
            for instance_id, address, space_uid in due:
                try:
                    self._pool.submit(self._probe_one, instance_id, address, space_uid)
                except RuntimeError:  # shut down meanwhile
                    return
            self._wake.wait(self._interval)
            self._wake.clear()

    def _probe_one(self, instance_id: str, address: str, space_uid: str) -> None:
        try:
            ok = self._probe(address)
        except Exception:  # noqa: BLE001 - a probe that fails is a "not yet"
            log.debug("probing %s failed", address, exc_info=True)
            ok = False
        with self._lock:
            self._in_flight.discard(instance_id)
            if not ok or self._pending.pop(instance_id, None) is None:
                return
            self._ready.add(instance_id)
        self._on_ready(space_uid)
