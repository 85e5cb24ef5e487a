"""KubernetesBackend: Spaces as Deployments on a cluster, driven by the same controller as Docker.

Per Space (sandbox/kubernetes/objects.py makes them): a Deployment of one replica (0 while
it sleeps or is paused), its Service, NetworkPolicy, the Secret holding its environment and,
when configured, an Ingress, each owned by the Deployment, so deleting it (`forget`) lets
the garbage collector remove the rest. Writes are server-side applies: idempotent, so a
restarted controller that starts what already exists changes nothing and duplicates
nothing.

Everything read comes from the informers' caches (sandbox/kubernetes/informers.py: one
list-then-watch per kind), never an API call per question: `instances()` maps Deployments
and their pods to Instances, `tier_room` and `capacity` count nodes' room
(sandbox/kubernetes/placement.py), `watch` turns cache changes into the controller's
callbacks. An instance is one (Space, revision): its id stays the same when its pod is
restarted or rescheduled, so billing's instance.started/stopped events pair up.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from sandbox.backend import (
    Backend,
    BackendError,
    Capacity,
    Instance,
    InstanceState,
    KeptVolume,
    Revision,
    SpaceFiles,
    TierRoom,
    WatchCallback,
)
from sandbox.hardware import HardwareTier
from sandbox.kubernetes import objects, placement
from sandbox.kubernetes.informers import Informer, Informers
from sandbox.kubernetes.placement import get
from sandbox.log_stream import ClosableLines

log = logging.getLogger(__name__)
FIELD_MANAGER = "spaceport-controller"
APPLY = "application/apply-patch+yaml"
JSON_PATCH = "application/json-patch+json"
# A kubelet's words for an image it cannot get: the Space cannot run as it is.
PULL_FAILURES = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull")
CRASH_LOOP = "CrashLoopBackOff"
# How long a write waits for the informers to see it, so the controller's next look (from
# the caches) never misses what it just did and starts or stops it twice.
SEEN_TIMEOUT_SECONDS = 10.0
SYNC_TIMEOUT_SECONDS = 60.0
# A log read waits no longer than this for the node's kubelet: the controller reads a
# crashed app's last lines while it decides, and must never hang on one node.
LOG_READ_TIMEOUT_SECONDS = 10.0


def api_client_from(kubeconfig: str = "") -> client.ApiClient:
    """An ApiClient for the kubeconfig file, or (empty) the pod's service account."""
    configuration = client.Configuration()
    if kubeconfig:
        config.load_kube_config(kubeconfig, client_configuration=configuration)
    else:
        config.load_incluster_config(client_configuration=configuration)
    return client.ApiClient(configuration)


def deployment_name(space_uid: str) -> str:
    return objects.space_names(space_uid).deployment


def instance_id(space_uid: str, revision: str) -> str:
    """One per (Space, revision): a pod restarted or rescheduled keeps it."""
    return f"{deployment_name(space_uid)}/{revision}"


def parse_instance_id(value: str) -> tuple[str, str]:
    """(Deployment name, revision key) of an instance id."""
    name, _, revision = value.partition("/")
    return name, revision


