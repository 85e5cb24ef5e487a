"""Room per hardware tier on a cluster, and why a pod waits, in plain words.

Pure functions over the nodes, pods and Deployments the informers hold (the official
client's model objects, or the same objects as JSON dicts: `get` reads either), so the
backend answers `tier_room` and `capacity` from its caches, without an API call.

A tier fits on a node when the node is Ready and schedulable, carries every label of the
tier's node selector, and every NoSchedule/NoExecute taint on it is tolerated. What is free
on a node is its allocatable less the requests of the pods bound to it that have not
finished. A Deployment that wants a pod that is not bound yet (just created, or the
scheduler has not got to it) holds the room it will take, so that two starts in a row
never both count the last GPU.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from kubernetes.utils import parse_quantity

from sandbox.backend import Capacity, TierRoom
from sandbox.hardware import HardwareTier

GPU_RESOURCE = "nvidia.com/gpu"
ACCELERATOR_LABEL = "spaceport.dev/accelerator"
GPU_TOLERATION: dict[str, str] = {
    "key": GPU_RESOURCE,
    "operator": "Exists",
    "effect": "NoSchedule",
}
FINISHED_PHASES = ("Succeeded", "Failed")
# Taints that say the node is down or going away, not that it is of another kind.
DOWN_TAINTS = (
    "node.kubernetes.io/not-ready",
    "node.kubernetes.io/unreachable",
    "node.kubernetes.io/unschedulable",
    "node.kubernetes.io/network-unavailable",
    "node.kubernetes.io/out-of-disk",
    "node.cloudprovider.kubernetes.io/shutdown",
)
UNSCHEDULABLE = "Unschedulable"
NO_CPU_NODE = "no node takes CPU Spaces (every node is kept for others): an operator must add one"


# -- reading model objects and dicts alike ------------------------------------------------


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(word[:1].upper() + word[1:] for word in rest)


def get(obj: Any, *path: str, default: Any = None) -> Any:
    """obj.a.b (a model object) or obj["a"]["b"] (its JSON dict), with snake_case names:
    `get(pod, "spec", "node_name")`. Missing or None anywhere: `default`."""
    for name in path:
        if obj is None:
            return default
        if isinstance(obj, Mapping):
            obj = obj.get(_camel(name), obj.get(name))
        else:
            obj = getattr(obj, name, None)
    return default if obj is None else obj


def _quantity(value: Any) -> Decimal:
    if value is None or value == "":
        return Decimal(0)
    try:
        return Decimal(parse_quantity(value))
    except ValueError:
        return Decimal(0)


# -- what a pod asks for --------------------------------------------------------------------


@dataclass(frozen=True)
class Demand:
    """What one pod of a tier asks of a node: requests, node selector, tolerations."""

    cpu: float
    memory: float  # bytes
    gpus: int
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: Sequence[Mapping[str, Any]] = ()
    gpu_model: str | None = None  # "A10G": for the words only

    def words(self, free: bool = False) -> str:
        """'2 vCPU and 16 GiB' (or with ' free')."""
        text = f"{self.cpu:g} vCPU and {self.memory / 2**30:g} GiB"
        return text + (" free" if free else "")


def tier_node_selector(tier: HardwareTier) -> dict[str, str]:
    """The tier's node selector: the catalogue's, else (a GPU tier) its accelerator label."""
    selector = getattr(tier, "node_selector", None)
    if selector is not None:
        return dict(selector)
    if tier.gpu:
        return {ACCELERATOR_LABEL: tier.gpu.lower()}
    return {}


def tier_tolerations(tier: HardwareTier) -> list[dict[str, Any]]:
    """The tier's tolerations: the catalogue's, else (a GPU tier) the GPU pools' taint."""
    tolerations = getattr(tier, "tolerations", None)
    if tolerations is not None:
        return [t.to_kube() if hasattr(t, "to_kube") else dict(t) for t in tolerations]
    return [dict(GPU_TOLERATION)] if tier.gpu else []


