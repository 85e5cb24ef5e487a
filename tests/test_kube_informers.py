"""The shared list-then-watch (sandbox/kubernetes/informers.py) against the test control
plane: every change is seen; a watch whose connection is cut resumes from where it was and
loses nothing made while it was down; a watch from an expired version lists again and hands
subscribers what they missed.

The cut is real: the informer reaches the API server through a TCP proxy in this test,
which drops every connection and refuses new ones for a while (TLS passes through it).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from kubernetes import client

from sandbox.kubernetes.informers import Informer, Informers
from tests.kube.control_plane import DEFAULT_NODES, ControlPlane

pytestmark = pytest.mark.kube

LABEL = "spaceport.test/informer=yes"
WAIT = 30.0


class CuttableProxy:
    """127.0.0.1:port → the API server; `cut()` drops every open connection and, until
    `restore()`, takes new ones only to close them at once."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.down = False
        self.accepted = 0
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self._live: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, name="cut-proxy", daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            self.accepted += 1
            if self.down:
                conn.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                conn.close()
                continue
            with self._lock:
                self._live.update((conn, upstream))
            for src, dst in ((conn, upstream), (upstream, conn)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while chunk := src.recv(65536):
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            self._drop(src, dst)

    def _drop(self, *socks: socket.socket) -> None:
        for sock in socks:
            with self._lock:
                self._live.discard(sock)
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def cut(self) -> None:
        self.down = True
        with self._lock:
            live = list(self._live)
        self._drop(*live)

    def restore(self) -> None:
        self.down = False

    def close(self) -> None:
        self._closed = True
        self.cut()
        self._server.close()

    @property
    def open_connections(self) -> int:
        with self._lock:
            return len(self._live)


class Seen:
    """What a subscriber heard, and waiting for something to be heard."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str | None, Any]] = []
        self._cond = threading.Condition()

    def __call__(self, kind: str, obj: Any) -> None:
        with self._cond:
            self.events.append((kind, None if obj is None else obj.metadata.name, obj))
            self._cond.notify_all()

    def pairs(self) -> list[tuple[str, str | None]]:
        with self._cond:
            return [(kind, name) for kind, name, _ in self.events]

    def wait_for(self, what: str, check: Callable[[], bool], timeout: float = WAIT) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not check():
                left = deadline - time.monotonic()
                if left <= 0:
                    pytest.fail(f"never saw {what}; saw {self.pairs()}")
                self._cond.wait(min(left, 0.5))

    def saw(self, *wanted: tuple[str, str | None]) -> Callable[[], bool]:
        return lambda: all(w in [(k, n) for k, n, _ in self.events] for w in wanted)


@pytest.fixture
def proxy(kube_cluster: ControlPlane) -> Iterator[CuttableProxy]:
    url = urlsplit(kube_cluster.server)
    cutter = CuttableProxy((url.hostname or "127.0.0.1", url.port or 443))
    try:
        yield cutter
    finally:
        cutter.close()


def config_map_informer(
    kube_cluster: ControlPlane, namespace: str, proxy: CuttableProxy | None = None
) -> tuple[Informer, client.CoreV1Api, Seen]:
    api_client = kube_cluster.api_client()
    if proxy is not None:
        api_client.configuration.host = f"https://127.0.0.1:{proxy.port}"
        # The kubeconfig loader's hook reloads the kubeconfig (the server too) before each
        # call; the static token needs no refresh.
        api_client.configuration.refresh_api_key_hook = None
    informer = Informer(
        "configmaps",
        client.CoreV1Api(api_client).list_namespaced_config_map,
        namespace=namespace,
        label_selector=LABEL,
    )
    seen = Seen()
    informer.subscribe(seen)
    return informer, client.CoreV1Api(kube_cluster.api_client()), seen


def make_cm(core: client.CoreV1Api, namespace: str, name: str, value: str = "0") -> None:
    key, val = LABEL.split("=")
    core.create_namespaced_config_map(
        namespace,
        {"metadata": {"name": name, "labels": {key: val}}, "data": {"v": value}},
    )


def set_cm(core: client.CoreV1Api, namespace: str, name: str, value: str) -> None:
    core.patch_namespaced_config_map(name, namespace, {"data": {"v": value}})


def compact_etcd(kube_cluster: ControlPlane) -> int:
    """Compact etcd at its current revision (its v3 HTTP gateway): older versions expire."""
    url = kube_cluster.etcd_url
    revision = int(
        httpx.post(f"{url}/v3/kv/range", json={"key": "AA=="}, timeout=10)
        .raise_for_status()
        .json()["header"]["revision"]
    )
    httpx.post(
        f"{url}/v3/kv/compaction", json={"revision": str(revision), "physical": True}, timeout=30
    ).raise_for_status()
    return revision


def values(informer: Informer) -> dict[str, str]:
    return {o.metadata.name: (o.data or {}).get("v", "") for o in informer.items()}


def test_each_change_is_seen_as_typed_objects(
    kube_cluster: ControlPlane, kube_namespace: str
) -> None:
    informer, core, seen = config_map_informer(kube_cluster, kube_namespace)
    make_cm(core, kube_namespace, "before", "1")
    # Not ours (no label): never in the cache.
    core.create_namespaced_config_map(kube_namespace, {"metadata": {"name": "other"}})
    informer.start()
    try:
        assert informer.wait_synced(WAIT)
        assert values(informer) == {"before": "1"}
        make_cm(core, kube_namespace, "during", "2")
        set_cm(core, kube_namespace, "before", "changed")
        core.delete_namespaced_config_map("during", kube_namespace)
        seen.wait_for(
            "the three changes",
            seen.saw(("ADDED", "during"), ("MODIFIED", "before"), ("DELETED", "during")),
        )
        assert seen.pairs() == [
            ("ADDED", "before"),
            ("ADDED", "during"),
            ("MODIFIED", "before"),
            ("DELETED", "during"),
        ]
        assert all(isinstance(obj, client.V1ConfigMap) for _, _, obj in seen.events)
        assert values(informer) == {"before": "changed"}
        assert informer.get("before").data == {"v": "changed"}
        assert informer.get("other") is None and informer.relists == 0
    finally:
        informer.stop()


def test_a_cut_watch_resumes_without_losing_a_change(
    kube_cluster: ControlPlane, kube_namespace: str, proxy: CuttableProxy
) -> None:
    informer, core, seen = config_map_informer(kube_cluster, kube_namespace, proxy)
    make_cm(core, kube_namespace, "a", "1")
    make_cm(core, kube_namespace, "b", "1")
    informer.start()
    try:
        assert informer.wait_synced(WAIT)
        make_cm(core, kube_namespace, "c", "1")
        seen.wait_for("c", seen.saw(("ADDED", "c")))
        assert proxy.open_connections > 0  # the watch goes through the proxy
        proxy.cut()
        # While the watch is down: a change of each kind.
        set_cm(core, kube_namespace, "a", "2")
        core.delete_namespaced_config_map("b", kube_namespace)
        make_cm(core, kube_namespace, "d", "1")
        attempts = proxy.accepted
        time.sleep(2.0)
        assert proxy.accepted > attempts, "the informer did not try to reconnect"
        assert ("MODIFIED", "a") not in seen.pairs(), "the cut did not cut the watch"
        proxy.restore()
        seen.wait_for(
            "the changes made while the watch was down",
            seen.saw(("MODIFIED", "a"), ("DELETED", "b"), ("ADDED", "d")),
        )
        # Resumed from where it was: the watch replayed them, nothing was listed again.
        assert informer.relists == 0
        assert ("RELISTED", None) not in seen.pairs()
        assert seen.pairs()[-3:] == [("MODIFIED", "a"), ("DELETED", "b"), ("ADDED", "d")]
        assert values(informer) == {"a": "2", "c": "1", "d": "1"}
        # And it goes on watching.
        set_cm(core, kube_namespace, "c", "2")
        seen.wait_for("c modified after the resume", seen.saw(("MODIFIED", "c")))
    finally:
        informer.stop()


def make_event(core: client.CoreV1Api, namespace: str, name: str, message: str = "1") -> None:
    core.create_namespaced_event(
        namespace,
        {
            "metadata": {"name": name},
            "involvedObject": {"kind": "ConfigMap", "name": "x", "namespace": namespace},
            "reason": "Testing",
            "message": message,
            "type": "Normal",
        },
    )


def test_an_expired_version_lists_again_and_delivers_what_was_missed(
    kube_cluster: ControlPlane, kube_namespace: str
) -> None:
    """Events have no watch cache in the API server (its default): their watches are
    etcd's, so once etcd is compacted past the version a watch resumes from, the server
    answers 410 Gone, as after a long outage."""
    api_client = kube_cluster.api_client()
    core = client.CoreV1Api(api_client)
    informer = Informer("events", core.list_namespaced_event, namespace=kube_namespace)
    seen = Seen()
    informer.subscribe(seen)
    for name in ("stays", "changes", "goes"):
        make_event(core, kube_namespace, name)
    informer.start()
    try:
        assert informer.wait_synced(WAIT)
        seen.wait_for("the list", lambda: len(seen.events) == 3)
        informer.stop()  # down for a while, its cache and version kept
        stale = informer.resource_version
        core.patch_namespaced_event("changes", kube_namespace, {"message": "2"})
        core.delete_namespaced_event("goes", kube_namespace)
        make_event(core, kube_namespace, "comes")
        assert compact_etcd(kube_cluster) > int(stale or 0)
        informer.start()
        seen.wait_for("a re-list", seen.saw(("RELISTED", None)))
        assert informer.relists == 1
        missed = seen.pairs()[3:]
        assert sorted(missed[:-1]) == [
            ("ADDED", "comes"),
            ("DELETED", "goes"),
            ("MODIFIED", "changes"),
        ]
        assert missed[-1] == ("RELISTED", None)
        assert all(isinstance(obj, client.CoreV1Event) for _, _, obj in seen.events[:-1])
        messages = {e.metadata.name: e.message for e in informer.items()}
        assert messages == {"stays": "1", "changes": "2", "comes": "1"}
        # It watches again, from the new list's version.
        assert int(informer.resource_version or 0) > int(stale or 0)
        core.patch_namespaced_event("stays", kube_namespace, {"message": "3"})
        seen.wait_for("a change after the re-list", seen.saw(("MODIFIED", "stays")))
        assert informer.relists == 1
    finally:
        informer.stop()


def test_the_shared_set_follows_pods_deployments_events_and_nodes(
    kube_cluster: ControlPlane, kube_namespace: str
) -> None:
    api_client = kube_cluster.api_client()
    informers = Informers(api_client, kube_namespace, LABEL)
    pods, deployments = Seen(), Seen()
    informers.pods.subscribe(pods)
    informers.deployments.subscribe(deployments)
    informers.start()
    try:
        assert informers.wait_synced(WAIT)
        nodes = {n.metadata.name: n for n in informers.nodes.items()}
        assert set(nodes) >= {spec.name for spec in DEFAULT_NODES}
        assert all(isinstance(n, client.V1Node) for n in nodes.values())
        assert nodes["gpu-a10g-0"].status.allocatable["nvidia.com/gpu"] == "1"

        key, val = LABEL.split("=")
        labels = {key: val, "app": "informed"}
        client.AppsV1Api(api_client).create_namespaced_deployment(
            kube_namespace,
            {
                "metadata": {"name": "informed", "labels": labels},
                "spec": {
                    "replicas": 1,
                    "selector": {"matchLabels": labels},
                    "template": {
                        "metadata": {"labels": labels},
                        "spec": {
                            "containers": [{"name": "app", "image": "registry.invalid/app:1"}]
                        },
                    },
                },
            },
        )

        def running_pod() -> bool:
            return any(
                isinstance(p, client.V1Pod) and p.spec.node_name and p.status.phase == "Running"
                for p in informers.pods.items()
            )

        pods.wait_for("a Running pod placed by the scheduler", running_pod)
        (pod,) = informers.pods.items()
        assert pod.spec.node_name.startswith("cpu-")  # untolerated GPU taints keep it off
        deployments.wait_for(
            "the Deployment ready",
            lambda: any(
                isinstance(d, client.V1Deployment) and (d.status.ready_replicas or 0) == 1
                for d in informers.deployments.items()
            ),
        )
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            scheduled = [
                e
                for e in informers.events.items()
                if e.reason == "Scheduled" and e.involved_object.name == pod.metadata.name
            ]
            if scheduled:
                break
            time.sleep(0.2)
        else:
            pytest.fail(f"no Scheduled event for {pod.metadata.name} in the events cache")
        assert isinstance(scheduled[0], client.CoreV1Event)

        client.AppsV1Api(api_client).delete_namespaced_deployment(
            "informed", kube_namespace, propagation_policy="Foreground"
        )
        pods.wait_for("the pod deleted", pods.saw(("DELETED", pod.metadata.name)))
        deployments.wait_for("the Deployment deleted", deployments.saw(("DELETED", "informed")))
        assert informers.pods.items() == [] and informers.deployments.items() == []
        assert all(i.relists == 0 for i in informers.all())
    finally:
        informers.stop()