class KubernetesBackend(Backend):
    def __init__(
        self,
        api_client: client.ApiClient,
        settings: objects.ObjectSettings,
        informers: Informers | None = None,
        pull_credentials: objects.RegistryCredentials | None = None,
        sync_timeout: float = SYNC_TIMEOUT_SECONDS,
        reader: bool = False,
        files_url: Callable[[SpaceFiles, str], str] | None = None,
    ) -> None:
        """`reader`: only to read instances and logs (the API's log streams), from a watch
        of pods alone, which is all the API's service account may read (the Helm chart's
        RBAC): each live pod is an instance; no Deployment, event or node is watched.

        `files_url(files, space_uid)`: signs the URL the pod of Space `space_uid` fetches a
        `space` volume's files from (the platform's, orchestrator/volumes/exports.py);
        None, or no `settings.export_image`, refuses such volumes."""
        self.api_client = api_client
        self.settings = settings
        self.namespace = settings.namespace
        self.installation = settings.installation
        # The registry login Spaces' images are pulled with (settings.image_pull_secret
        # names the Secret `prepare` keeps holding it).
        self.pull_credentials = pull_credentials
        self.files_url = files_url
        self.core = client.CoreV1Api(api_client)
        self.apps = client.AppsV1Api(api_client)
        self.networking = client.NetworkingV1Api(api_client)
        selector = objects.installation_selector(self.installation)
        self.reader = reader
        self.informers: Any = informers or (
            _PodsOnly(api_client, self.namespace, selector)
            if reader
            else Informers(api_client, self.namespace, selector)
        )
        self.sync_timeout = sync_timeout
        self._started = False
        self._start_lock = threading.Lock()
        self._watchers: list[WatchCallback] = []
        self._subscribed = False
        # Pods seen Ready: a busy app failing its readiness probe for a while is not taken
        # for one that never answered (sandbox.backend.Instance.ready stays True).
        self._ready_seen: set[str] = set()
        self._node_marks: dict[str, object] = {}

    # -- life cycle -------------------------------------------------------------------

    def prepare(self) -> None:
        """Check the namespace is there (a clear error, not a failed start per Space), then
        fill the caches."""
        try:
            self.core.read_namespace(self.namespace)
        except ApiException as exc:
            if exc.status == 404:
                raise BackendError(
                    f"the Kubernetes namespace {self.namespace!r} does not exist: create it "
                    "(the Helm chart does) or set SPACEPORT_KUBE_NAMESPACE"
                ) from exc
            if exc.status != 403:  # allowed to use it without reading it: fine
                raise
        if self.settings.image_pull_secret and self.pull_credentials is not None:
            self._apply(
                objects.make_pull_secret(
                    self.settings.image_pull_secret, self.pull_credentials, self.settings
                )
            )
        self._ensure_started()

    def _ensure_started(self) -> None:
        if self._started:
            return
        with self._start_lock:
            if self._started:
                return
            self.informers.start()
            if not self.informers.wait_synced(self.sync_timeout):
                # Without a full list, "nothing runs" would be a guess: say so instead (the
                # informers keep trying; the next call waits again).
                raise BackendError(
                    f"the Kubernetes API did not list the Spaces of {self.namespace!r} "
                    f"within {self.sync_timeout:g} s"
                )
            self._started = True

    def close(self) -> None:
        with self._start_lock:
            if self._started:
                self.informers.stop()
                self._started = False

    # -- writes -----------------------------------------------------------------------

    def _apply(self, obj: Any) -> Any:
        """Server-side apply of one object (a client model or its JSON dict)."""
        body = obj if isinstance(obj, dict) else self.api_client.sanitize_for_serialization(obj)
        kind = body["kind"]
        patch: Callable[..., Any] = {
            "Deployment": self.apps.patch_namespaced_deployment,
            "Service": self.core.patch_namespaced_service,
            "Secret": self.core.patch_namespaced_secret,
            "NetworkPolicy": self.networking.patch_namespaced_network_policy,
            "Ingress": self.networking.patch_namespaced_ingress,
            "PersistentVolumeClaim": self.core.patch_namespaced_persistent_volume_claim,
        }[kind]
        return patch(
            body["metadata"]["name"],
            self.namespace,
            body,
            field_manager=FIELD_MANAGER,
            force=True,
            _content_type=APPLY,
        )

    def start(self, revision: Revision) -> Instance:
        """Apply the Space's objects with one replica: a new Space, a new revision (the
        Deployment rolls over) or a wake (0 -> 1) alike; the same revision again changes
        nothing."""
        self._ensure_started()
        self._check_files_mounts(revision)
        try:
            # Made before anything is written: an environment a Secret cannot hold (a
            # variable named "MY VAR") refuses the start whole, naming the variable.
            owned_objects = self._owned_objects(revision)
        except ValueError as exc:
            raise BackendError(f"could not start {revision.space}: {exc}") from exc
        try:
            for mount in revision.mounts:
                if mount.files is not None:
                    continue  # another Space's files: an emptyDir its init container fills
                # Not owned by the Deployment: a bucket's data outlives every Space using it.
                self._ensure_claim(mount.name)
            deployment = self._apply(
                objects.make_deployment(revision, self.settings, replicas=1)
            )
            name, uid = deployment.metadata.name, deployment.metadata.uid
            for owned in owned_objects:
                self._apply(objects.with_owner(owned, name, uid))
        except ApiException as exc:
            if _transient(exc):
                raise  # the controller retries
            raise BackendError(
                f"could not start {revision.space}: {_api_reason(exc)}"
            ) from exc
        name = deployment_name(revision.space_id)
        self._until_seen(
            lambda: _template_revision(self._deployment(name)) == revision.key
            and _replicas(self._deployment(name)) >= 1
        )
        return Instance(
            id=instance_id(revision.space_id, revision.key),
            space_id=revision.space_id,
            space=revision.space,
            revision=revision.key,
            sha=revision.sha,
            state=InstanceState.STARTING,
            address=None,
            cpus=revision.hardware.cpu,
            memory_gib=revision.hardware.memory_gib,
            hardware=revision.hardware.name,
        )

    def _check_files_mounts(self, revision: Revision) -> None:
        """Another Space's files (a `space` volume) are exported on the control plane's disk,
        which no pod sees: an init container of Spaceport's image fetches them from the
        platform, so both must be configured."""
        if not objects.space_files_mounts(revision):
            return
        if not self.settings.export_image:
            raise BackendError(
                f"could not start {revision.space}: a 'space' volume needs "
                "SPACEPORT_KUBE_EXPORT_IMAGE (Spaceport's image, whose init container fetches "
                "the files into the pod; the Helm chart sets it), or use a bucket"
            )
        if self.files_url is None:
            raise BackendError(
                f"could not start {revision.space}: a 'space' volume needs "
                "SPACEPORT_KUBE_EXPORT_URL (the platform's URL as Spaces' pods reach it)"
            )

    def _ensure_claim(self, volume: str) -> None:
        """A bucket's claim, made once, asking for the quota (settings.bucket_size_gib). One
        that exists is left as it is: an unbound claim's spec can't change, and growing a
        bound one is its storage class's (allowVolumeExpansion), so a changed quota applies
        to claims made after it."""
        claim = objects.make_volume_claim(volume, self.settings, self.settings.bucket_size_gib)
        try:
            self.core.create_namespaced_persistent_volume_claim(
                self.namespace, claim, field_manager=FIELD_MANAGER
            )
        except ApiException as exc:
            if exc.status != 409:  # 409: it is there already
                raise

    def volumes(self) -> list[KeptVolume]:
        """This installation's claims (its label; a bucket's is `vol-bucket-{uid}`), each in
        use while a Deployment of the installation, at any scale (a paused or sleeping Space
        comes back to it), or a pod of it names the claim. Claims being deleted are left
        out. No sizes: the claim's request is the quota, and the storage enforces it."""
        selector = f"{objects.LABEL_INSTANCE}={self.installation}"
        spaces = objects.installation_selector(self.installation)
        claims = self.core.list_namespaced_persistent_volume_claim(
            self.namespace, label_selector=selector
        ).items
        specs = [
            d.spec.template.spec
            for d in self.apps.list_namespaced_deployment(
                self.namespace, label_selector=spaces
            ).items
        ]
        pods = self.core.list_namespaced_pod(self.namespace, label_selector=spaces).items
        specs += [p.spec for p in pods]
        used = {
            v.persistent_volume_claim.claim_name
            for spec in specs
            for v in spec.volumes or []
            if v.persistent_volume_claim is not None
        }
        return [
            KeptVolume(c.metadata.name.removeprefix("vol-"), in_use=c.metadata.name in used)
            for c in claims
            if c.metadata.name.startswith("vol-") and c.metadata.deletion_timestamp is None
        ]

    def remove_volume(self, name: str) -> None:
        """Delete the bucket's claim (its PersistentVolume goes as its reclaim policy says)."""
        try:
            self.core.delete_namespaced_persistent_volume_claim(
                objects.volume_claim_name(name), self.namespace
            )
        except ApiException as exc:
            if exc.status == 404:
                return
            raise BackendError(f"could not remove volume {name}: {_api_reason(exc)}") from exc

    def _owned_objects(self, revision: Revision) -> list[Any]:
        owned: list[Any] = [
            objects.make_env_secret(revision, self.settings),
            objects.make_service(revision, self.settings),
            objects.make_network_policy(revision, self.settings),
        ]
        files = objects.space_files_mounts(revision)
        if files and self.files_url is not None:
            # Signed again at each start (a wake too): a fresh expiry, never in the
            # Deployment, so the new URL rolls no pod.
            urls = {
                i: self.files_url(m.files, revision.space_id)
                for i, m in files
                if m.files is not None
            }
            owned.append(objects.make_files_secret(revision, self.settings, urls))
        # The Space's host is in its environment (SPACE_HOST, orchestrator/controller/
        # environment.py): <its label>.<the Spaces domain>.
        label, _, domain = revision.env.get("SPACE_HOST", "").partition(".")
        if self.settings.ingress_class and label and domain:
            ingress = objects.make_ingress(
                revision, self.settings, objects.space_host(label, domain)
            )
            if ingress is not None:
                owned.append(ingress)
        return owned

    def stop(self, instance_id: str) -> None:
        """The Deployment's current revision: scale to 0, keeping every object (a paused or
        sleeping Space comes back to them). An older revision: nothing to do, the rollout
        removes its pods."""
        name, revision = parse_instance_id(instance_id)
        label = objects.LABEL_REVISION.replace("~", "~0").replace("/", "~1")
        patch = [
            # Only if it is still the current revision, checked by the API server itself:
            # a stale cache never scales a newer revision down.
            {"op": "test", "path": f"/spec/template/metadata/labels/{label}", "value": revision},
            {"op": "replace", "path": "/spec/replicas", "value": 0},
        ]
        try:
            self.apps.patch_namespaced_deployment(
                name, self.namespace, patch, field_manager=FIELD_MANAGER, _content_type=JSON_PATCH
            )
        except ApiException as exc:
            if exc.status in (404, 422):  # gone, or another revision is current
                return
            raise
        if self._started:
            self._until_seen(
                lambda: _replicas(self._deployment(name)) == 0
                or _template_revision(self._deployment(name)) != revision
            )

    def forget(self, space_uid: str) -> None:
        """Delete the Deployment (its ReplicaSets, pods and owned objects go with it) and
        whatever else carries the Space's uid."""
        name = deployment_name(space_uid)
        body = client.V1DeleteOptions(propagation_policy="Background")
        _ignore_missing(
            lambda: self.apps.delete_namespaced_deployment(name, self.namespace, body=body)
        )
        selector = objects.space_selector(self.installation, space_uid)
        for lister, deleter in (
            (self.core.list_namespaced_service, self.core.delete_namespaced_service),
            (self.core.list_namespaced_secret, self.core.delete_namespaced_secret),
            (
                self.networking.list_namespaced_network_policy,
                self.networking.delete_namespaced_network_policy,
            ),
            (self.networking.list_namespaced_ingress, self.networking.delete_namespaced_ingress),
        ):
            for item in lister(self.namespace, label_selector=selector).items:
                _ignore_missing(
                    lambda item=item, deleter=deleter: deleter(
                        item.metadata.name, self.namespace, body=body
                    )
                )
        if self._started:
            self._until_seen(lambda: self._deployment(name) is None)

    def _until_seen(self, seen: Callable[[], bool]) -> None:
        deadline = time.monotonic() + SEEN_TIMEOUT_SECONDS
        while not seen():
            if time.monotonic() > deadline:
                log.warning("the informers did not see a write within %.0f s", SEEN_TIMEOUT_SECONDS)
                return
            time.sleep(0.02)

    # -- reads (caches only) ----------------------------------------------------------

    def _deployment(self, name: str) -> Any:
        return self.informers.deployments.get(name, self.namespace)

    def instances(self) -> list[Instance]:
        self._ensure_started()
        pods_by_space: dict[str, list[Any]] = defaultdict(list)
        live_pods = []
        for pod in self.informers.pods.items():
            if _finished(pod) or get(pod, "metadata", "deletion_timestamp") is not None:
                continue
            live_pods.append(pod)
            uid = get(pod, "metadata", "labels", default={}).get(objects.LABEL_SPACE_ID)
            if uid:
                pods_by_space[uid].append(pod)
        self._ready_seen &= {get(p, "metadata", "uid") for p in live_pods}
        view = _View(self)
        found: list[Instance] = []
        if self.reader:
            for pods in pods_by_space.values():
                revisions: dict[str, list[Any]] = defaultdict(list)
                for pod in pods:
                    labels = get(pod, "metadata", "labels", default={})
                    revisions[labels.get(objects.LABEL_REVISION, "")].append(pod)
                for revision, same in sorted(revisions.items()):
                    newest = _newest(same)
                    found.append(view.instance(None, newest, revision, newest))
            return found
        for deployment in self.informers.deployments.items():
            if _replicas(deployment) <= 0:
                continue
            if get(deployment, "metadata", "deletion_timestamp") is not None:
                continue
            labels = get(deployment, "metadata", "labels", default={})
            uid = labels.get(objects.LABEL_SPACE_ID)
            current = _template_revision(deployment)
            if not uid or not current:
                continue
            by_revision: dict[str, list[Any]] = defaultdict(list)
            for pod in pods_by_space.get(uid, []):
                revision = get(pod, "metadata", "labels", default={}).get(objects.LABEL_REVISION)
                if revision:
                    by_revision[revision].append(pod)
            template = get(deployment, "spec", "template")
            newest = _newest(by_revision.pop(current, []))
            found.append(view.instance(deployment, template, current, newest))
            for revision, pods in sorted(by_revision.items()):
                newest = _newest(pods)
                found.append(view.instance(deployment, newest, revision, newest))
        return found

    def logs(
        self,
        instance_id: str,
        tail: int | None = None,
        follow: bool = False,
        timestamps: bool = False,
    ) -> Iterator[str]:
        """The newest pod's app container's log; a crashed container's previous run (what
        it printed before it died), where the kubelet keeps one."""
        pod = self._pod_of(instance_id)
        if pod is None:
            return iter(())
        name = get(pod, "metadata", "name")
        container = objects.CONTAINER
        status = _app_status(pod)
        crashed = _crashed(status)
        options: dict[str, Any] = {"container": container, "timestamps": timestamps}
        if tail is not None:
            options["tail_lines"] = tail
        if follow and not crashed:
            try:
                stream = self.core.read_namespaced_pod_log(
                    name,
                    self.namespace,
                    follow=True,
                    _preload_content=False,
                    **options,
                )
            except ApiException:  # not started yet, or gone: no log to read
                return iter(())
            return ClosableLines(_lines(stream), stream.close, stream.release_conn)
        for previous in (True, False) if crashed else (False,):
            try:
                text = self.core.read_namespaced_pod_log(
                    name,
                    self.namespace,
                    previous=previous,
                    _request_timeout=LOG_READ_TIMEOUT_SECONDS,
                    **options,
                )
            except ApiException:
                continue
            return iter(str(text or "").splitlines())
        return iter(())

    def _pod_of(self, value: str) -> Any:
        name, revision = parse_instance_id(value)
        if not self._started:
            self._ensure_started()
        deployment = self._deployment(name)
        uid = get(deployment, "metadata", "labels", default={}).get(objects.LABEL_SPACE_ID)
        if uid is None:
            uid = name.removeprefix("space-")
        pods = [
            p
            for p in self.informers.pods.items()
            if get(p, "metadata", "labels", default={}).get(objects.LABEL_SPACE_ID) == uid
            and get(p, "metadata", "labels", default={}).get(objects.LABEL_REVISION) == revision
        ]
        return _newest(pods, prefer_live=True)

    def capacity(self) -> Capacity:
        self._ensure_started()
        return placement.capacity(
            self.informers.nodes.items(),
            self.informers.pods.items(),
            self.informers.deployments.items(),
        )

    def tier_room(self, tier: HardwareTier) -> TierRoom:
        self._ensure_started()
        return placement.tier_room(
            tier,
            self.informers.nodes.items(),
            self.informers.pods.items(),
            self.informers.deployments.items(),
        )

    # -- change notifications -----------------------------------------------------------

    def watch(self, callback: WatchCallback) -> None:
        self._watchers.append(callback)
        if self._subscribed:
            return
        self._subscribed = True
        self.informers.pods.subscribe(self._on_space_object)
        self.informers.deployments.subscribe(self._on_space_object)
        self.informers.nodes.subscribe(self._on_node)
        self.informers.events.subscribe(self._on_event)
        self._ensure_started()

    def _notify(self, space_uid: str | None) -> None:
        for callback in list(self._watchers):
            try:
                callback(space_uid)
            except Exception:  # noqa: BLE001 - one watcher's bug must not stop the others
                log.exception("a backend watcher failed")

    def _on_space_object(self, event_type: str, obj: Any) -> None:
        if obj is None:  # RELISTED: anything may have changed meanwhile
            self._notify(None)
            return
        uid = get(obj, "metadata", "labels", default={}).get(objects.LABEL_SPACE_ID)
        if uid:
            self._notify(uid)

    def _on_node(self, event_type: str, obj: Any) -> None:
        """Only what changes where pods fit (Ready, cordoned, taints, labels, allocatable)
        wakes the controller: nodes report their status every few seconds."""
        if obj is None:
            self._notify(None)
            return
        name = get(obj, "metadata", "name", default="")
        if event_type == "DELETED":
            self._node_marks.pop(name, None)
            self._notify(None)
            return
        mark = _node_mark(obj)
        if self._node_marks.get(name) != mark:
            self._node_marks[name] = mark
            self._notify(None)

    def _on_event(self, event_type: str, obj: Any) -> None:
        if obj is None or event_type == "DELETED":
            return
        if get(obj, "reason") != "FailedScheduling":
            return
        involved = get(obj, "involved_object")
        if get(involved, "kind") != "Pod":
            return
        pod = self.informers.pods.get(get(involved, "name"), get(involved, "namespace"))
        uid = get(pod, "metadata", "labels", default={}).get(objects.LABEL_SPACE_ID)
        if uid:
            self._notify(uid)