def tier_demand(tier: HardwareTier) -> Demand:
    return Demand(
        cpu=float(tier.cpu),
        memory=float(tier.memory_gib) * 2**30,
        gpus=int(tier.gpu_count),
        node_selector=tier_node_selector(tier),
        tolerations=tier_tolerations(tier),
        gpu_model=tier.gpu,
    )


def pod_spec_demand(spec: Any) -> Demand:
    """The requests of a pod spec (its containers' sum; an init container's when larger,
    as the scheduler counts them), its node selector and its tolerations."""

    def requests(container: Any) -> tuple[Decimal, Decimal, Decimal]:
        asked = get(container, "resources", "requests", default={})
        return (
            _quantity(asked.get("cpu")),
            _quantity(asked.get("memory")),
            _quantity(asked.get(GPU_RESOURCE)),
        )

    sums = [Decimal(0)] * 3
    for container in get(spec, "containers", default=[]):
        sums = [a + b for a, b in zip(sums, requests(container), strict=True)]
    for container in get(spec, "init_containers", default=[]):
        sums = [max(a, b) for a, b in zip(sums, requests(container), strict=True)]
    selector = dict(get(spec, "node_selector", default={}))
    tolerations = [
        {
            "key": get(t, "key"),
            "operator": get(t, "operator"),
            "value": get(t, "value"),
            "effect": get(t, "effect"),
        }
        for t in get(spec, "tolerations", default=[])
    ]
    model = selector.get(ACCELERATOR_LABEL)
    return Demand(
        cpu=float(sums[0]),
        memory=float(sums[1]),
        gpus=int(sums[2]),
        node_selector=selector,
        tolerations=tolerations,
        gpu_model=model.upper() if model else None,
    )


# -- nodes ----------------------------------------------------------------------------------


@dataclass
class NodeRoom:
    """One node: what it offers Spaces and what of it is not requested yet."""

    name: str
    labels: Mapping[str, str]
    taints: Sequence[Mapping[str, Any]]
    ready: bool
    schedulable: bool
    cpu: float
    memory: float
    gpus: int
    pods: int
    free_cpu: float
    free_memory: float
    free_gpus: int
    free_pods: int

    @property
    def up(self) -> bool:
        return self.ready and self.schedulable and not any(
            t.get("key") in DOWN_TAINTS and t.get("effect") in ("NoSchedule", "NoExecute")
            for t in self.taints
        )

    def selected_by(self, demand: Demand) -> bool:
        return all(self.labels.get(k) == v for k, v in demand.node_selector.items())

    def tolerates(self, demand: Demand) -> bool:
        """Every taint that keeps pods off, except the ones saying the node is down (`up`
        judges those), is tolerated by the demand."""
        return all(
            t.get("key") in DOWN_TAINTS
            or t.get("effect") not in ("NoSchedule", "NoExecute")
            or any(_tolerated(t, tol) for tol in demand.tolerations)
            for t in self.taints
        )

    def eligible(self, demand: Demand) -> bool:
        return self.up and self.selected_by(demand) and self.tolerates(demand)

    def fits(self, demand: Demand, empty: bool = False) -> int:
        """How many pods of `demand` fit on it (`empty`: with nothing else on it)."""
        cpu, memory, gpus, pods = (
            (self.cpu, self.memory, self.gpus, self.pods)
            if empty
            else (self.free_cpu, self.free_memory, self.free_gpus, self.free_pods)
        )
        counts = [max(0, pods)]
        for have, need in ((cpu, demand.cpu), (memory, demand.memory), (gpus, demand.gpus)):
            if need > 0:
                counts.append(max(0, math.floor(have / need + 1e-9)))
        return min(counts)

    def take(self, demand: Demand) -> None:
        self.free_cpu -= demand.cpu
        self.free_memory -= demand.memory
        self.free_gpus -= demand.gpus
        self.free_pods -= 1


