"""KubernetesBackend without a cluster: how Deployments and pods in the informers' caches
become Instances (waiting, unpullable, crash-looping, ready, an older revision still
serving), the pod log API it reads (a fake CoreV1Api: the apiserver would dial the node for
a real log), and which cache changes wake the controller."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from sandbox.backend import InstanceState, Revision
from sandbox.hardware import get_tier
from sandbox.kubernetes import objects
from sandbox.kubernetes.backend import KubernetesBackend, instance_id
from tests.kube.control_plane import DEFAULT_NODES

NAMESPACE = "spaces"
UID = "0123456789abcdef01234567"


class FakeInformer:
    def __init__(self, items: list[Any] | None = None) -> None:
        self.objects = list(items or [])
        self.handlers: list[Callable[[str, Any], None]] = []

    def items(self) -> list[Any]:
        return list(self.objects)

    def get(self, name: str, namespace: str | None = None) -> Any:
        return next((o for o in self.objects if o.metadata.name == name), None)

    def subscribe(self, handler: Callable[[str, Any], None]) -> None:
        self.handlers.append(handler)

    def send(self, kind: str, obj: Any) -> None:
        for handler in self.handlers:
            handler(kind, obj)


class FakeInformers:
    def __init__(self) -> None:
        self.pods, self.deployments = FakeInformer(), FakeInformer()
        self.events, self.nodes = FakeInformer(), FakeInformer()
        for spec in DEFAULT_NODES:
            manifest = spec.manifest()
            manifest["status"]["conditions"] = [{"type": "Ready", "status": "True"}]
            self.nodes.objects.append(client.V1Node.from_dict(manifest))

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def wait_synced(self, timeout: float) -> bool:
        return True


def settings() -> objects.ObjectSettings:
    return objects.ObjectSettings(
        namespace=NAMESPACE,
        installation="unit",
        gateway_labels={"app": "gateway"},
        blocked_cidrs=("10.0.0.0/8",),
    )


def revision(tier: str = "cpu-basic", generation: int = 0) -> Revision:
    return Revision(
        space_id=UID,
        space="alice/demo",
        sha="c" * 40,
        image="registry.test/demo@sha256:" + "d" * 64,
        port=7860,
        hardware=get_tier(tier),
        generation=generation,
    )


@pytest.fixture
def informers() -> FakeInformers:
    return FakeInformers()


@pytest.fixture
def backend(informers: FakeInformers) -> KubernetesBackend:
    return KubernetesBackend(client.ApiClient(), settings(), informers=informers)  # type: ignore[arg-type]


def deployment(rev: Revision, replicas: int = 1) -> client.V1Deployment:
    made = objects.make_deployment(rev, settings(), replicas=replicas)
    made.metadata.uid = "deployment-uid"
    return made


def pod(
    rev: Revision,
    name: str = "p1",
    node: str | None = "cpu-0",
    status: dict[str, Any] | None = None,
    created: str = "2026-01-01T00:00:00Z",
) -> client.V1Pod:
    template = deployment(rev).spec.template
    body = client.ApiClient().sanitize_for_serialization(template)
    body["metadata"].update(
        name=name, namespace=NAMESPACE, uid=f"uid-{name}", creationTimestamp=created
    )
    if node:
        body["spec"]["nodeName"] = node
    body["status"] = status or {"phase": "Pending"}
    return client.V1Pod.from_dict(body)


def running(ready: bool = True, started: str = "2026-01-01T00:00:02Z") -> dict[str, Any]:
    return {
        "phase": "Running",
        "conditions": [{"type": "Ready", "status": str(ready)}],
        "containerStatuses": [
            {
                "name": objects.CONTAINER,
                "image": "x",
                "imageID": "",
                "ready": ready,
                "restartCount": 0,
                "state": {"running": {"startedAt": started}},
            }
        ],
    }


def test_a_deployment_without_a_pod_yet_is_starting(
    backend: KubernetesBackend, informers: FakeInformers
) -> None:
    rev = revision()
    informers.deployments.objects.append(deployment(rev))
    (instance,) = backend.instances()
    assert instance.id == instance_id(UID, rev.key) == f"space-{UID}/{rev.key}"
    assert (instance.state, instance.ready, instance.address) == (
        InstanceState.STARTING,
        False,
        None,
    )
    assert (instance.space, instance.sha, instance.hardware) == ("alice/demo", rev.sha, "cpu-basic")
    assert (instance.cpus, instance.memory_gib) == (2, 16)


def test_a_sleeping_deployment_has_no_instance(
    backend: KubernetesBackend, informers: FakeInformers
) -> None:
    rev = revision()
    informers.deployments.objects.append(deployment(rev, replicas=0))
    assert backend.instances() == []


def test_ready_and_running_with_the_service_address_and_a_readiness_that_stays(
    backend: KubernetesBackend, informers: FakeInformers
) -> None:
    rev = revision()
    informers.deployments.objects.append(deployment(rev))
    informers.pods.objects.append(pod(rev, status=running(ready=False)))
    (instance,) = backend.instances()
    assert (instance.state, instance.ready, instance.address) == (
        InstanceState.RUNNING,
        False,
        None,  # not the Service's yet: it does not route to this pod
    )
    informers.pods.objects[0] = pod(rev, status=running(ready=True))
    (instance,) = backend.instances()
    assert instance.ready
    assert instance.address == f"http://space-{UID}.{NAMESPACE}.svc:80"
    assert instance.started_at is not None and instance.started_at.year == 2026
    # A busy app failing its probe a while is still the one that answered.
    informers.pods.objects[0] = pod(rev, status=running(ready=False))
    assert backend.instances()[0].ready


def test_an_unschedulable_pod_waits_with_plain_words_and_the_raw_event(
    backend: KubernetesBackend, informers: FakeInformers
) -> None:
    rev = revision("a10g-small")
    # Both A10G nodes are taken by other Spaces' pods.
    for i, node in enumerate(("gpu-a10g-0", "gpu-a10g-1")):
        other = revision("a10g-small")
        taken = pod(other, name=f"other-{i}", node=node, status=running())
        taken.metadata.labels[objects.LABEL_SPACE_ID] = f"{i}" * 24
        informers.pods.objects.append(taken)
    raw = (
        "0/5 nodes are available: 2 Insufficient nvidia.com/gpu, 3 node(s) didn't match "
        "Pod's node affinity/selector. preemption: 0/5 nodes are available: 5 No preemption "
        "victims found for incoming pod."
    )
    status = {
        "phase": "Pending",
        "conditions": [
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": raw}
        ],
    }
    informers.deployments.objects.append(deployment(rev))
    informers.pods.objects.append(pod(rev, name="waiting", node=None, status=status))
    informers.events.objects.append(
        client.CoreV1Event.from_dict(
            {
                "metadata": {"name": "waiting.1", "namespace": NAMESPACE},
                "involvedObject": {"kind": "Pod", "name": "waiting", "uid": "uid-waiting"},
                "reason": "FailedScheduling",
                "message": raw,
                "lastTimestamp": "2026-01-01T00:00:03Z",
            }
        )
    )
    (instance,) = [i for i in backend.instances() if i.space_id == UID]
    assert instance.state == InstanceState.STARTING
    assert instance.waiting_reason == "all 2 A10G GPUs are in use"
    assert instance.waiting_detail == raw
    assert backend.tier_room(get_tier("a10g-small")).free == 0
    assert backend.tier_room(get_tier("t4-small")).free == 1


def test_an_image_that_cannot_be_pulled_is_a_problem(
    backend: KubernetesBackend, informers: FakeInformers
) -> None:
    rev = revision()
    status = running()
    status["phase"] = "Pending"
    status["containerStatuses"][0]["state"] = {
        "waiting": {"reason": "ErrImagePull", "message": "manifest unknown"}
    }
    status["containerStatuses"][0]["image"] = rev.image
    informers.deployments.objects.append(deployment(rev))
    informers.pods.objects.append(pod(rev, status=status))
    (instance,) = backend.instances()
    assert instance.problem == f"the image {rev.image} cannot be pulled: manifest unknown"
    assert instance.state == InstanceState.STARTING


def crash_loop(exit_code: int = 2) -> dict[str, Any]:
    status = running(ready=False)
    status["containerStatuses"][0].update(
        restartCount=4,
        state={"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 1m20s"}},
        lastState={
            "terminated": {
                "exitCode": exit_code,
                "startedAt": "2026-01-01T00:00:05Z",
                "finishedAt": "2026-01-01T00:00:06Z",
            }
        },
    )
    return status


def test_a_crash_loop_is_an_exit_with_the_last_code(
    backend: KubernetesBackend, informers: FakeInformers
) -> None:
    rev = revision()
    informers.deployments.objects.append(deployment(rev))
    informers.pods.objects.append(pod(rev, status=crash_loop(exit_code=2)))
    (instance,) = backend.instances()
    assert (instance.state, instance.exit_code, instance.address) == (InstanceState.EXITED, 2, None)


def test_an_older_revision_still_serving_during_a_rollout(
    backend: KubernetesBackend, informers: FakeInformers
) -> None:
    old, new = revision(), revision(generation=1)
    informers.deployments.objects.append(deployment(new))
    informers.pods.objects += [
        pod(old, name="old", status=running()),
        pod(new, name="new", status=running(ready=False), created="2026-01-01T00:01:00Z"),
    ]
    found = {i.revision: i for i in backend.instances()}
    assert set(found) == {old.key, new.key}
    assert found[old.key].address == f"http://space-{UID}.{NAMESPACE}.svc:80"
    assert found[old.key].id == instance_id(UID, old.key)
    assert found[new.key].address is None and not found[new.key].ready
    # A terminating pod of the old one is no longer an instance.
    old_pod, new_pod = informers.pods.objects
    old_pod.metadata.deletion_timestamp = new_pod.metadata.creation_timestamp
    assert [i.revision for i in backend.instances()] == [new.key]


def test_a_reader_sees_each_live_pod_as_an_instance(informers: FakeInformers) -> None:
    """The API's backend watches pods only (all its service account may read)."""
    reader = KubernetesBackend(
        client.ApiClient(), settings(), informers=informers, reader=True  # type: ignore[arg-type]
    )
    old, new = revision(), revision(generation=1)
    informers.deployments.objects.append(deployment(new))  # not looked at
    informers.pods.objects += [
        pod(old, name="old", status=running()),
        pod(new, name="new", status=crash_loop(), created="2026-01-01T00:01:00Z"),
    ]
    found = {i.revision: i for i in reader.instances()}
    assert set(found) == {old.key, new.key}
    assert found[new.key].state == InstanceState.EXITED
    assert found[old.key].id == instance_id(UID, old.key) and found[old.key].ready
    informers.deployments.objects.clear()
    assert len(reader.instances()) == 2


