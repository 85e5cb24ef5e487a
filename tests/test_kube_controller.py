"""The controller on Kubernetes, end to end against the test control plane: the same
controller that drives Docker (orchestrator/controller/), given SPACEPORT_BACKEND=kubernetes,
places Spaces on the fake CPU and GPU node pools, lines GPU Spaces up when GPUs run out and
starts them in order, pauses (scales to 0) and restarts them, adopts what a previous
controller made and removes all of a deleted Space.

Spaces here are database rows with a built image (any reference: kwok nodes pull nothing),
as in tests/unit/test_controller.py; what runs them is real: the apiserver, the scheduler,
the controller manager's Deployment and garbage collectors, kwok's fake kubelet. Nothing
connects to a pod or node IP.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from sqlmodel import select

from orchestrator.api.spaces import runtime_json
from orchestrator.controller.loop import Controller
from orchestrator.core import changes, db, secret_store
from orchestrator.core.backends import make_backend
from orchestrator.core.db import session_scope
from orchestrator.core.models import Event, Space, Stage
from orchestrator.core.settings import get_settings
from orchestrator.spaces import lifecycle
from sandbox.backend import Backend
from sandbox.hardware import get_tier
from tests.kube.control_plane import ControlPlane, NodeSpec
from tests.kube.kubelet import CRASH_LOOP, report_app_status
from tests.unit.test_controller import new_space as unit_new_space

pytestmark = pytest.mark.kube
WAIT_SECONDS = 60.0


def until(what: str, check: Callable[[], Any], timeout: float = WAIT_SECONDS) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.fixture
def home(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    kube_cluster: ControlPlane,
    kube_namespace: str,
) -> Iterator[Path]:
    """A migrated SQLite home whose backend is the test cluster's `kube_namespace`."""
    for key in list(os.environ):
        if key.startswith("SPACEPORT_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("SPACEPORT_HOME", str(tmp_path))
    monkeypatch.setenv("SPACEPORT_INSTANCE", f"kube-test-{uuid.uuid4().hex[:6]}")
    for key, value in kube_cluster.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("SPACEPORT_KUBE_NAMESPACE", kube_namespace)

    def reset() -> None:
        get_settings.cache_clear()
        db.get_engine.cache_clear()
        secret_store._fernet.cache_clear()
        changes.reset_feed()

    reset()
    db.migrate()
    yield tmp_path
    db.get_engine().dispose()
    reset()


class Running:
    """A controller running in a thread over a backend of the configured kind."""

    def __init__(self) -> None:
        self.backend: Backend = make_backend()
        self.backend.prepare()
        self.controller = Controller(self.backend)
        self.thread = threading.Thread(target=self.controller.run, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.controller.stop()
        self.thread.join(timeout=30)
        self.controller.reconciler.close()
        self.backend.close()


@pytest.fixture
def run_controller(home: Path) -> Iterator[Callable[[], Running]]:
    started: list[Running] = []

    def start() -> Running:
        running = Running()
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()


def new_space(name: str, hardware: str = "cpu-basic") -> int:
    """A built Space of alice's on `hardware` (tests/unit/test_controller.new_space: its
    image reference is never pulled on kwok nodes)."""
    return unit_new_space(name, requested_hardware=hardware)


def pause(space_id: int) -> None:
    with session_scope() as session:
        row = session.get(Space, space_id)
        assert row is not None
        lifecycle.pause(session, row, actor="alice")


def restart(space_id: int) -> None:
    with session_scope() as session:
        row = session.get(Space, space_id)
        assert row is not None
        lifecycle.restart(session, row, actor="alice")


def delete_space(space_id: int) -> None:
    with session_scope() as session:
        row = session.get(Space, space_id)
        assert row is not None
        lifecycle.delete(session, row, actor="alice")


def space(space_id: int) -> Space:
    with session_scope() as session:
        row = session.get(Space, space_id)
        assert row is not None
        session.expunge(row)
        return row


def stage_is(space_id: int, stage: Stage) -> Callable[[], bool]:
    return lambda: space(space_id).stage == stage


def apis(cluster: ControlPlane) -> tuple[client.CoreV1Api, client.AppsV1Api]:
    api = cluster.api_client()
    return client.CoreV1Api(api), client.AppsV1Api(api)


def pods_of(cluster: ControlPlane, namespace: str, space_id: int) -> list[Any]:
    core, _ = apis(cluster)
    uid = space(space_id).uid
    pods = core.list_namespaced_pod(namespace, label_selector=f"spaceport.dev/space-id={uid}")
    return [p for p in pods.items if p.metadata.deletion_timestamp is None]


def deployment_of(cluster: ControlPlane, namespace: str, space_id: int) -> Any:
    _, apps = apis(cluster)
    uid = space(space_id).uid
    found = apps.list_namespaced_deployment(
        namespace, label_selector=f"spaceport.dev/space-id={uid}"
    ).items
    assert len(found) <= 1, f"{len(found)} Deployments for one Space"
    return found[0] if found else None


def free_gpus(cluster: ControlPlane, model: str) -> int:
    """GPUs of `model` not requested by any live pod, in any namespace (other tests' too)."""
    core, _ = apis(cluster)
    nodes = [
        n
        for n in core.list_node().items
        if (n.metadata.labels or {}).get("spaceport.dev/accelerator") == model
    ]
    total = sum(int(n.status.allocatable.get("nvidia.com/gpu", "0")) for n in nodes)
    names = {n.metadata.name for n in nodes}
    used = 0
    for pod in core.list_pod_for_all_namespaces().items:
        if pod.spec.node_name in names and pod.status.phase not in ("Succeeded", "Failed"):
            for container in pod.spec.containers:
                limits = (container.resources and container.resources.limits) or {}
                used += int(limits.get("nvidia.com/gpu", "0"))
    return total - used


def kinds_of(space_id: int) -> list[str]:
    with session_scope() as session:
        rows = session.exec(
            select(Event.kind).where(Event.space_id == space_id).order_by(Event.id)
        ).all()
        return list(rows)


# -- placement ------------------------------------------------------------------------


def test_cpu_and_gpu_spaces_land_on_their_pools_and_run_when_ready(
    kube_cluster: ControlPlane, kube_namespace: str, run_controller: Callable[[], Running]
) -> None:
    until("an A10G GPU free", lambda: free_gpus(kube_cluster, "a10g") >= 1)
    cpu = new_space("cpu-app", "cpu-basic")
    gpu = new_space("gpu-app", "a10g-small")
    run_controller()

    until("the CPU Space RUNNING", stage_is(cpu, Stage.RUNNING))
    until("the GPU Space RUNNING", stage_is(gpu, Stage.RUNNING))

    (cpu_pod,) = pods_of(kube_cluster, kube_namespace, cpu)
    (gpu_pod,) = pods_of(kube_cluster, kube_namespace, gpu)
    assert cpu_pod.spec.node_name.startswith("cpu-")
    assert gpu_pod.spec.node_name.startswith("gpu-a10g-")

    cpu_tier, gpu_tier = get_tier("cpu-basic"), get_tier("a10g-small")
    cpu_resources = cpu_pod.spec.containers[0].resources
    assert cpu_resources.limits["memory"] == cpu_resources.requests["memory"]
    assert "nvidia.com/gpu" not in cpu_resources.limits
    assert not cpu_pod.spec.node_selector
    gpu_resources = gpu_pod.spec.containers[0].resources
    assert gpu_resources.limits["nvidia.com/gpu"] == "1"
    assert gpu_resources.requests["nvidia.com/gpu"] == "1"
    assert gpu_resources.limits["cpu"] == f"{gpu_tier.cpu:g}"
    assert cpu_resources.limits["cpu"] == f"{cpu_tier.cpu:g}"
    assert gpu_pod.spec.node_selector == {"spaceport.dev/accelerator": "a10g"}
    assert any(
        t.key == "nvidia.com/gpu" and t.effect == "NoSchedule" for t in gpu_pod.spec.tolerations
    )
    # The runtime says it runs on what was asked.
    runtime = runtime_json(space(gpu))
    assert runtime.stage == "RUNNING"
    assert runtime.hardware.current == "a10g-small"
    assert runtime.queue is None


def test_gpu_spaces_wait_in_line_and_start_in_order_as_gpus_free(
    kube_cluster: ControlPlane, kube_namespace: str, run_controller: Callable[[], Running]
) -> None:
    # Both A10G GPUs, then two more Spaces that want one.
    until("both A10G GPUs free", lambda: free_gpus(kube_cluster, "a10g") == 2)
    first, second = new_space("gpu-1", "a10g-small"), new_space("gpu-2", "a10g-small")
    run_controller()
    until("the first two GPU Spaces RUNNING", lambda: all(
        space(s).stage == Stage.RUNNING for s in (first, second)
    ))  # fmt: skip
    third = new_space("gpu-3", "a10g-small")
    time.sleep(0.05)  # strictly later: first come, first served
    fourth = new_space("gpu-4", "a10g-small")

    def positions() -> tuple[int | None, int | None]:
        queues = [runtime_json(space(s)).queue for s in (third, fourth)]
        return tuple(q.position if q else None for q in queues)  # type: ignore[return-value]

    until("positions 1 and 2", lambda: positions() == (1, 2))
    for waiting in (third, fourth):
        message = space(waiting).error_message or ""
        assert "A10G" in message and "in use" in message, message
        assert not pods_of(kube_cluster, kube_namespace, waiting)  # never given to the scheduler
    assert "hardware.queued" in kinds_of(third)

    pause(first)
    until("the third RUNNING", stage_is(third, Stage.RUNNING))
    until("the fourth now first in line", lambda: positions() == (None, 1))
    assert space(fourth).stage != Stage.RUNNING
    (pod,) = pods_of(kube_cluster, kube_namespace, third)
    assert pod.spec.node_name.startswith("gpu-a10g-")
    assert "hardware.granted" in kinds_of(third)

    pause(second)
    until("the fourth RUNNING", stage_is(fourth, Stage.RUNNING))

    for s in (third, fourth):
        pause(s)
    until("the GPUs handed back", lambda: free_gpus(kube_cluster, "a10g") == 2)


# -- sleep and wake, adoption, deletion -----------------------------------------------


def test_pause_scales_to_zero_and_a_restart_scales_back(
    kube_cluster: ControlPlane, kube_namespace: str, run_controller: Callable[[], Running]
) -> None:
    app = new_space("sleepy")
    run_controller()
    until("RUNNING", stage_is(app, Stage.RUNNING))
    deployment = deployment_of(kube_cluster, kube_namespace, app)
    assert deployment.spec.replicas == 1

    pause(app)
    until("PAUSED", stage_is(app, Stage.PAUSED))
    until("no pod left", lambda: not pods_of(kube_cluster, kube_namespace, app))
    deployment = deployment_of(kube_cluster, kube_namespace, app)
    assert deployment is not None, "a paused Space keeps its Deployment, at 0 replicas"
    assert deployment.spec.replicas == 0

    restart(app)
    until("RUNNING again", stage_is(app, Stage.RUNNING))
    assert deployment_of(kube_cluster, kube_namespace, app).spec.replicas == 1
    assert len(pods_of(kube_cluster, kube_namespace, app)) == 1


def test_a_restarted_controller_adopts_what_exists_and_a_deleted_space_leaves_nothing(
    kube_cluster: ControlPlane, kube_namespace: str, run_controller: Callable[[], Running]
) -> None:
    apps = [new_space(f"adopt-{i}") for i in range(3)]
    first = run_controller()
    until("all RUNNING", lambda: all(space(a).stage == Stage.RUNNING for a in apps))
    before = {
        a: (deployment_of(kube_cluster, kube_namespace, a).metadata.uid,
            pods_of(kube_cluster, kube_namespace, a)[0].metadata.uid)
        for a in apps
    }  # fmt: skip
    first.stop()

    run_controller()
    time.sleep(3)  # a full first pass and its actions
    for a in apps:
        assert space(a).stage == Stage.RUNNING
        deployment = deployment_of(kube_cluster, kube_namespace, a)
        (pod,) = pods_of(kube_cluster, kube_namespace, a)
        assert (deployment.metadata.uid, pod.metadata.uid) == before[a], "not adopted"

    gone = apps[0]
    uid = space(gone).uid
    delete_space(gone)
    core, apps_api = apis(kube_cluster)
    networking = client.NetworkingV1Api(kube_cluster.api_client())
    selector = f"spaceport.dev/space-id={uid}"

    def leftovers() -> list[str]:
        found = []
        for kind, listing in (
            ("deployment", apps_api.list_namespaced_deployment),
            ("replicaset", apps_api.list_namespaced_replica_set),
            ("pod", core.list_namespaced_pod),
            ("service", core.list_namespaced_service),
            ("secret", core.list_namespaced_secret),
            ("networkpolicy", networking.list_namespaced_network_policy),
            ("ingress", networking.list_namespaced_ingress),
        ):
            found += [f"{kind}/{o.metadata.name}" for o in listing(
                kube_namespace, label_selector=selector
            ).items]  # fmt: skip
        return found

    until("nothing of the deleted Space left", lambda: not leftovers())
    for a in apps[1:]:
        assert deployment_of(kube_cluster, kube_namespace, a) is not None


def test_a_gpu_space_waiting_in_line_starts_when_a_node_joins(
    kube_cluster: ControlPlane, kube_namespace: str, run_controller: Callable[[], Running]
) -> None:
    until("the T4 GPU free", lambda: free_gpus(kube_cluster, "t4") == 1)
    first, second = new_space("t4-1", "t4-small"), new_space("t4-2", "t4-small")
    run_controller()
    until("one RUNNING, one first in line", lambda: sorted(
        (space(s).stage == Stage.RUNNING, (runtime_json(space(s)).queue or None) is not None)
        for s in (first, second)
    ) == [(False, True), (True, False)])  # fmt: skip
    waiting = second if space(first).stage == Stage.RUNNING else first
    assert "T4" in (space(waiting).error_message or "")

    joined = NodeSpec("gpu-t4-joined", gpus=1, accelerator="t4", pool="gpu")
    kube_cluster.add_node(joined)
    core, _ = apis(kube_cluster)
    try:
        until("the waiting Space RUNNING on the new node", stage_is(waiting, Stage.RUNNING))
        (pod,) = pods_of(kube_cluster, kube_namespace, waiting)
        assert pod.spec.node_name in ("gpu-t4-0", joined.name)
    finally:
        pause(first)
        pause(second)
        until("no pod of either left", lambda: not (
            pods_of(kube_cluster, kube_namespace, first)
            or pods_of(kube_cluster, kube_namespace, second)
        ))  # fmt: skip
        core.delete_node(joined.name)


def test_a_crash_loop_is_a_runtime_error_with_the_previous_log_and_frees_its_gpu(
    kube_cluster: ControlPlane, kube_namespace: str, run_controller: Callable[[], Running]
) -> None:
    until("the T4 GPU free", lambda: free_gpus(kube_cluster, "t4") == 1)
    crashing, next_in_line = new_space("t4-crash", "t4-small"), new_space("t4-next", "t4-small")
    run_controller()
    until("the first RUNNING", stage_is(crashing, Stage.RUNNING))
    until("the second first in line", lambda: (runtime_json(space(next_in_line)).queue or None))
    kube_cluster.write_app_log(
        ["Traceback (most recent call last):", "ValueError: the model file is missing"],
        previous=True,
    )
    (pod,) = pods_of(kube_cluster, kube_namespace, crashing)
    report_app_status(kube_cluster.api_client(), kube_namespace, pod, CRASH_LOOP)

    until("RUNTIME_ERROR", stage_is(crashing, Stage.RUNTIME_ERROR))
    message = space(crashing).error_message or ""
    assert "exited with code 3" in message, message
    # The previous container's log, read through the apiserver's pod log API.
    assert "ValueError: the model file is missing" in message, message
    # Its GPU goes to the next in line instead of being held by a pod that keeps restarting.
    until("the next one RUNNING", stage_is(next_in_line, Stage.RUNNING))
    assert deployment_of(kube_cluster, kube_namespace, crashing).spec.replicas == 0
    assert space(crashing).stage == Stage.RUNTIME_ERROR
    pause(next_in_line)
    until("the T4 handed back", lambda: free_gpus(kube_cluster, "t4") == 1)