def _tolerated(taint: Mapping[str, Any], toleration: Mapping[str, Any]) -> bool:
    """Kubernetes' rule: an empty key with Exists tolerates everything; an empty effect
    any effect; Exists any value, Equal (the default) the same value."""
    effect = toleration.get("effect")
    if effect and effect != taint.get("effect"):
        return False
    operator = toleration.get("operator") or "Equal"
    key = toleration.get("key")
    if not key:
        return operator == "Exists"
    if key != taint.get("key"):
        return False
    return operator == "Exists" or (toleration.get("value") or "") == (taint.get("value") or "")


def _node_room(node: Any) -> NodeRoom:
    allocatable = get(node, "status", "allocatable", default={})
    conditions = {
        get(c, "type"): get(c, "status") for c in get(node, "status", "conditions", default=[])
    }
    taints = [
        {"key": get(t, "key"), "value": get(t, "value"), "effect": get(t, "effect")}
        for t in get(node, "spec", "taints", default=[])
    ]
    cpu = float(_quantity(allocatable.get("cpu")))
    memory = float(_quantity(allocatable.get("memory")))
    gpus = int(_quantity(allocatable.get(GPU_RESOURCE)))
    pods = int(_quantity(allocatable.get("pods", "110")))
    return NodeRoom(
        name=get(node, "metadata", "name", default=""),
        labels=dict(get(node, "metadata", "labels", default={})),
        taints=taints,
        ready=conditions.get("Ready") == "True",
        schedulable=not get(node, "spec", "unschedulable", default=False),
        cpu=cpu,
        memory=memory,
        gpus=gpus,
        pods=pods,
        free_cpu=cpu,
        free_memory=memory,
        free_gpus=gpus,
        free_pods=pods,
    )


def _finished(pod: Any) -> bool:
    return get(pod, "status", "phase") in FINISHED_PHASES


def _labels(obj: Any) -> Mapping[str, str]:
    return get(obj, "metadata", "labels", default={})


def _is_of(pod: Any, deployment: Any) -> bool:
    """The pod was made from the Deployment's current template (its labels, plus the
    ReplicaSet's pod-template-hash), in its namespace."""
    if get(pod, "metadata", "namespace") != get(deployment, "metadata", "namespace"):
        return False
    template = get(deployment, "spec", "template", "metadata", "labels", default={})
    labels = _labels(pod)
    return bool(template) and all(labels.get(k) == v for k, v in template.items())


def node_rooms(
    nodes: Iterable[Any], pods: Iterable[Any], deployments: Iterable[Any] = ()
) -> list[NodeRoom]:
    """Every node with what is free on it: allocatable less the requests of the pods bound
    to it, less the room the not-yet-bound pods of Deployments will take (placed first fit,
    oldest first; one that fits nowhere holds nothing)."""
    rooms = sorted((_node_room(n) for n in nodes), key=lambda r: r.name)
    by_name = {room.name: room for room in rooms}
    # A terminating pod holds its room until it is gone, as the scheduler counts it.
    pods = [p for p in pods if not _finished(p)]
    unbound: list[tuple[str, Demand]] = []
    for pod in pods:
        demand = pod_spec_demand(get(pod, "spec"))
        node = by_name.get(get(pod, "spec", "node_name", default=""))
        if node is not None:
            node.take(demand)
    # Bound pods by each of their labels, so a Deployment is matched against the few pods
    # sharing its template's rarest label, not every pod (1,000 Spaces: 1,000 x 1,000).
    bound_by_label: dict[tuple[Any, str, str], list[Any]] = {}
    for pod in pods:
        if get(pod, "spec", "node_name"):
            namespace = get(pod, "metadata", "namespace")
            for item in _labels(pod).items():
                bound_by_label.setdefault((namespace, *item), []).append(pod)
    for deployment in deployments:
        wanted = int(get(deployment, "spec", "replicas", default=1))
        if wanted <= 0 or get(deployment, "metadata", "deletion_timestamp") is not None:
            continue
        namespace = get(deployment, "metadata", "namespace")
        template = get(deployment, "spec", "template", "metadata", "labels", default={})
        candidates = min(
            (bound_by_label.get((namespace, *item), []) for item in template.items()),
            key=len,
            default=[],
        )
        placed = sum(1 for p in candidates if _is_of(p, deployment))
        demand = pod_spec_demand(get(deployment, "spec", "template", "spec"))
        created = str(get(deployment, "metadata", "creation_timestamp", default=""))
        unbound += [(created, demand)] * max(0, wanted - placed)
    for _, demand in sorted(unbound, key=lambda item: item[0]):
        for room in rooms:
            if room.eligible(demand) and room.fits(demand):
                room.take(demand)
                break
    return rooms