class _Inert:
    """An informer of a kind a reader does not watch: always empty."""

    def items(self) -> list[Any]:
        return []

    def get(self, name: str, namespace: str | None = None) -> Any:
        return None

    def subscribe(self, handler: Callable[[str, Any], None]) -> None:
        return None


class _PodsOnly:
    """The informers of a reader: the Spaces' pods, and nothing else."""

    def __init__(self, api_client: client.ApiClient, namespace: str, selector: str) -> None:
        self.pods = Informer(
            "pods",
            client.CoreV1Api(api_client).list_namespaced_pod,
            namespace=namespace,
            label_selector=selector,
        )
        self.deployments = self.events = self.nodes = _Inert()

    def start(self) -> None:
        self.pods.start()

    def stop(self) -> None:
        self.pods.stop()

    def wait_synced(self, timeout: float) -> bool:
        return self.pods.wait_synced(timeout)


class _View:
    """One `instances()` call's reading of the caches: the events and room behind waiting
    pods are gathered once, and only when a pod waits."""

    def __init__(self, backend: KubernetesBackend) -> None:
        self.backend = backend
        self._events: dict[str, list[Any]] | None = None
        self._rooms: list[placement.NodeRoom] | None = None

    def events_of(self, pod_name: str) -> list[Any]:
        if self._events is None:
            self._events = defaultdict(list)
            for event in self.backend.informers.events.items():
                if get(event, "reason") == "FailedScheduling":
                    self._events[get(event, "involved_object", "name", default="")].append(event)
        return self._events.get(pod_name, [])

    def room(self, pod: Any) -> TierRoom:
        if self._rooms is None:
            informers = self.backend.informers
            self._rooms = placement.node_rooms(
                informers.nodes.items(), informers.pods.items(), informers.deployments.items()
            )
        return placement.room_for(placement.pod_spec_demand(get(pod, "spec")), self._rooms)

    def instance(self, deployment: Any, template: Any, revision: str, pod: Any) -> Instance:
        """The instance of `revision` of the Deployment's Space, from its newest pod (None:
        none made yet); `template` (a pod or the Deployment's pod template) holds its
        labels and limits."""
        backend = self.backend
        labels = get(template, "metadata", "labels", default={})
        annotations = get(template, "metadata", "annotations", default={})
        uid = labels.get(objects.LABEL_SPACE_ID, "")
        cpus, memory = _limits(get(template, "spec"))
        state = InstanceState.STARTING
        ready = False
        started_at = exit_code = waiting_reason = waiting_detail = problem = None
        address = None
        if pod is not None:
            status = _app_status(pod)
            running = get(status, "state", "running")
            waiting = get(status, "state", "waiting")
            terminated = get(status, "state", "terminated")
            last = get(status, "last_state", "terminated")
            if get(waiting, "reason") in PULL_FAILURES:
                image = get(status, "image") or _app_image(get(pod, "spec"))
                problem = (
                    f"the image {image} cannot be pulled: "
                    f"{get(waiting, 'message') or get(waiting, 'reason')}"
                )
            elif _crashed(status):
                state = InstanceState.EXITED
                exit_code = get(terminated, "exit_code")
                if exit_code is None:
                    exit_code = get(last, "exit_code")
                started_at = _time(get(terminated, "started_at") or get(last, "started_at"))
            elif running is not None:
                state = InstanceState.RUNNING
                started_at = _time(get(running, "started_at"))
                pod_uid = get(pod, "metadata", "uid")
                if _pod_ready(pod):
                    backend._ready_seen.add(pod_uid)
                ready = pod_uid in backend._ready_seen
                if ready or revision != _template_revision(deployment):
                    address = objects.service_url(uid, backend.settings)
            elif placement.unschedulable(pod):
                events = self.events_of(get(pod, "metadata", "name"))
                explained = placement.explain(pod, events, self.room(pod))
                if explained is not None:
                    waiting_reason, waiting_detail = explained
        return Instance(
            id=instance_id(uid, revision),
            space_id=uid,
            space=annotations.get(objects.ANNOTATION_SPACE, ""),
            revision=revision,
            sha=annotations.get(objects.ANNOTATION_SHA, ""),
            state=state,
            address=address,
            started_at=started_at,
            exit_code=exit_code,
            cpus=cpus,
            memory_gib=memory,
            ready=ready,
            hardware=labels.get(objects.LABEL_HARDWARE, ""),
            waiting_reason=waiting_reason,
            waiting_detail=waiting_detail,
            problem=problem,
        )