class FakeResponse:
    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks
        self.closed = False

    def stream(self, amount: int, decode_content: bool = True) -> Any:
        yield from self.chunks

    def close(self) -> None:
        self.closed = True

    def release_conn(self) -> None:
        pass


class FakeCore:
    def __init__(self, previous_missing: bool = False) -> None:
        self.calls: list[dict[str, Any]] = []
        self.previous_missing = previous_missing
        self.response = FakeResponse([b"one\ntw", b"o\nthree"])

    def read_namespaced_pod_log(self, name: str, namespace: str, **kwargs: Any) -> Any:
        self.calls.append({"name": name, "namespace": namespace, **kwargs})
        if kwargs.get("previous") and self.previous_missing:
            raise ApiException(status=400, reason="previous terminated container not found")
        if kwargs.get("follow"):
            return self.response
        return "previous 1\nprevious 2\n" if kwargs.get("previous") else "now 1\nnow 2\n"


def test_logs_of_a_running_pod_and_of_a_crashed_container(
    backend: KubernetesBackend, informers: FakeInformers
) -> None:
    rev = revision()
    informers.deployments.objects.append(deployment(rev))
    informers.pods.objects.append(pod(rev, status=running()))
    core = FakeCore()
    backend.core = core  # type: ignore[assignment]
    iid = instance_id(UID, rev.key)
    assert list(backend.logs(iid, tail=30, timestamps=True)) == ["now 1", "now 2"]
    assert core.calls[-1] == {
        "name": "p1",
        "namespace": NAMESPACE,
        "container": objects.CONTAINER,
        "timestamps": True,
        "tail_lines": 30,
        "previous": False,
        "_request_timeout": 10.0,  # never hangs the controller on one node's kubelet
    }
    # Crashed: what the container printed before it died.
    informers.pods.objects[0] = pod(rev, status=crash_loop())
    assert list(backend.logs(iid, tail=30)) == ["previous 1", "previous 2"]
    assert core.calls[-1]["previous"] is True
    core.previous_missing = True  # the kubelet kept no previous container: the current one
    assert list(backend.logs(iid)) == ["now 1", "now 2"]
    assert [c["previous"] for c in core.calls[-2:]] == [True, False]
    assert list(backend.logs(instance_id(UID, "gone"))) == []