# -- room for a tier -------------------------------------------------------------------------


def _gpus(count: int, model: str | None) -> str:
    name = f"{model} " if model else ""
    return f"an {name}GPU" if count == 1 else f"{count} {name}GPUs"


def _kind(demand: Demand) -> str:
    if demand.gpus:
        return f"{demand.gpu_model} node" if demand.gpu_model else "GPU node"
    return "CPU node"


def room_for(demand: Demand, rooms: Sequence[NodeRoom]) -> TierRoom:
    """How many more pods of `demand` fit now and on an empty cluster, and why none fit."""
    selected = [r for r in rooms if r.selected_by(demand) and r.tolerates(demand)]
    eligible = [r for r in selected if r.up]
    free = sum(r.fits(demand) for r in eligible)
    total = sum(r.fits(demand, empty=True) for r in eligible)
    if free > 0:
        return TierRoom(free=free, total=total)
    return TierRoom(free=0, total=total, reason=_why_none(demand, selected, eligible, total))


def _why_none(
    demand: Demand, selected: Sequence[NodeRoom], eligible: Sequence[NodeRoom], total: int
) -> str:
    kind = _kind(demand)
    if not selected:
        if demand.gpus:
            return f"no node has {_gpus(1, demand.gpu_model)}: an operator must add one"
        return NO_CPU_NODE
    if not eligible:
        return f"every {kind} is down or cordoned"
    if total == 0:
        if demand.gpus and max(r.gpus for r in eligible) < demand.gpus:
            return f"no node has {_gpus(demand.gpus, demand.gpu_model)}: an operator must add one"
        return f"no {kind} has {demand.words()}: an operator must add a bigger one"
    if demand.gpus and all(r.free_gpus < demand.gpus for r in eligible):
        count = sum(r.gpus for r in eligible)
        model = f"{demand.gpu_model} " if demand.gpu_model else ""
        if count == 1:
            return f"the one {model}GPU is in use"
        return f"all {count} {model}GPUs are in use"
    return f"no {kind} has {demand.words(free=True)}"


def tier_room(
    tier: HardwareTier, nodes: Iterable[Any], pods: Iterable[Any], deployments: Iterable[Any] = ()
) -> TierRoom:
    return room_for(tier_demand(tier), node_rooms(nodes, pods, deployments))


def capacity(
    nodes: Iterable[Any], pods: Iterable[Any], deployments: Iterable[Any] = ()
) -> Capacity:
    """The Ready, schedulable nodes' allocatable, and what of it is not requested."""
    up = [r for r in node_rooms(nodes, pods, deployments) if r.up]
    return Capacity(
        cpus=sum(r.cpu for r in up),
        memory_gib=sum(r.memory for r in up) / 2**30,
        cpus_free=sum(r.free_cpu for r in up),
        memory_gib_free=sum(r.free_memory for r in up) / 2**30,
        gpus=sum(r.gpus for r in up),
        gpus_free=sum(max(0, r.free_gpus) for r in up),
    )


# -- why a pod waits --------------------------------------------------------------------------


