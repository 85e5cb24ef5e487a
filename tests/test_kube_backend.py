"""KubernetesBackend against the real test control plane (tests/kube/control_plane.py):
a real apiserver, scheduler and controller manager, with kwok playing every node's kubelet.

Pods land where the scheduler puts them (CPU Spaces on cpu-*, A10G Spaces on gpu-a10g-*),
kwok marks them Running and Ready, Deployments roll and scale, the garbage collector follows
owner references. What kwok does not do (a kubelet failing to pull an image, a container
crash-looping) is reported the way a kubelet reports it: by writing the pod's status, which
is what kwok itself does. Nothing here connects to a pod or node IP.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client

from sandbox.backend import Instance, InstanceState, Revision
from sandbox.hardware import get_tier
from sandbox.kubernetes import objects
from sandbox.kubernetes.backend import KubernetesBackend, instance_id
from tests.kube.control_plane import ControlPlane
from tests.kube.kubelet import CRASH_LOOP, report_app_status

pytestmark = pytest.mark.kube

INSTALLATION = "kube-test"
WAIT_SECONDS = 60.0


def wait_for(what: str, check: Callable[[], Any], timeout: float = WAIT_SECONDS) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def object_settings(namespace: str, **changes: Any) -> objects.ObjectSettings:
    return objects.ObjectSettings(
        namespace=namespace,
        installation=INSTALLATION,
        gateway_labels={"app.kubernetes.io/name": "spaceport"},
        blocked_cidrs=("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"),
        **changes,
    )


def new_uid() -> str:
    return uuid.uuid4().hex[:24]


def revision(uid: str, tier: str = "cpu-basic", generation: int = 0) -> Revision:
    return Revision(
        space_id=uid,
        space=f"alice/space-{uid[:6]}",
        sha="a" * 40,
        image="registry.test/spaces/app@sha256:" + "b" * 64,  # nothing pulls on kwok
        port=7860,
        hardware=get_tier(tier),
        env={"SPACE_HOST": f"alice-{uid[:6]}.spaces.test", "HF_TOKEN": "hf_s3cret_value"},
        generation=generation,
    )


@pytest.fixture
def api(kube_cluster: ControlPlane) -> client.ApiClient:
    return kube_cluster.api_client()


@pytest.fixture
def make_backend(
    kube_cluster: ControlPlane, kube_namespace: str
) -> Iterator[Callable[..., KubernetesBackend]]:
    made: list[KubernetesBackend] = []

    def make(**changes: Any) -> KubernetesBackend:
        backend = KubernetesBackend(
            kube_cluster.api_client(), object_settings(kube_namespace, **changes)
        )
        backend.prepare()
        made.append(backend)
        return backend

    yield make
    for backend in made:
        backend.close()


@pytest.fixture
def backend(make_backend: Callable[..., KubernetesBackend]) -> KubernetesBackend:
    return make_backend()


@pytest.fixture
def no_gpu_taken(api: client.ApiClient) -> None:
    """Earlier tests' namespaces are deleted in the background: wait until no pod of the
    cluster holds a GPU, so GPU counts start from the whole pool."""
    core = client.CoreV1Api(api)

    def free() -> bool:
        for pod in core.list_pod_for_all_namespaces().items:
            if pod.status.phase in ("Succeeded", "Failed") or not pod.spec.node_name:
                continue
            for container in pod.spec.containers:
                requests = (container.resources and container.resources.requests) or {}
                if requests.get("nvidia.com/gpu"):
                    return False
        return True

    wait_for("the GPUs of earlier tests to be freed", free, timeout=120)


def instance_of(backend: KubernetesBackend, uid: str) -> list[Instance]:
    return [i for i in backend.instances() if i.space_id == uid]


def ready_instance(backend: KubernetesBackend, uid: str) -> Instance:
    return wait_for(
        f"{uid} to be ready",
        lambda: next((i for i in instance_of(backend, uid) if i.ready), None),
    )


def pods_of(api: client.ApiClient, namespace: str, uid: str) -> list[client.V1Pod]:
    selector = f"{objects.LABEL_SPACE_ID}={uid}"
    pods = client.CoreV1Api(api).list_namespaced_pod(namespace, label_selector=selector).items
    return [p for p in pods if p.metadata.deletion_timestamp is None]


def test_a_cpu_space_runs_on_a_cpu_node_and_becomes_ready(
    backend: KubernetesBackend, api: client.ApiClient, kube_namespace: str
) -> None:
    uid = new_uid()
    rev = revision(uid)
    started = backend.start(rev)
    assert started.id == instance_id(uid, rev.key) == f"space-{uid}/{rev.key}"
    assert started.state == InstanceState.STARTING

    instance = ready_instance(backend, uid)
    assert instance.id == started.id
    assert instance.state == InstanceState.RUNNING
    assert instance.address == f"http://space-{uid}.{kube_namespace}.svc:80"
    assert (instance.revision, instance.sha, instance.space) == (rev.key, rev.sha, rev.space)
    assert (instance.cpus, instance.memory_gib, instance.hardware) == (2, 16, "cpu-basic")
    assert instance.started_at is not None
    assert instance.waiting_reason is None and instance.problem is None

    # The API's reader (a watch of pods alone) sees the same instance.
    reader = KubernetesBackend(api, backend.settings, reader=True)
    try:
        assert [(i.id, i.ready) for i in instance_of(reader, uid)] == [(instance.id, True)]
    finally:
        reader.close()

    (pod,) = pods_of(api, kube_namespace, uid)
    assert pod.spec.node_name.startswith("cpu-")
    app = pod.spec.containers[0]
    assert app.resources.requests["cpu"] == app.resources.limits["cpu"] == "2"
    assert app.resources.requests["memory"] == "16Gi"
    assert not pod.spec.tolerations or all(t.key != "nvidia.com/gpu" for t in pod.spec.tolerations)
    # The secret is in the Secret, never in the Deployment.
    deployment = client.AppsV1Api(api).read_namespaced_deployment(f"space-{uid}", kube_namespace)
    assert "hf_s3cret_value" not in str(api.sanitize_for_serialization(deployment))
    secret = client.CoreV1Api(api).read_namespaced_secret(f"space-{uid}-env", kube_namespace)
    assert secret.metadata.owner_references[0].uid == deployment.metadata.uid


def test_a_gpu_space_runs_on_a_gpu_node_of_its_part(
    backend: KubernetesBackend, api: client.ApiClient, kube_namespace: str, no_gpu_taken: None
) -> None:
    uid = new_uid()
    backend.start(revision(uid, "a10g-small"))
    instance = ready_instance(backend, uid)
    assert (instance.cpus, instance.memory_gib, instance.hardware) == (4, 15, "a10g-small")

    (pod,) = pods_of(api, kube_namespace, uid)
    assert pod.spec.node_name in ("gpu-a10g-0", "gpu-a10g-1")
    assert pod.spec.node_selector == {"spaceport.dev/accelerator": "a10g"}
    assert [(t.key, t.operator, t.effect) for t in pod.spec.tolerations or []] >= [
        ("nvidia.com/gpu", "Exists", "NoSchedule")
    ]
    resources = pod.spec.containers[0].resources
    assert resources.requests["nvidia.com/gpu"] == resources.limits["nvidia.com/gpu"] == "1"


def test_sleep_scales_to_zero_and_a_wake_back_to_one(
    backend: KubernetesBackend, api: client.ApiClient, kube_namespace: str
) -> None:
    uid = new_uid()
    rev = revision(uid)
    backend.start(rev)
    instance = ready_instance(backend, uid)
    apps = client.AppsV1Api(api)

    backend.stop(instance.id)
    assert apps.read_namespaced_deployment(f"space-{uid}", kube_namespace).spec.replicas == 0
    assert instance_of(backend, uid) == []  # at once: stop waits for the caches to see it
    wait_for("the pod to go", lambda: not pods_of(api, kube_namespace, uid))
    # Asleep, the Space keeps its objects.
    core = client.CoreV1Api(api)
    core.read_namespaced_service(f"space-{uid}", kube_namespace)
    core.read_namespaced_secret(f"space-{uid}-env", kube_namespace)

    woken = backend.start(rev)
    assert woken.id == instance.id
    assert apps.read_namespaced_deployment(f"space-{uid}", kube_namespace).spec.replicas == 1
    assert ready_instance(backend, uid).id == instance.id
    backend.stop("space-nothing0000000000000000/abc")  # a Space that is gone: a no-op


def test_stopping_an_older_revision_leaves_the_current_one_running(
    backend: KubernetesBackend, api: client.ApiClient, kube_namespace: str
) -> None:
    uid = new_uid()
    first = revision(uid)
    backend.start(first)
    ready_instance(backend, uid)
    second = revision(uid, generation=1)  # a restart: a new revision key, a rollout
    backend.start(second)
    new = wait_for(
        "the new revision to be ready",
        lambda: next(
            (i for i in instance_of(backend, uid) if i.revision == second.key and i.ready), None
        ),
    )
    backend.stop(instance_id(uid, first.key))
    deployment = client.AppsV1Api(api).read_namespaced_deployment(f"space-{uid}", kube_namespace)
    assert deployment.spec.replicas == 1
    wait_for(
        "the rollout to remove the old pod",
        lambda: [i.revision for i in instance_of(backend, uid)] == [second.key],
    )
    assert ready_instance(backend, uid).id == new.id


def test_a_restarted_controller_adopts_what_exists(
    make_backend: Callable[..., KubernetesBackend], api: client.ApiClient, kube_namespace: str
) -> None:
    first = make_backend()
    uid = new_uid()
    rev = revision(uid)
    first.start(rev)
    before = ready_instance(first, uid)
    pods = [p.metadata.name for p in pods_of(api, kube_namespace, uid)]
    apps = client.AppsV1Api(api)
    generation = apps.read_namespaced_deployment(f"space-{uid}", kube_namespace).metadata.generation
    first.close()

    second = make_backend()
    (adopted,) = instance_of(second, uid)
    assert (adopted.id, adopted.state) == (before.id, InstanceState.RUNNING)
    second.start(rev)  # what a controller that lost track of its start would do
    time.sleep(1.0)
    assert [p.metadata.name for p in pods_of(api, kube_namespace, uid)] == pods
    deployment = apps.read_namespaced_deployment(f"space-{uid}", kube_namespace)
    assert deployment.metadata.generation == generation
    selector = f"{objects.LABEL_SPACE_ID}={uid}"
    assert len(apps.list_namespaced_replica_set(kube_namespace, label_selector=selector).items) == 1


def test_forget_removes_every_object_of_the_space(
    make_backend: Callable[..., KubernetesBackend], api: client.ApiClient, kube_namespace: str
) -> None:
    backend = make_backend(ingress_class="nginx", ingress_service="spaceport-gateway")
    uid, other = new_uid(), new_uid()
    backend.start(revision(uid))
    backend.start(revision(other))
    ready_instance(backend, uid)
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    networking = client.NetworkingV1Api(api)
    selector = f"{objects.LABEL_SPACE_ID}={uid}"
    def listed(call: Callable[..., Any]) -> Callable[[], Any]:
        return lambda: call(kube_namespace, label_selector=selector)

    listers = {
        "deployments": listed(apps.list_namespaced_deployment),
        "replica sets": listed(apps.list_namespaced_replica_set),
        "pods": listed(core.list_namespaced_pod),
        "services": listed(core.list_namespaced_service),
        "secrets": listed(core.list_namespaced_secret),
        "network policies": listed(networking.list_namespaced_network_policy),
        "ingresses": listed(networking.list_namespaced_ingress),
    }
    for kind, lister in listers.items():
        assert lister().items, f"no {kind} to begin with"
    (ingress,) = listers["ingresses"]().items
    assert ingress.spec.rules[0].host == f"alice-{uid[:6]}.spaces.test"

    backend.forget(uid)
    assert instance_of(backend, uid) == []
    for kind, lister in listers.items():
        wait_for(f"the {kind} to go", lambda lister=lister: not lister().items)
    assert instance_of(backend, other)  # another Space keeps its own
    backend.forget(uid)  # again: nothing left, no error


def test_tier_room_counts_gpus_and_unschedulable_pods_say_why(
    backend: KubernetesBackend, no_gpu_taken: None
) -> None:
    a10g, t4 = get_tier("a10g-small"), get_tier("t4-small")
    room = backend.tier_room(a10g)
    assert (room.free, room.total) == (2, 2)
    assert backend.tier_room(t4).free == 1
    assert backend.tier_room(get_tier("cpu-basic")).total == 4

    first, second = new_uid(), new_uid()
    backend.start(revision(first, "a10g-small"))
    # Before its pod is even bound, the first holds its GPU.
    assert backend.tier_room(a10g).free == 1
    backend.start(revision(second, "a10g-small"))
    room = backend.tier_room(a10g)
    assert (room.free, room.total, room.reason) == (0, 2, "all 2 A10G GPUs are in use")
    assert backend.tier_room(t4).free == 1  # a pool of its own
    capacity = backend.capacity()
    assert (capacity.gpus, capacity.gpus_free) == (3, 1)

    # A third, started anyway (as an operator's kubectl would): it waits for a GPU.
    third = new_uid()
    backend.start(revision(third, "a10g-small"))
    waiting = wait_for(
        "the third to be unschedulable",
        lambda: next((i for i in instance_of(backend, third) if i.waiting_reason), None),
    )
    assert waiting.state == InstanceState.STARTING
    assert waiting.waiting_reason == "all 2 A10G GPUs are in use"
    assert "Insufficient nvidia.com/gpu" in (waiting.waiting_detail or "")
    assert not waiting.ready and waiting.address is None

    # A tier no node has.
    lone = new_uid()
    backend.start(revision(lone, "a100-large"))
    nowhere = wait_for(
        "the A100 Space to be unschedulable",
        lambda: next((i for i in instance_of(backend, lone) if i.waiting_reason), None),
    )
    assert nowhere.waiting_reason == "no node has an A100 GPU: an operator must add one"
    assert "didn't match Pod's node affinity/selector" in (nowhere.waiting_detail or "")

    # The first pauses: the waiting one is placed.
    (held,) = instance_of(backend, first)
    backend.stop(held.id)
    ready_instance(backend, third)


def test_image_pull_failures_and_crash_loops_as_the_kubelet_reports_them(
    backend: KubernetesBackend, api: client.ApiClient, kube_namespace: str
) -> None:
    pulling, crashing = new_uid(), new_uid()
    backend.start(revision(pulling))
    backend.start(revision(crashing))
    ready_instance(backend, pulling)
    ready_instance(backend, crashing)

    (pod,) = pods_of(api, kube_namespace, pulling)
    message = 'failed to pull "registry.test/spaces/app": 401 Unauthorized'
    report_app_status(
        api,
        kube_namespace,
        pod,
        {
            "restartCount": 0,
            "started": False,
            "state": {"waiting": {"reason": "ImagePullBackOff", "message": message}},
        },
    )
    broken = wait_for(
        "the pull failure",
        lambda: next((i for i in instance_of(backend, pulling) if i.problem), None),
    )
    assert broken.problem == (
        f"the image {pod.spec.containers[0].image} cannot be pulled: {message}"
    )
    assert broken.state == InstanceState.STARTING

    (pod,) = pods_of(api, kube_namespace, crashing)
    report_app_status(api, kube_namespace, pod, CRASH_LOOP)
    crashed = wait_for(
        "the crash loop",
        lambda: next(
            (i for i in instance_of(backend, crashing) if i.state == InstanceState.EXITED), None
        ),
    )
    assert crashed.exit_code == 3
    assert crashed.id == instance_id(crashing, revision(crashing).key)


def test_watch_calls_back_with_the_space_that_changed(backend: KubernetesBackend) -> None:
    seen: list[str | None] = []
    backend.watch(seen.append)
    uid = new_uid()
    backend.start(revision(uid))
    ready_instance(backend, uid)
    wait_for("a callback for the Space", lambda: uid in seen)
    count = len([s for s in seen if s == uid])
    (instance,) = instance_of(backend, uid)
    backend.stop(instance.id)
    wait_for("a callback for its stop", lambda: len([s for s in seen if s == uid]) > count)


def test_logs_come_through_the_pod_log_api(
    backend: KubernetesBackend, kube_cluster: ControlPlane
) -> None:
    """The apiserver's pod log API end to end: kwok serves each container's log on the
    nodes' loopback kubelet endpoint (tests/kube/control_plane.py), nothing else is dialed."""
    uid = new_uid()
    backend.start(revision(uid))
    instance = ready_instance(backend, uid)
    kube_cluster.write_app_log([f"line {n} of {uid}" for n in range(5)])

    tail = list(backend.logs(instance.id, tail=2))
    assert tail[-2:] == [f"line 3 of {uid}", f"line 4 of {uid}"]
    stamped = list(backend.logs(instance.id, tail=1, timestamps=True))
    stamp, _, text = stamped[-1].partition(" ")
    assert text == f"line 4 of {uid}" and stamp.endswith("Z") and "T" in stamp

    seen: list[str] = []

    def follow() -> None:
        # In a thread of its own, as Backend.follow_logs runs it: the call itself may wait
        # for the first line (kwok sends the response headers with it).
        seen.extend(line for line in backend.logs(instance.id, tail=0, follow=True))

    reader = threading.Thread(target=follow, daemon=True)
    reader.start()
    time.sleep(1)
    kube_cluster.write_app_log([f"later {uid}"])
    wait_for("the followed line", lambda: f"later {uid}" in seen)
    backend.forget(uid)
