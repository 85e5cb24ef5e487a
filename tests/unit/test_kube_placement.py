"""Room per tier and why a pod waits (sandbox/kubernetes/placement.py), over nodes, pods and
Deployments as the informers hold them: JSON dicts and the client's model objects alike."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from sandbox.backend import TierRoom
from sandbox.hardware import get_tier
from sandbox.kubernetes import placement
from tests.kube.control_plane import DEFAULT_NODES, NodeSpec

A10G_FULL = (
    "0/5 nodes are available: 2 Insufficient nvidia.com/gpu, 2 node(s) didn't match Pod's "
    "node affinity/selector, 1 node(s) had untolerated taint {nvidia.com/gpu: present}. "
    "preemption: 0/5 nodes are available: 2 No preemption victims found for incoming pod, "
    "3 Preemption is not helpful for scheduling."
)


def node(spec: NodeSpec, ready: bool = True, cordoned: bool = False) -> dict[str, Any]:
    manifest = spec.manifest()
    manifest["status"]["conditions"] = [{"type": "Ready", "status": str(ready)}]
    if cordoned:
        manifest["spec"]["unschedulable"] = True
    return manifest


def cluster(*specs: NodeSpec) -> list[dict[str, Any]]:
    return [node(spec) for spec in (specs or DEFAULT_NODES)]


def pod_spec(tier_name: str) -> dict[str, Any]:
    tier = get_tier(tier_name)
    requests = {"cpu": f"{tier.cpu:g}", "memory": f"{tier.memory_gib:g}Gi"}
    spec: dict[str, Any] = {"containers": [{"name": "app", "resources": {"requests": requests}}]}
    if tier.gpu:
        requests[placement.GPU_RESOURCE] = str(tier.gpu_count)
        spec["nodeSelector"] = placement.tier_node_selector(tier)
        spec["tolerations"] = placement.tier_tolerations(tier)
    return spec


def pod(
    name: str,
    tier_name: str,
    node_name: str | None = None,
    phase: str = "Running",
    labels: dict[str, str] | None = None,
    conditions: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    spec = pod_spec(tier_name)
    if node_name:
        spec["nodeName"] = node_name
    return {
        "metadata": {
            "name": name,
            "namespace": "spaces",
            "uid": f"uid-{name}",
            "labels": labels or {},
        },
        "spec": spec,
        "status": {"phase": phase, "conditions": conditions or []},
    }


def deployment(
    name: str, tier_name: str, replicas: int = 1, created: str = "2026-01-01T00:00:00Z"
) -> dict[str, Any]:
    labels = {"spaceport.dev/space-id": name, "spaceport.dev/revision": "r1"}
    return {
        "metadata": {"name": name, "namespace": "spaces", "creationTimestamp": created},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"spaceport.dev/space-id": name}},
            "template": {"metadata": {"labels": labels}, "spec": pod_spec(tier_name)},
        },
    }


def test_an_empty_cluster_counts_each_tier_on_its_own_nodes() -> None:
    nodes = cluster()
    # Two 8-core 32 GiB CPU nodes: cpu-basic (2 vCPU, 16 GiB) is memory-bound, 2 a node.
    assert placement.tier_room(get_tier("cpu-basic"), nodes, []) == TierRoom(free=4, total=4)
    assert placement.tier_room(get_tier("a10g-small"), nodes, []) == TierRoom(free=2, total=2)
    assert placement.tier_room(get_tier("t4-small"), nodes, []) == TierRoom(free=1, total=1)


def test_pods_bound_to_nodes_take_their_requests() -> None:
    nodes = cluster()
    pods = [pod("a", "a10g-small", "gpu-a10g-0"), pod("b", "cpu-basic", "cpu-0")]
    assert placement.tier_room(get_tier("a10g-small"), nodes, pods) == TierRoom(1, 2)
    assert placement.tier_room(get_tier("cpu-basic"), nodes, pods) == TierRoom(3, 4)
    # Finished pods hold nothing.
    done = [pod("a", "a10g-small", "gpu-a10g-0", phase="Succeeded")]
    assert placement.tier_room(get_tier("a10g-small"), nodes, done).free == 2


def test_all_gpus_in_use_says_so_in_plain_words() -> None:
    nodes = cluster()
    pods = [pod("a", "a10g-small", "gpu-a10g-0"), pod("b", "a10g-small", "gpu-a10g-1")]
    room = placement.tier_room(get_tier("a10g-small"), nodes, pods)
    assert room == TierRoom(free=0, total=2, reason="all 2 A10G GPUs are in use")
    # The T4 pool is apart: its one GPU is still free.
    assert placement.tier_room(get_tier("t4-small"), nodes, pods).free == 1
    taken = [pod("c", "t4-small", "gpu-t4-0")]
    assert placement.tier_room(get_tier("t4-small"), nodes, taken).reason == (
        "the one T4 GPU is in use"
    )


def test_a_deployment_whose_pod_is_not_bound_yet_holds_its_room() -> None:
    """Two starts in a row must not both take the last A10G."""
    nodes = cluster()
    pods = [pod("a", "a10g-small", "gpu-a10g-0")]
    fresh = deployment("b", "a10g-small")  # created a moment ago: no pod yet
    room = placement.tier_room(get_tier("a10g-small"), nodes, pods, [fresh])
    assert room == TierRoom(free=0, total=2, reason="all 2 A10G GPUs are in use")
    # Its pod, once bound, is counted once, not twice.
    labels = fresh["spec"]["template"]["metadata"]["labels"]
    bound = pod("b-x", "a10g-small", "gpu-a10g-1", labels=labels)
    room = placement.tier_room(get_tier("a10g-small"), nodes, [*pods, bound], [fresh])
    assert room.free == 0
    assert placement.tier_room(get_tier("a10g-small"), nodes, [bound], [fresh]).free == 1
    # Asleep (0 replicas) it holds nothing.
    asleep = deployment("b", "a10g-small", replicas=0)
    assert placement.tier_room(get_tier("a10g-small"), nodes, pods, [asleep]).free == 1


def test_a_deployment_that_fits_nowhere_holds_nothing() -> None:
    nodes = cluster()
    pods = [pod("a", "a10g-small", "gpu-a10g-0"), pod("b", "a10g-small", "gpu-a10g-1")]
    stuck = deployment("c", "a10g-small")  # unschedulable: every A10G is taken
    assert placement.tier_room(get_tier("t4-small"), nodes, pods, [stuck]).free == 1
    assert placement.tier_room(get_tier("cpu-basic"), nodes, pods, [stuck]).free == 4


def test_no_node_with_the_accelerator() -> None:
    nodes = cluster(NodeSpec("cpu-0"), NodeSpec("gpu-t4-0", gpus=1, accelerator="t4", pool="gpu"))
    room = placement.tier_room(get_tier("a100-large"), nodes, [])
    assert room == TierRoom(
        free=0, total=0, reason="no node has an A100 GPU: an operator must add one"
    )


def test_a_tier_bigger_than_any_node() -> None:
    nodes = cluster()
    room = placement.tier_room(get_tier("a10g-largex2"), nodes, [])
    assert room.reason == "no node has 2 A10G GPUs: an operator must add one"
    room = placement.tier_room(get_tier("l40sx8"), nodes, [])
    assert room.reason == "no node has an L40S GPU: an operator must add one"
    big = placement.tier_room(get_tier("a10g-large"), nodes, [])  # 12 vCPU on 8-core nodes
    assert big == TierRoom(
        0, 0, "no A10G node has 12 vCPU and 46 GiB: an operator must add a bigger one"
    )


def test_cpu_and_memory_short_on_gpu_and_cpu_nodes() -> None:
    nodes = cluster()
    full = [pod(f"p{i}", "cpu-basic", f"cpu-{i // 2}") for i in range(4)]
    room = placement.tier_room(get_tier("cpu-basic"), nodes, full)
    assert room == TierRoom(0, 4, "no CPU node has 2 vCPU and 16 GiB free")
    # A CPU pod never counts GPU nodes (their taint), however free they are.
    hog = {
        **pod("hog", "cpu-basic", "gpu-a10g-0"),
        "spec": {
            "nodeName": "gpu-a10g-0",
            "containers": [{"name": "x", "resources": {"requests": {"cpu": "6"}}}],
        },
    }
    room = placement.tier_room(get_tier("a10g-small"), nodes, [hog])
    assert room.free == 1  # gpu-a10g-0 has its GPU but only 2 vCPU left


def test_down_and_cordoned_nodes_offer_nothing() -> None:
    specs = [s for s in DEFAULT_NODES if s.accelerator == "a10g"]
    nodes = [node(specs[0], ready=False), node(specs[1], cordoned=True)]
    room = placement.tier_room(get_tier("a10g-small"), nodes, [])
    assert room == TierRoom(0, 0, "every A10G node is down or cordoned")
    nodes[0]["spec"]["taints"].append(
        {"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}
    )
    nodes[0]["status"]["conditions"] = [{"type": "Ready", "status": "True"}]
    assert placement.tier_room(get_tier("a10g-small"), nodes, []).free == 0


def test_tolerations_follow_kubernetes_rules() -> None:
    taint = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}
    assert placement._tolerated(taint, {"operator": "Exists"})
    assert placement._tolerated(taint, {"key": "nvidia.com/gpu", "operator": "Exists"})
    assert placement._tolerated(taint, {"key": "nvidia.com/gpu", "value": "present"})
    assert not placement._tolerated(taint, {"key": "nvidia.com/gpu", "value": "absent"})
    assert not placement._tolerated(
        taint, {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoExecute"}
    )
    assert not placement._tolerated(taint, {"key": "other", "operator": "Exists"})


def test_capacity_sums_up_nodes() -> None:
    nodes = cluster()
    pods = [pod("a", "a10g-small", "gpu-a10g-0"), pod("b", "cpu-basic", "cpu-0")]
    capacity = placement.capacity(nodes, pods)
    assert capacity.cpus == 40
    assert capacity.memory_gib == 160
    assert capacity.cpus_free == 40 - 4 - 2
    assert capacity.memory_gib_free == 160 - 15 - 16
    assert (capacity.gpus, capacity.gpus_free) == (3, 2)


def test_model_objects_read_like_dicts() -> None:
    nodes = [client.V1Node.from_dict(n) for n in cluster()]
    pods = [client.V1Pod.from_dict(pod("a", "a10g-small", "gpu-a10g-0"))]
    fresh = client.V1Deployment.from_dict(deployment("b", "a10g-small"))
    room = placement.tier_room(get_tier("a10g-small"), nodes, pods, [fresh])
    assert room == TierRoom(0, 2, "all 2 A10G GPUs are in use")
    assert placement.capacity(nodes, pods).gpus_free == 2
    # And their to_dict() form (snake_case keys).
    as_dicts = [n.to_dict() for n in nodes]
    assert placement.tier_room(get_tier("a10g-small"), as_dicts, [p.to_dict() for p in pods]) == (
        TierRoom(1, 2)
    )


UNSCHEDULABLE = [
    {
        "type": "PodScheduled",
        "status": "False",
        "reason": "Unschedulable",
        "message": A10G_FULL,
    }
]


def test_explain_an_unschedulable_gpu_pod() -> None:
    waiting = pod("w", "a10g-small", phase="Pending", conditions=UNSCHEDULABLE)
    event = {
        "reason": "FailedScheduling",
        "message": A10G_FULL,
        "involvedObject": {"kind": "Pod", "name": "w", "uid": "uid-w"},
        "lastTimestamp": "2026-01-01T00:00:05Z",
    }
    older = {
        **event,
        "message": "0/5 nodes are available: 5 old.",
        "lastTimestamp": "2026-01-01T00:00:01Z",
    }
    other = {**event, "message": "not mine", "involvedObject": {"kind": "Pod", "name": "x"}}
    assert placement.explain(waiting, [older, event, other]) == (
        "every A10G GPU is in use",
        A10G_FULL,
    )
    # The tier's room counts the GPUs when it is known.
    room = TierRoom(0, 2, "all 2 A10G GPUs are in use")
    assert placement.explain(waiting, [event], room) == ("all 2 A10G GPUs are in use", A10G_FULL)
    # Without events, the pod's own condition.
    assert placement.explain(waiting, []) == ("every A10G GPU is in use", A10G_FULL)


def test_explain_leaves_pods_that_do_not_wait_for_a_node() -> None:
    assert placement.explain(pod("r", "cpu-basic", "cpu-0")) is None
    assert placement.explain(pod("p", "cpu-basic", phase="Pending")) is None  # not tried yet


@pytest.mark.parametrize(
    ("tier", "message", "words"),
    [
        (
            "a10g-small",
            "0/5 nodes are available: 5 node(s) didn't match Pod's node affinity/selector. "
            "preemption: 0/5 nodes are available: 5 Preemption is not helpful for scheduling.",
            "no node has an A10G GPU: an operator must add one",
        ),
        (
            "cpu-basic",
            "0/5 nodes are available: 1 Insufficient cpu, 2 Insufficient memory, 3 node(s) had "
            "untolerated taint {nvidia.com/gpu: present}. preemption: 0/5 nodes are available: "
            "2 No preemption victims found for incoming pod, 3 Preemption is not helpful.",
            "no CPU node has 2 vCPU and 16 GiB free",
        ),
        (
            "t4-small",
            "0/5 nodes are available: 1 node(s) were unschedulable, 4 node(s) didn't match "
            "Pod's node affinity/selector.",
            "every T4 node is down or cordoned",
        ),
        (
            "cpu-basic",
            "0/2 nodes are available: 2 node(s) had untolerated taint {dedicated: infra}.",
            placement.NO_CPU_NODE,
        ),
    ],
)
def test_scheduler_messages_in_plain_words(tier: str, message: str, words: str) -> None:
    demand = placement.pod_spec_demand(pod_spec(tier))
    assert placement.words_for(message, demand) == words


def test_scheduler_reasons_are_counted() -> None:
    assert placement.scheduler_reasons(A10G_FULL) == {
        "Insufficient nvidia.com/gpu": 2,
        "node(s) didn't match Pod's node affinity/selector": 2,
        "node(s) had untolerated taint {nvidia.com/gpu: present}": 1,
    }
    assert placement.scheduler_reasons("something else") == {}