def unschedulable(pod: Any) -> bool:
    """Pending, not bound, and the scheduler said it found no node (PodScheduled=False)."""
    if get(pod, "status", "phase", default="Pending") != "Pending" or get(pod, "spec", "node_name"):
        return False
    return any(
        get(c, "type") == "PodScheduled"
        and get(c, "status") == "False"
        and get(c, "reason") == UNSCHEDULABLE
        for c in get(pod, "status", "conditions", default=[])
    )


def scheduling_message(pod: Any, events: Iterable[Any] = ()) -> str:
    """The newest FailedScheduling event of the pod, else its PodScheduled condition's."""
    name = get(pod, "metadata", "name")
    uid = get(pod, "metadata", "uid")
    newest: tuple[str, str] | None = None
    for event in events:
        if get(event, "reason") != "FailedScheduling":
            continue
        involved = get(event, "involved_object", default={})
        if get(involved, "kind", default="Pod") != "Pod" or get(involved, "name") != name:
            continue
        if uid and get(involved, "uid") and get(involved, "uid") != uid:
            continue  # an earlier pod of the same name
        when = str(
            get(event, "last_timestamp")
            or get(event, "event_time")
            or get(event, "metadata", "creation_timestamp")
            or ""
        )
        if newest is None or when >= newest[0]:
            newest = (when, str(get(event, "message", default="")))
    if newest is not None and newest[1]:
        return newest[1]
    for condition in get(pod, "status", "conditions", default=[]):
        if get(condition, "type") == "PodScheduled":
            return str(get(condition, "message", default=""))
    return ""


_COUNTED = re.compile(r"^(\d+)\s+(.*)$")


def scheduler_reasons(message: str) -> dict[str, int]:
    """'0/5 nodes are available: 3 Insufficient nvidia.com/gpu, 2 node(s) didn't match
    ...' -> {'Insufficient nvidia.com/gpu': 3, "node(s) didn't match ...": 2} (the part
    before the preemption report)."""
    head = re.split(r"\.?\s+preemption:", message, maxsplit=1)[0]
    _, sep, listing = head.partition("are available:")
    if not sep:
        return {}
    reasons: dict[str, int] = {}
    for part in listing.strip().rstrip(".").split(", "):
        match = _COUNTED.match(part.strip())
        if match:
            reasons[match.group(2).strip()] = reasons.get(match.group(2).strip(), 0) + int(
                match.group(1)
            )
    return reasons


def words_for(message: str, demand: Demand) -> str:
    """The scheduler's message in plain words for the Space's page."""
    reasons = scheduler_reasons(message)
    kind = _kind(demand)
    gpu_short = any(GPU_RESOURCE in r and r.startswith("Insufficient") for r in reasons)
    short = [
        r
        for r in reasons
        if (r.startswith("Insufficient") and GPU_RESOURCE not in r) or r.startswith("Too many")
    ]
    down = [
        r
        for r in reasons
        if "unschedulable" in r or any(t in r for t in DOWN_TAINTS)
    ]
    if demand.gpus and gpu_short:
        model = f"{demand.gpu_model} " if demand.gpu_model else ""
        return f"every {model}GPU is in use"
    if short:
        return f"no {kind} has {demand.words(free=True)}"
    if down:
        return f"every {kind} is down or cordoned"
    if reasons:  # only nodes of other kinds (selector, taints)
        if demand.gpus:
            return f"no node has {_gpus(demand.gpus, demand.gpu_model)}: an operator must add one"
        return NO_CPU_NODE
    return "no node can take it now"


def explain(
    pod: Any, events: Iterable[Any] = (), room: TierRoom | None = None
) -> tuple[str, str] | None:
    """Why an unschedulable pod waits: (plain words, the scheduler's own message), or None
    when it is not waiting for a node. With the tier's `room` (none free), its reason, which
    counts the GPUs; else the scheduler's message, read."""
    if not unschedulable(pod):
        return None
    raw = scheduling_message(pod, events)
    if room is not None and room.free == 0 and room.reason:
        return room.reason, raw
    return words_for(raw, pod_spec_demand(get(pod, "spec"))), raw
