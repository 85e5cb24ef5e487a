"""The shared list-then-watch (sandbox/kubernetes/informers.py) over a fake API: what the
cache holds and what subscribers hear through lists, watches, bookmarks, 410 Gone (as an
ERROR event or as the response), lost connections and subscribers that raise."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from sandbox.kubernetes.informers import Backoff, Informer, Informers

NS = "spaces"


def cm(name: str, version: str, value: str = "") -> client.V1ConfigMap:
    return client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name=name, namespace=NS, resource_version=version),
        data={"v": value},
    )


def page(version: str, *items: client.V1ConfigMap, token: str | None = None) -> Any:
    return client.V1ConfigMapList(
        items=list(items),
        metadata=client.V1ListMeta(resource_version=version, _continue=token),
    )


def event(kind: str, obj: client.V1ConfigMap) -> dict[str, Any]:
    return {
        "type": kind,
        "object": obj,
        "raw_object": client.ApiClient().sanitize_for_serialization(obj),
    }


def bookmark(version: str) -> dict[str, Any]:
    raw = {"kind": "ConfigMap", "metadata": {"resourceVersion": version}}
    return {"type": "BOOKMARK", "object": raw, "raw_object": raw}


def gone_event() -> dict[str, Any]:
    raw = {
        "kind": "Status",
        "code": 410,
        "reason": "Expired",
        "message": "too old resource version: 5 (90)",
    }
    return {"type": "ERROR", "object": raw, "raw_object": raw}


class FakeApi:
    """list_call for the informer: scripted list answers (a page, or an exception), and a
    record of every call (list or watch) with its arguments."""

    def __init__(self, lists: list[Any]) -> None:
        self.lists = list(lists)
        self.calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append((args, kwargs))
        if kwargs.get("watch"):
            raise AssertionError("the fake Watch does not call the API")
        answer = self.lists.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer


class FakeWatches:
    """The Watch factory: each watch plays the next script (events, then an exception or
    the end of the stream); once the scripts are used up a watch blocks until stopped."""

    def __init__(self, scripts: list[list[Any]]) -> None:
        self.scripts = list(scripts)
        self.streams: list[dict[str, Any]] = []  # the kwargs of each watch
        self.done = threading.Event()

    def __call__(self) -> FakeWatches.One:
        return FakeWatches.One(self)

    class One:
        def __init__(self, parent: FakeWatches) -> None:
            self.parent = parent
            self.stopped = threading.Event()

        def stop(self) -> None:
            self.stopped.set()

        def stream(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Iterator[Any]:
            self.parent.streams.append({"args": args, **kwargs})
            if not self.parent.scripts:
                self.parent.done.set()
                self.stopped.wait(10)
                return
            for step in self.parent.scripts.pop(0):
                if isinstance(step, BaseException):
                    raise step
                yield step


class Recorder:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str | None]] = []

    def __call__(self, kind: str, obj: Any) -> None:
        self.seen.append(
            (kind, None if obj is None else f"{obj.metadata.name}@{obj.metadata.resource_version}")
        )


def run(
    lists: list[Any], scripts: list[list[Any]], **kwargs: Any
) -> tuple[Informer, FakeApi, FakeWatches, Recorder]:
    api, watches, recorder = FakeApi(lists), FakeWatches(scripts), Recorder()
    informer = Informer(
        "configmaps",
        api,
        namespace=NS,
        label_selector="app=x",
        watch_factory=watches,
        backoff=kwargs.pop("backoff", Backoff(initial=0.001, maximum=0.002)),
        **kwargs,
    )
    informer.subscribe(recorder)
    informer.start()
    assert watches.done.wait(10), "the informer never reached its last watch"
    informer.stop()
    return informer, api, watches, recorder


def names(informer: Informer) -> dict[str, str]:
    return {o.metadata.name: o.metadata.resource_version for o in informer.items()}


def test_list_then_watch_keeps_the_cache_and_tells_subscribers() -> None:
    informer, api, watches, seen = run(
        [page("10", cm("a", "7"), cm("b", "9"))],
        [
            [
                event("ADDED", cm("c", "11")),
                event("MODIFIED", cm("a", "12", "new")),
                event("DELETED", cm("b", "13")),
            ]
        ],
    )
    assert seen.seen == [
        ("ADDED", "a@7"),
        ("ADDED", "b@9"),
        ("ADDED", "c@11"),
        ("MODIFIED", "a@12"),
        ("DELETED", "b@13"),
    ]
    assert names(informer) == {"a": "12", "c": "11"}
    assert informer.get("a").data == {"v": "new"}
    assert informer.get("b") is None
    assert informer.wait_synced(0) and informer.relists == 0
    # The list: namespaced, by label, in pages; the first watch from the list's version.
    ((args, kwargs),) = api.calls
    assert args == (NS,) and kwargs["label_selector"] == "app=x" and kwargs["limit"] == 500
    first = watches.streams[0]
    assert first["args"] == (NS,)
    assert first["resource_version"] == "10"
    assert first["allow_watch_bookmarks"] is True
    assert first["label_selector"] == "app=x"
    assert first["timeout_seconds"] > 0
    assert first["_request_timeout"][1] > first["timeout_seconds"]  # the server ends it first
    # The server ended it: the next watch goes on from the last event's version.
    assert watches.streams[1]["resource_version"] == "13"


def test_a_list_in_pages_is_read_whole() -> None:
    informer, api, watches, seen = run(
        [page("20", cm("a", "1"), token="more"), page("20", cm("b", "2"))], [[]]
    )
    assert names(informer) == {"a": "1", "b": "2"}
    assert api.calls[1][1]["_continue"] == "more"
    assert watches.streams[0]["resource_version"] == "20"


def test_a_bookmark_moves_the_version_without_an_event() -> None:
    informer, api, watches, seen = run(
        [page("10", cm("a", "7"))],
        [[bookmark("55")], [bookmark("60"), ConnectionResetError("cut")]],
    )
    assert [s["resource_version"] for s in watches.streams] == ["10", "55", "60"]
    assert seen.seen == [("ADDED", "a@7")]  # bookmarks are not changes
    assert len(api.calls) == 1 and informer.relists == 0  # resumed, never listed again


@pytest.mark.parametrize(
    "expiry",
    [
        ApiException(status=410, reason="Expired: too old resource version: 10 (90)"),
        gone_event(),
    ],
    ids=["410-response", "410-error-event"],
)
def test_an_expired_version_lists_again_and_tells_what_was_missed(expiry: Any) -> None:
    informer, api, watches, seen = run(
        [
            page("10", cm("stays", "1"), cm("changes", "2"), cm("goes", "3")),
            page("90", cm("stays", "1"), cm("changes", "80", "new"), cm("comes", "85")),
        ],
        [[event("ADDED", cm("early", "11")), expiry]],
    )
    assert informer.relists == 1
    assert names(informer) == {"stays": "1", "changes": "80", "comes": "85"}
    assert seen.seen[4:] == [
        ("DELETED", "goes@3"),
        ("DELETED", "early@11"),
        ("MODIFIED", "changes@80"),
        ("ADDED", "comes@85"),
        ("RELISTED", None),
    ]
    assert watches.streams[0]["resource_version"] == "10"
    assert watches.streams[1]["resource_version"] == "90"  # from the new list, not the stale one


def test_lost_connections_back_off_and_resume_where_they_were() -> None:
    slept: list[float] = []
    backoff = Backoff(initial=0.001, maximum=0.004, rand=lambda: 1.0)
    real_next = backoff.next

    def next_delay() -> float:
        delay = real_next()
        slept.append(delay)
        return delay

    backoff.next = next_delay  # type: ignore[method-assign]
    informer, api, watches, seen = run(
        [ConnectionRefusedError("down"), page("10", cm("a", "7"))],
        [
            [ConnectionResetError("cut")],
            [ConnectionResetError("cut")],
            [ConnectionResetError("cut")],
            [ConnectionResetError("cut")],
            [event("MODIFIED", cm("a", "20")), ConnectionResetError("cut")],
            [ConnectionResetError("cut")],
        ],
        backoff=backoff,
    )
    # A failed list, four failed watches (the list's success reset the count), then one
    # that got an event (reset) before it failed, then one more.
    assert slept == [0.001, 0.001, 0.002, 0.004, 0.004, 0.001, 0.002]
    assert informer.relists == 0 and len(api.calls) == 2
    assert [s["resource_version"] for s in watches.streams] == ["10"] * 5 + ["20", "20"]
    assert seen.seen == [("ADDED", "a@7"), ("MODIFIED", "a@20")]


def test_backoff_is_capped_exponential_with_jitter() -> None:
    top = Backoff(initial=0.5, maximum=30, rand=lambda: 1.0)
    assert [top.next() for _ in range(8)] == [0.5, 1, 2, 4, 8, 16, 30, 30]
    low = Backoff(initial=0.5, maximum=30, rand=lambda: 0.0)
    assert [low.next() for _ in range(3)] == [0.25, 0.5, 1]
    low.reset()
    assert low.next() == 0.25


def test_a_watch_that_ends_at_once_counts_as_a_failure() -> None:
    slept: list[float] = []
    backoff = Backoff(initial=0.001, maximum=0.001)
    backoff.next = lambda: slept.append(0.001) or 0.001  # type: ignore[method-assign]
    run([page("10")], [[], []], backoff=backoff)
    assert len(slept) == 2


def test_a_subscriber_that_raises_harms_nothing(caplog: pytest.LogCaptureFixture) -> None:
    after: list[str] = []

    def broken(kind: str, obj: Any) -> None:
        raise RuntimeError("subscriber bug")

    api, watches = (
        FakeApi([page("10", cm("a", "7"))]),
        FakeWatches([[event("ADDED", cm("b", "8"))]]),
    )
    informer = Informer("configmaps", api, namespace=NS, watch_factory=watches)
    informer.subscribe(broken)
    informer.subscribe(lambda kind, obj: after.append(f"{kind} {obj.metadata.name}"))
    informer.start()
    assert watches.done.wait(10)
    informer.stop()
    assert after == ["ADDED a", "ADDED b"]
    assert names(informer) == {"a": "7", "b": "8"}
    assert "a subscriber of the configmaps informer failed on ADDED" in caplog.text


def test_other_api_errors_are_retried_not_relisted() -> None:
    informer, api, watches, seen = run(
        [page("10", cm("a", "7"))],
        [
            [ApiException(status=500, reason="etcdserver: leader changed")],
            [event("DELETED", cm("a", "9"))],
        ],
    )
    assert informer.relists == 0 and len(api.calls) == 1
    assert [s["resource_version"] for s in watches.streams] == ["10", "10", "9"]
    assert informer.items() == []


def test_stop_ends_the_thread_promptly() -> None:
    api, watches = FakeApi([page("10")]), FakeWatches([])
    informer = Informer("configmaps", api, namespace=NS, watch_factory=watches)
    informer.start()
    assert informer.wait_synced(5) and watches.done.wait(5)
    thread = informer._thread
    began = time.monotonic()
    informer.stop()
    assert thread is not None and not thread.is_alive()
    assert time.monotonic() - began < 2


def test_the_shared_set_is_pods_deployments_events_and_nodes() -> None:
    informers = Informers(client.ApiClient(), NS, "spaceport.dev/managed=true")
    assert informers.pods.namespace == NS and informers.pods._selectors == {
        "label_selector": "spaceport.dev/managed=true"
    }
    assert informers.deployments._selectors == {"label_selector": "spaceport.dev/managed=true"}
    assert informers.events.namespace == NS and informers.events._selectors == {}
    assert informers.nodes.namespace is None and informers.nodes._selectors == {}
    assert informers.pods._list_call.__name__ == "list_namespaced_pod"
    assert informers.deployments._list_call.__name__ == "list_namespaced_deployment"
    assert informers.events._list_call.__name__ == "list_namespaced_event"
    assert informers.nodes._list_call.__name__ == "list_node"


class ConnectingWatch:
    """Like kubernetes.watch.Watch: stop() only reaches a response it already has, and
    stream() forgets an earlier stop()."""

    started = threading.Event()

    def __init__(self) -> None:
        self._stop = False
        self._resp: threading.Event | None = None

    def stop(self) -> None:
        self._stop = True
        if self._resp is not None:
            self._resp.set()  # the socket shut: the blocked read returns

    def stream(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Iterator[Any]:
        self._stop = False
        ConnectingWatch.started.set()
        time.sleep(0.3)  # connecting
        self._resp = threading.Event()
        self._resp.wait(30)  # reading
        return
        yield


def test_stop_reaches_a_watch_that_was_still_connecting() -> None:
    informer = Informer(
        "configmaps", FakeApi([page("10")]), namespace=NS, watch_factory=ConnectingWatch
    )
    informer.start()
    assert ConnectingWatch.started.wait(5)
    thread = informer._thread
    informer.stop()
    assert thread is not None and not thread.is_alive()


def test_it_starts_again_from_where_it_stopped() -> None:
    api, watches = (
        FakeApi([page("10", cm("a", "7"))]),
        FakeWatches([[event("ADDED", cm("b", "8"))]]),
    )
    informer = Informer("configmaps", api, namespace=NS, watch_factory=watches)
    informer.start()
    assert watches.done.wait(5)
    informer.stop()
    watches.done.clear()
    informer.start()
    assert watches.done.wait(5)
    informer.stop()
    assert len(api.calls) == 1 and informer.relists == 0  # not listed again
    assert [s["resource_version"] for s in watches.streams] == ["10", "8", "8"]
    assert names(informer) == {"a": "7", "b": "8"}