# -- reading objects ------------------------------------------------------------------------


def _replicas(deployment: Any) -> int:
    if deployment is None:
        return 0
    return int(get(deployment, "spec", "replicas", default=1))


def _template_revision(deployment: Any) -> str | None:
    labels = get(deployment, "spec", "template", "metadata", "labels", default={})
    return labels.get(objects.LABEL_REVISION)


def _finished(pod: Any) -> bool:
    return get(pod, "status", "phase") in placement.FINISHED_PHASES


def _newest(pods: Iterable[Any], prefer_live: bool = False) -> Any:
    pods = list(pods)
    if prefer_live:
        live = [p for p in pods if not _finished(p) and not _terminating(p)]
        pods = live or pods
    if not pods:
        return None
    return max(pods, key=_age_key)


def _age_key(pod: Any) -> tuple[str, str]:
    created = _time(get(pod, "metadata", "creation_timestamp"))
    return (created.isoformat() if created else "", get(pod, "metadata", "name", default=""))


def _terminating(obj: Any) -> bool:
    return get(obj, "metadata", "deletion_timestamp") is not None


def _app_status(pod: Any) -> Any:
    for status in get(pod, "status", "container_statuses", default=[]):
        if get(status, "name") == objects.CONTAINER:
            return status
    return None


def _app_image(spec: Any) -> str:
    for container in get(spec, "containers", default=[]):
        if get(container, "name") == objects.CONTAINER:
            return str(get(container, "image", default=""))
    return ""