def test_a_followed_log_streams_lines_and_closes(
    backend: KubernetesBackend, informers: FakeInformers
) -> None:
    rev = revision()
    informers.deployments.objects.append(deployment(rev))
    informers.pods.objects.append(pod(rev, status=running()))
    core = FakeCore()
    backend.core = core  # type: ignore[assignment]
    lines = backend.logs(instance_id(UID, rev.key), follow=True, timestamps=True)
    assert list(lines) == ["one", "two", "three"]
    assert core.calls[-1]["follow"] is True and core.calls[-1]["_preload_content"] is False
    lines.close()  # type: ignore[attr-defined]
    assert core.response.closed


def test_watch_wakes_the_controller_for_what_changed(
    backend: KubernetesBackend, informers: FakeInformers
) -> None:
    seen: list[str | None] = []
    backend.watch(seen.append)
    rev = revision()
    informers.pods.send("MODIFIED", pod(rev))
    informers.deployments.send("ADDED", deployment(rev))
    informers.pods.send("RELISTED", None)
    assert seen == [UID, UID, None]

    node = informers.nodes.objects[0]
    informers.nodes.send("ADDED", node)
    heartbeat = copy.deepcopy(node)
    heartbeat.metadata.resource_version = "2"
    informers.nodes.send("MODIFIED", heartbeat)  # a status heartbeat: nothing to look at
    cordoned = copy.deepcopy(node)
    cordoned.spec.unschedulable = True
    informers.nodes.send("MODIFIED", cordoned)
    assert seen[3:] == [None, None]

    waiting = pod(rev, name="waiting", node=None)
    informers.pods.objects.append(waiting)
    event = client.CoreV1Event.from_dict(
        {
            "metadata": {"name": "e", "namespace": NAMESPACE},
            "involvedObject": {"kind": "Pod", "name": "waiting", "namespace": NAMESPACE},
            "reason": "FailedScheduling",
            "message": "0/5 nodes are available",
        }
    )
    informers.events.send("ADDED", event)
    assert seen[-1] == UID



def test_an_environment_a_secret_cannot_hold_refuses_the_start_before_any_write(
    backend: KubernetesBackend,
) -> None:
    """A variable name a Secret key cannot be (the Spaces API only bounds its length) is a
    BackendError naming it, never its value, and nothing reaches the apiserver."""
    from dataclasses import replace

    from sandbox.backend import BackendError

    applied: list[Any] = []
    backend._apply = applied.append  # type: ignore[method-assign]
    bad = replace(revision(), env={"MY VAR": "hunter2-secret"})
    with pytest.raises(BackendError) as raised:
        backend.start(bad)
    assert "MY VAR" in str(raised.value)
    assert "hunter2-secret" not in str(raised.value)
    assert applied == []
