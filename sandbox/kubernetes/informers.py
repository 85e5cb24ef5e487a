"""One shared list-then-watch per kind: caches the Kubernetes backend reads instead of the API.

An `Informer` lists one kind (a resourceVersion comes with the list), then watches from that
version, with bookmarks, for a bounded time the server enforces (`timeout_seconds`), and
watches again from the last version it saw (an event's or a bookmark's), so a quiet watch
never goes back to a stale version. Its cache is kept current by the events; subscribers get
each change after the cache has it.

When the version it resumes from is too old (the API says 410 Gone, as an ERROR event or as
the response), it lists again and compares the new list with its cache: subscribers get the
DELETED, ADDED and MODIFIED they missed, then ("RELISTED", None), meaning "something may have
gone unseen: look at everything". When the connection fails (the API restarting, a cut
connection, a read that times out), it waits (exponential back-off with jitter, capped) and
watches again from where it was: nothing is missed, nothing is listed again. The thread never
dies of an error; a subscriber's exception is logged and the others still run.

The objects are the official client's models (V1Pod, V1Deployment, CoreV1Event, V1Node), as
`kubernetes.watch.Watch` deserialises them.

`Informers` is the set the backend shares: the Spaces' pods and Deployments (by label), the
events of the namespace (events have no labels to select by) and the cluster's nodes.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from kubernetes import client, watch
from kubernetes.client.rest import ApiException

log = logging.getLogger(__name__)

Handler = Callable[[str, Any], None]
Key = tuple[str | None, str]

RELISTED = "RELISTED"
GONE = 410
# The server ends each watch after this long (client-go picks 5 to 10 minutes), so a
# watch whose connection silently died is noticed within a bounded time.
WATCH_TIMEOUT_SECONDS = 300
# A read that waits this much longer than the server's own timeout is a dead connection.
READ_SLACK_SECONDS = 30.0
CONNECT_TIMEOUT_SECONDS = 10.0
LIST_READ_TIMEOUT_SECONDS = 60.0
LIST_PAGE_SIZE = 500
BACKOFF_INITIAL_SECONDS = 0.5
BACKOFF_MAX_SECONDS = 30.0
# A watch that ends this soon with nothing in it counts as a failure (for the back-off), so
# a server that answers and hangs up at once is not asked again in a tight loop.
SHORT_WATCH_SECONDS = 1.0
STOP_TIMEOUT_SECONDS = 10.0


class ResourceExpired(Exception):
    """The version to watch from is too old (410 Gone): list again."""


def _meta(obj: Any) -> Any:
    return getattr(obj, "metadata", None)


def _key(obj: Any) -> Key:
    meta = _meta(obj)
    return (getattr(meta, "namespace", None), str(getattr(meta, "name", "")))


def _version(obj: Any) -> str | None:
    return getattr(_meta(obj), "resource_version", None)


def _is_gone(exc: BaseException) -> bool:
    if isinstance(exc, ApiException):
        if exc.status == GONE:
            return True
        text = f"{exc.reason} {exc.body}".lower()
        return "too old resource version" in text or ("expired" in text and "410" in text)
    return False


class Backoff:
    """Capped exponential back-off with jitter: each delay is a random fraction (from half
    to all) of initial * 2**failures, at most `maximum`."""

    def __init__(
        self,
        initial: float = BACKOFF_INITIAL_SECONDS,
        maximum: float = BACKOFF_MAX_SECONDS,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.initial = initial
        self.maximum = maximum
        self.failures = 0
        self._rand = rand

    def next(self) -> float:
        ceiling = min(self.maximum, self.initial * (2 ** min(self.failures, 30)))
        self.failures += 1
        return ceiling * (0.5 + 0.5 * self._rand())

    def reset(self) -> None:
        self.failures = 0


class Informer:
    """One list-then-watch of one kind: a cache of its objects, kept current by a watch."""

    def __init__(
        self,
        name: str,
        list_call: Callable[..., Any],
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        watch_timeout: int = WATCH_TIMEOUT_SECONDS,
        watch_factory: Callable[[], Any] = watch.Watch,
        backoff: Backoff | None = None,
    ) -> None:
        self.name = name
        self.namespace = namespace
        self.relists = 0
        # The version the next watch starts from: the list's, then each event's or
        # bookmark's. Exposed for tests and benches.
        self.resource_version: str | None = None
        self._list_call = list_call
        self._selectors: dict[str, str] = {}
        if label_selector:
            self._selectors["label_selector"] = label_selector
        if field_selector:
            self._selectors["field_selector"] = field_selector
        self._watch_timeout = watch_timeout
        self._watch_factory = watch_factory
        self._backoff = backoff or Backoff()
        self._cache: dict[Key, Any] = {}
        self._lock = threading.Lock()
        self._handlers: list[Handler] = []
        self._synced = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._watch: Any = None

    # -- life cycle ------------------------------------------------------------------

    def start(self) -> None:
        """Start (or start again after `stop`, from the version and cache it had)."""
        if self._thread is not None and self._thread.is_alive():
            if not self._stopping.is_set():
                return  # running
            self._thread.join(STOP_TIMEOUT_SECONDS)
        # Each run has its own flag: a thread that outlived its stop can never resume.
        self._stopping = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(self._stopping,), name=f"informer-{self.name}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        thread = self._thread
        if thread is None or thread is threading.current_thread():
            return
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        while thread.is_alive() and time.monotonic() < deadline:
            # Watch.stop shuts the socket of the response it reads (the blocked read
            # returns), but only once there is one: a watch still connecting is asked
            # again until the thread has ended.
            current = self._watch
            if current is not None:
                try:
                    current.stop()
                except Exception:  # noqa: BLE001 - stopping anyway
                    log.debug("stopping the %s watch", self.name, exc_info=True)
            thread.join(0.05)
        if thread.is_alive():
            log.warning(
                "the %s informer did not stop within %.0f s", self.name, STOP_TIMEOUT_SECONDS
            )

    def wait_synced(self, timeout: float) -> bool:
        """True once the first list is in the cache."""
        return self._synced.wait(timeout)

    @property
    def synced(self) -> bool:
        return self._synced.is_set()

    # -- reading ---------------------------------------------------------------------

    def items(self) -> list[Any]:
        with self._lock:
            return list(self._cache.values())

    def get(self, name: str, namespace: str | None = None) -> Any | None:
        with self._lock:
            found = self._cache.get((namespace or self.namespace, name))
            if found is None and namespace is None and self.namespace is None:
                # A namespaced kind listed across namespaces, asked by name alone.
                found = next((o for (_, n), o in self._cache.items() if n == name), None)
            return found

    def subscribe(self, handler: Handler) -> None:
        """handler(event_type, obj) for each change: "ADDED", "MODIFIED", "DELETED"; and
        ("RELISTED", None) after a list that followed the first (look at everything). The
        first list gives ADDED for each object. Called on the informer's thread, after the
        cache has the change."""
        with self._lock:
            self._handlers.append(handler)

    # -- the loop --------------------------------------------------------------------

    def _run(self, stopping: threading.Event) -> None:
        while not stopping.is_set():
            try:
                if self.resource_version is None:
                    self._relist()
                self._watch_once(stopping)
            except ResourceExpired as exc:
                log.info(
                    "%s watch expired at %s (%s): listing again",
                    self.name,
                    self.resource_version,
                    exc,
                )
                self.resource_version = None
            except Exception as exc:  # noqa: BLE001 - the thread must outlive any error
                if stopping.is_set():
                    return
                delay = self._backoff.next()
                log.warning(
                    "%s watch lost (%s: %s); again in %.1f s",
                    self.name,
                    type(exc).__name__,
                    exc,
                    delay,
                )
                stopping.wait(delay)

    def _call_args(self) -> list[Any]:
        return [self.namespace] if self.namespace is not None else []

    def _list(self) -> tuple[list[Any], str | None]:
        items: list[Any] = []
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = dict(self._selectors, limit=LIST_PAGE_SIZE)
            if token:
                kwargs["_continue"] = token
            page = self._list_call(
                *self._call_args(),
                _request_timeout=(CONNECT_TIMEOUT_SECONDS, LIST_READ_TIMEOUT_SECONDS),
                **kwargs,
            )
            items.extend(page.items or [])
            meta = page.metadata
            token = getattr(meta, "_continue", None) or getattr(meta, "continue_", None)
            if not token:
                return items, getattr(meta, "resource_version", None)

    def _relist(self) -> None:
        try:
            items, version = self._list()
        except ApiException as exc:
            if _is_gone(exc):  # a continue token expired mid-list: start it over
                raise ResourceExpired(str(exc)) from exc
            raise
        fresh = {_key(obj): obj for obj in items}
        with self._lock:
            old, self._cache = self._cache, fresh
        first = not self._synced.is_set()
        if not first:
            self.relists += 1
        self.resource_version = version
        self._synced.set()
        self._backoff.reset()
        log.debug("%s listed: %d objects at %s", self.name, len(fresh), version)
        for key, obj in old.items():
            if key not in fresh:
                self._dispatch("DELETED", obj)
        for key, obj in fresh.items():
            before = old.get(key)
            if before is None:
                self._dispatch("ADDED", obj)
            elif _version(before) != _version(obj):
                self._dispatch("MODIFIED", obj)
        if not first:
            self._dispatch(RELISTED, None)

    def _watch_once(self, stopping: threading.Event) -> None:
        """One watch from `resource_version` until the server ends it (a normal return) or
        it fails (an exception); ResourceExpired when the version is too old."""
        current = self._watch_factory()
        self._watch = current
        if stopping.is_set():
            return
        began = time.monotonic()
        seen = 0
        try:
            stream = current.stream(
                self._list_call,
                *self._call_args(),
                resource_version=self.resource_version,
                allow_watch_bookmarks=True,
                timeout_seconds=self._watch_timeout,
                _request_timeout=(
                    CONNECT_TIMEOUT_SECONDS,
                    self._watch_timeout + READ_SLACK_SECONDS,
                ),
                **self._selectors,
            )
            for event in stream:
                seen += 1
                if seen == 1:
                    self._backoff.reset()  # connected and answered: failures start over
                if stopping.is_set():
                    break
                self._event(event)
        except ApiException as exc:
            if _is_gone(exc):
                raise ResourceExpired(str(exc)) from exc
            raise
        finally:
            self._watch = None
        if not seen and time.monotonic() - began < SHORT_WATCH_SECONDS and not stopping.is_set():
            raise ConnectionError("the watch ended at once, with nothing in it")

    def _event(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        raw = event.get("raw_object")
        if kind == "BOOKMARK":
            version = ((raw or {}).get("metadata") or {}).get("resourceVersion")
            if version:
                self.resource_version = str(version)
            return
        if kind == "ERROR":
            status = raw or {}
            if status.get("code") == GONE:
                raise ResourceExpired(str(status.get("message", "410 Gone")))
            raise ApiException(status=status.get("code"), reason=str(status.get("message")))
        obj = event.get("object")
        if kind not in ("ADDED", "MODIFIED", "DELETED") or obj is None:
            log.debug("%s watch: ignoring a %s event", self.name, kind)
            return
        key = _key(obj)
        with self._lock:
            if kind == "DELETED":
                self._cache.pop(key, None)
            else:
                self._cache[key] = obj
        version = _version(obj)
        if version:
            self.resource_version = str(version)
        self._dispatch(str(kind), obj)

    def _dispatch(self, kind: str, obj: Any) -> None:
        with self._lock:
            handlers = list(self._handlers)
        for handler in handlers:
            try:
                handler(kind, obj)
            except Exception:  # noqa: BLE001 - one subscriber's bug must not stop the watch
                log.exception("a subscriber of the %s informer failed on %s", self.name, kind)


class Informers:
    """The shared set the Kubernetes backend reads: pods, deployments, events (of the
    namespace) and nodes (cluster-wide)."""

    def __init__(self, api_client: Any, namespace: str, label_selector: str) -> None:
        core = client.CoreV1Api(api_client)
        apps = client.AppsV1Api(api_client)
        self.pods = Informer(
            "pods", core.list_namespaced_pod, namespace=namespace, label_selector=label_selector
        )
        self.deployments = Informer(
            "deployments",
            apps.list_namespaced_deployment,
            namespace=namespace,
            label_selector=label_selector,
        )
        self.events = Informer("events", core.list_namespaced_event, namespace=namespace)
        self.nodes = Informer("nodes", core.list_node)

    def all(self) -> Iterable[Informer]:
        return (self.pods, self.deployments, self.events, self.nodes)

    def start(self) -> None:
        for informer in self.all():
            informer.start()

    def stop(self) -> None:
        for informer in self.all():
            informer._stopping.set()
        for informer in self.all():
            informer.stop()

    def wait_synced(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        return all(
            informer.wait_synced(max(0.0, deadline - time.monotonic())) for informer in self.all()
        )