def _crashed(status: Any) -> bool:
    """Crash-looping, ended, or restarted after an end: the app exited (as a Docker
    container that exits; the kubelet restarting it changes nothing about the crash)."""
    if status is None:
        return False
    if get(status, "state", "waiting", "reason") == CRASH_LOOP:
        return True
    if get(status, "state", "terminated") is not None:
        return True
    return bool(get(status, "restart_count", default=0)) and (
        get(status, "last_state", "terminated") is not None
    )


def _pod_ready(pod: Any) -> bool:
    return any(
        get(c, "type") == "Ready" and get(c, "status") == "True"
        for c in get(pod, "status", "conditions", default=[])
    )


def _limits(spec: Any) -> tuple[float, float]:
    for container in get(spec, "containers", default=[]):
        if get(container, "name") == objects.CONTAINER:
            limits = get(container, "resources", "limits", default={})
            cpu = placement._quantity(limits.get("cpu"))
            memory = placement._quantity(limits.get("memory"))
            return float(cpu), float(memory) / 2**30
    return 0.0, 0.0


def _node_mark(node: Any) -> object:
    rooms = placement.node_rooms([node], [])
    room = rooms[0]
    taints = tuple(sorted((str(t.get("key")), str(t.get("effect"))) for t in room.taints))
    labels = tuple(sorted(room.labels.items()))
    return (room.up, room.cpu, room.memory, room.gpus, room.pods, taints, labels)


def _time(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


def _transient(exc: ApiException) -> bool:
    return exc.status in (0, None, 409, 429) or (exc.status or 0) >= 500


def _api_reason(exc: ApiException) -> str:
    import json

    try:
        message = json.loads(exc.body or "{}").get("message")
    except (ValueError, AttributeError):
        message = None
    return str(message or exc.reason or exc.status)


def _ignore_missing(call: Callable[[], Any]) -> None:
    try:
        call()
    except ApiException as exc:
        if exc.status != 404:
            raise


def _lines(response: Any) -> Iterator[str]:
    pending = b""
    try:
        for chunk in response.stream(4096, decode_content=True):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                yield line.decode(errors="replace")
    except Exception:  # noqa: BLE001 - closed under the read, or the connection broke
        pass
    if pending:
        yield pending.decode(errors="replace")
