"""charts/spaceport: lint and render it, validate what it renders against the test control
plane (server-side dry run), and install it there with Spaceport's image from a local
registry, its pods scheduled onto the fake (kwok) nodes.

The lint and render tests need only the helm binary that scripts/build_control_plane.sh
builds; the `kube` ones the control plane too (tests/kube/). Under CI=true a missing helm
fails, never skips. No test connects to a pod or node IP: pod state is read from the API
server.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import subprocess
import tarfile
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from sandbox.build_network import host_firewall_rules
from tests import services
from tests.kube.control_plane import ControlPlane, bin_dir
from tests.local_registry import LocalRegistry

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "spaceport"
DOCKERFILE = CHART / "image" / "Dockerfile"
# What the image's Dockerfile copies from the repository (its build context).
IMAGE_CONTEXT = ("pyproject.toml", "README.md", "orchestrator", "builder", "sandbox")
# helm's built-in default (1.20) is older than the chart allows; what a real cluster says
# replaces it at install time.
KUBE_VERSION = "1.33.0"
EXTERNAL_VALUES: dict[str, Any] = {
    "postgresql": {
        "enabled": False,
        "external": {"url": "postgresql+psycopg://spaceport:pw@db.example.org:5432/spaceport"},
    },
    "redis": {"enabled": False, "external": {"url": "redis://:pw@redis.example.org:6379/0"}},
}


# -- helm ---------------------------------------------------------------------------------


def helm_binary() -> Path:
    helm = bin_dir() / "helm"
    services.require(
        "helm",
        os.access(helm, os.X_OK),
        f"{helm} is not built: run scripts/build_control_plane.sh",
    )
    return helm


def run_helm(
    *args: str, kubeconfig: Path | None = None, check: bool = True, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """helm with a home of its own under the test run (no ~/.config/helm, no repos)."""
    state = Path(os.environ.get("PYTEST_HELM_HOME", "/tmp/spaceport-test-helm"))
    env = {
        **os.environ,
        "HELM_CACHE_HOME": str(state / "cache"),
        "HELM_CONFIG_HOME": str(state / "config"),
        "HELM_DATA_HOME": str(state / "data"),
    }
    env.pop("KUBECONFIG", None)
    if kubeconfig is not None:
        env["KUBECONFIG"] = str(kubeconfig)
    done = subprocess.run(
        [str(helm_binary()), *args], capture_output=True, text=True, env=env, timeout=timeout
    )
    if check and done.returncode != 0:
        pytest.fail(f"helm {' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
    return done


def values_file(tmp_path: Path, values: dict[str, Any], name: str = "values.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(values))
    return path


def render(
    tmp_path: Path, values: dict[str, Any] | None = None, namespace: str = "spaceport"
) -> list[dict[str, Any]]:
    args = ["template", "t", str(CHART), "--namespace", namespace, "--kube-version", KUBE_VERSION]
    if values:
        args += ["--values", str(values_file(tmp_path, values))]
    out = run_helm(*args).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def container(deployment: dict[str, Any], name: str) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == name)


def env_of(c: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c.get("env", [])}


# -- lint and render (helm only) ------------------------------------------------------------


def test_helm_lint_is_clean(tmp_path: Path) -> None:
    for values in ({}, EXTERNAL_VALUES):
        args = ["lint", "--strict", str(CHART)]
        if values:
            args += ["--values", str(values_file(tmp_path, values))]
        done = run_helm(*args)
        assert "1 chart(s) linted, 0 chart(s) failed" in done.stdout, done.stdout
        assert "[WARNING]" not in done.stdout and "[ERROR]" not in done.stdout, done.stdout


def test_every_value_is_documented() -> None:
    """Every key of values.yaml has a comment just above it, and a value's comment names
    its default; keys inside a value documented as a whole (resources, security contexts)
    are that value's."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    undocumented = []
    # (indent, whether that key's comment documents its whole value) of the open blocks
    stack: list[tuple[int, bool]] = []
    for number, line in enumerate(lines):
        match = re.match(r"^(\s*)([A-Za-z][A-Za-z0-9]*):\s*(\S.*)?$", line)
        if not match:
            continue
        indent, key, value = len(match[1]), match[2], match[3]
        while stack and stack[-1][0] >= indent:
            stack.pop()
        start = number
        while start > 0 and lines[start - 1].strip().startswith("#"):
            start -= 1
        comment = " ".join(lines[start:number])
        whole = "Default" in comment
        if stack and stack[-1][1]:
            stack.append((indent, True))  # part of a value documented as a whole
            continue
        if not comment:
            undocumented.append(f"line {number + 1}: {key} has no comment")
        elif value is not None and not whole:
            undocumented.append(f"line {number + 1}: {key}'s comment names no default")
        stack.append((indent, whole))
    assert not undocumented, "\n".join(undocumented)


def test_default_render_is_the_whole_control_plane(tmp_path: Path) -> None:
    docs = render(tmp_path)
    deployments = by_kind(docs, "Deployment")
    assert set(deployments) == {
        "t-spaceport-api",
        "t-spaceport-worker",
        "t-spaceport-controller",
        "t-spaceport-beat",
        "t-spaceport-redis",
    }
    assert deployments["t-spaceport-api"]["spec"]["replicas"] == 2
    assert deployments["t-spaceport-controller"]["spec"]["replicas"] == 2
    assert deployments["t-spaceport-beat"]["spec"]["replicas"] == 1
    assert deployments["t-spaceport-beat"]["spec"]["strategy"]["type"] == "Recreate"
    assert set(by_kind(docs, "StatefulSet")) == {"t-spaceport-postgresql"}
    commands = {
        name: container(d, name.removeprefix("t-spaceport-"))["command"]
        for name, d in deployments.items()
        if name != "t-spaceport-redis"
    }
    assert commands["t-spaceport-api"][:2] == ["spaceport", "serve"]
    assert commands["t-spaceport-worker"] == ["spaceport", "worker"]
    assert commands["t-spaceport-controller"] == ["spaceport", "controller"]
    assert commands["t-spaceport-beat"] == ["spaceport", "beat"]

    settings = by_kind(docs, "ConfigMap")["t-spaceport-settings"]["data"]
    assert settings["SPACEPORT_BACKEND"] == "kubernetes"
    assert settings["SPACEPORT_KUBE_NAMESPACE"] == "spaces"
    assert settings["SPACEPORT_KUBE_GATEWAY_NAMESPACE"] == "spaceport"
    api_pod_labels = deployments["t-spaceport-api"]["spec"]["template"]["metadata"]["labels"]
    gateway_labels = json.loads(settings["SPACEPORT_KUBE_GATEWAY_LABELS"])
    assert gateway_labels.items() <= api_pod_labels.items()
    # A `space` volume's init container: the chart's own image, fetching from the API
    # Service, whose pods' port the Space's NetworkPolicy opens.
    api_image = container(deployments["t-spaceport-api"], "api")["image"]
    assert settings["SPACEPORT_KUBE_EXPORT_IMAGE"] == api_image
    assert settings["SPACEPORT_KUBE_EXPORT_URL"] == (
        "http://t-spaceport-api.spaceport.svc.cluster.local:80"
    )
    api_port = container(deployments["t-spaceport-api"], "api")["ports"][0]["containerPort"]
    assert settings["SPACEPORT_KUBE_EXPORT_PORT"] == str(api_port) == "8000"
    hardware = by_kind(docs, "ConfigMap")["t-spaceport-hardware"]
    assert json.loads(hardware["data"]["overrides.json"]) == {}

    # Every Spaceport process: the settings, the shared home, the catalogue.
    for name in ("t-spaceport-api", "t-spaceport-worker", "t-spaceport-controller"):
        spec = deployments[name]["spec"]["template"]["spec"]
        main = container(deployments[name], name.removeprefix("t-spaceport-"))
        env = env_of(main)
        assert env["SPACEPORT_HOME"] == "/var/lib/spaceport"
        assert env["SPACEPORT_HARDWARE_OVERRIDES"] == {
            "configMapKeyRef": {"name": "t-spaceport-hardware", "key": "overrides.json"}
        }
        assert env["SPACEPORT_DATABASE_URL"]["secretKeyRef"]["name"] == "t-spaceport-urls"
        assert {"configMapRef": {"name": "t-spaceport-settings"}} in main["envFrom"]
        home = next(v for v in spec["volumes"] if v["name"] == "home")
        assert home["persistentVolumeClaim"]["claimName"] == "t-spaceport-home"
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert main["securityContext"]["allowPrivilegeEscalation"] is False
    pvc = by_kind(docs, "PersistentVolumeClaim")["t-spaceport-home"]
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]

    # The worker's engine: a privileged Docker-in-Docker sidecar on the pod's loopback.
    worker = deployments["t-spaceport-worker"]
    assert env_of(container(worker, "worker"))["DOCKER_HOST"] == "tcp://127.0.0.1:2375"
    # The worker can't make a cgroup on the sidecar's host: no pids limit of its own.
    assert env_of(container(worker, "worker"))["SPACEPORT_BUILD_PIDS_LIMIT"] == "0"
    # Nor install the build firewall: the sidecar does (test_the_dind_sidecar_...).
    assert env_of(container(worker, "worker"))["SPACEPORT_BUILD_HOST_FIREWALL"] == "external"
    dind = container(worker, "dind")
    assert dind["securityContext"]["privileged"] is True
    assert "--host=tcp://127.0.0.1:2375" in dind["args"]
    assert worker["spec"]["template"]["spec"]["automountServiceAccountToken"] is False

    # Ingresses: the API's host and the wildcard of Space hosts, both to the gateway.
    ingresses = by_kind(docs, "Ingress")
    hosts = {
        name: [(r["host"], r["http"]["paths"][0]["backend"]["service"]["name"])
               for r in i["spec"]["rules"]]
        for name, i in ingresses.items()
    }  # fmt: skip
    assert hosts == {
        "t-spaceport-api": [("spaceport.example.org", "t-spaceport-api")],
        "t-spaceport-spaces": [("*.spaces.example.org", "t-spaceport-api")],
    }

    # No password anywhere but in Secrets.
    for doc in docs:
        if doc["kind"] != "Secret":
            assert "postgresql+psycopg://" not in yaml.safe_dump(doc), doc["metadata"]["name"]
    urls = by_kind(docs, "Secret")["t-spaceport-urls"]["stringData"]
    password = by_kind(docs, "Secret")["t-spaceport-postgresql"]["stringData"]["password"]
    assert len(password) == 32
    assert urls["database-url"] == (
        f"postgresql+psycopg://spaceport:{password}@t-spaceport-postgresql:5432/spaceport"
    )
    assert urls["broker-url"] == "redis://t-spaceport-redis:6379/0"


def test_the_space_files_image_and_service_follow_the_values(tmp_path: Path) -> None:
    values = {
        "spaces": {"exportImage": "registry.example.org/spaceport:1"},
        "api": {"port": 9000, "service": {"port": 8080}},
        "clusterDomain": "k8s.internal",
    }
    settings = by_kind(render(tmp_path, values), "ConfigMap")["t-spaceport-settings"]["data"]
    assert settings["SPACEPORT_KUBE_EXPORT_IMAGE"] == "registry.example.org/spaceport:1"
    assert settings["SPACEPORT_KUBE_EXPORT_URL"] == (
        "http://t-spaceport-api.spaceport.svc.k8s.internal:8080"
    )
    assert settings["SPACEPORT_KUBE_EXPORT_PORT"] == "9000"


def test_rbac_is_limited_to_the_spaces_namespace(tmp_path: Path) -> None:
    docs = render(tmp_path)
    roles = by_kind(docs, "Role")
    controller = roles["t-spaceport-controller"]
    assert controller["metadata"]["namespace"] == "spaces"
    granted = {resource for rule in controller["rules"] for resource in rule["resources"]}
    assert {
        "deployments",
        "services",
        "ingresses",
        "networkpolicies",
        "secrets",
        "pods",
        "pods/log",
        "events",
        "persistentvolumeclaims",
    } <= granted
    assert roles["t-spaceport-api"]["metadata"]["namespace"] == "spaces"
    for binding in by_kind(docs, "RoleBinding").values():
        assert binding["metadata"]["namespace"] == "spaces"
        assert binding["subjects"][0]["namespace"] == "spaceport"
    (cluster_role,) = by_kind(docs, "ClusterRole").values()
    assert cluster_role["rules"] == [
        {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list", "watch"]}
    ]
    (cluster_binding,) = by_kind(docs, "ClusterRoleBinding").values()
    assert cluster_binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "t-spaceport-controller", "namespace": "spaceport"}
    ]
    deployments = by_kind(docs, "Deployment")
    spec = deployments["t-spaceport-controller"]["spec"]["template"]["spec"]
    assert spec["serviceAccountName"] == "t-spaceport-controller"


def test_external_postgres_and_redis(tmp_path: Path) -> None:
    docs = render(tmp_path, EXTERNAL_VALUES)
    assert not by_kind(docs, "StatefulSet")
    assert "t-spaceport-redis" not in by_kind(docs, "Deployment")
    assert not by_kind(docs, "NetworkPolicy")  # nothing bundled to protect
    urls = by_kind(docs, "Secret")["t-spaceport-urls"]["stringData"]
    assert urls == {
        "database-url": EXTERNAL_VALUES["postgresql"]["external"]["url"],
        "broker-url": EXTERNAL_VALUES["redis"]["external"]["url"],
    }

    existing = {
        "postgresql": {
            "enabled": False,
            "external": {"existingSecret": "db", "existingSecretKey": "u"},
        },
        "redis": {"enabled": False, "external": {"existingSecret": "mq"}},
        "registry": {
            "url": "registry.example.org/spaces",
            "username": "bot",
            "existingSecret": "reg",
        },
    }
    docs = render(tmp_path, existing)
    assert not by_kind(docs, "Secret")  # every credential is the operator's own Secret
    api = by_kind(docs, "Deployment")["t-spaceport-api"]
    env = env_of(container(api, "api"))
    assert env["SPACEPORT_DATABASE_URL"] == {"secretKeyRef": {"name": "db", "key": "u"}}
    assert env["SPACEPORT_BROKER_URL"] == {"secretKeyRef": {"name": "mq", "key": "broker-url"}}
    assert env["SPACEPORT_REGISTRY"] == "registry.example.org/spaces"
    assert env["SPACEPORT_REGISTRY_USERNAME"] == "bot"
    assert env["SPACEPORT_REGISTRY_PASSWORD"] == {
        "secretKeyRef": {"name": "reg", "key": "password"}
    }


def test_an_operators_hardware_catalogue_is_mounted_and_named(tmp_path: Path) -> None:
    from sandbox import catalogue

    shipped = catalogue.shipped_path().read_text()
    mine = shipped.replace("price_usd_per_hour: 0.40", "price_usd_per_hour: 0.45")
    default = env_of(container(by_kind(render(tmp_path), "Deployment")["t-spaceport-api"], "api"))
    assert "SPACEPORT_HARDWARE_CATALOGUE" not in default  # the shipped file
    docs = render(tmp_path, {"hardware": {"catalogue": mine}})
    data = by_kind(docs, "ConfigMap")["t-spaceport-hardware"]["data"]
    assert (
        catalogue.parse(data["catalogue.yaml"], "chart")["t4-small"].unit_cost_usd_per_hour == 0.45
    )
    for name, deployment in by_kind(docs, "Deployment").items():
        if name.endswith(("-api", "-controller", "-worker")):
            env = env_of(container(deployment, name.rsplit("-", 1)[1]))
            assert env["SPACEPORT_HARDWARE_CATALOGUE"] == "/etc/spaceport/hardware/catalogue.yaml"


def test_values_that_cannot_work_are_refused(tmp_path: Path) -> None:
    refused = {
        "postgresql.external.url": {"postgresql": {"enabled": False}},
        "worker.engine.host": {"worker": {"engine": {"mode": "external"}}},
        "worker.engine.mode must be": {"worker": {"engine": {"mode": "podman"}}},
        "spaces.namespace must differ": {"spaces": {"namespace": "spaceport"}},
    }
    for message, values in refused.items():
        path = values_file(tmp_path, values)
        done = run_helm(
            "template", "t", str(CHART), "-n", "spaceport", "--kube-version", KUBE_VERSION,
            "--values", str(path), check=False,
        )  # fmt: skip
        assert done.returncode != 0 and message in done.stderr, (values, done.stderr)


def test_worker_engine_modes(tmp_path: Path) -> None:
    host_socket = render(tmp_path, {"worker": {"engine": {"mode": "hostSocket"}}})
    worker = by_kind(host_socket, "Deployment")["t-spaceport-worker"]
    names = [c["name"] for c in worker["spec"]["template"]["spec"]["containers"]]
    assert names == ["worker"]
    assert env_of(container(worker, "worker"))["DOCKER_HOST"] == "unix:///var/run/docker.sock"
    volumes = {v["name"]: v for v in worker["spec"]["template"]["spec"]["volumes"]}
    assert volumes["docker-socket"]["hostPath"]["path"] == "/var/run/docker.sock"

    external = render(
        tmp_path, {"worker": {"engine": {"mode": "external", "host": "tcp://engine:2376"}}}
    )
    worker = by_kind(external, "Deployment")["t-spaceport-worker"]
    assert [c["name"] for c in worker["spec"]["template"]["spec"]["containers"]] == ["worker"]
    assert env_of(container(worker, "worker"))["DOCKER_HOST"] == "tcp://engine:2376"
    # The worker can't reach the firewall of a node's or a build VM's Engine either: its
    # operator keeps it (charts/README.md).
    for docs in (host_socket, external):
        worker = by_kind(docs, "Deployment")["t-spaceport-worker"]
        assert env_of(container(worker, "worker"))["SPACEPORT_BUILD_HOST_FIREWALL"] == "external"

    insecure = render(
        tmp_path, {"worker": {"engine": {"dind": {"insecureRegistries": ["reg.internal:5000"]}}}}
    )
    dind = container(by_kind(insecure, "Deployment")["t-spaceport-worker"], "dind")
    assert dind["args"] == [
        "--host=tcp://127.0.0.1:2375",
        "--tls=false",
        "--insecure-registry=reg.internal:5000",
    ]


FAKE_IPTABLES = """#!/bin/sh
# An INPUT chain in the file $CHAIN, one rule a line: -nL, -C INPUT ..., -I INPUT 1 ...
case "$1" in
  -nL) exit 0 ;;
  -C) shift 2; grep -qxF -- "$*" "$CHAIN" ;;
  -I) shift 3; { echo "$*"; cat "$CHAIN"; } > "$CHAIN.new" && mv "$CHAIN.new" "$CHAIN" ;;
  *) exit 2 ;;
esac
"""


def test_the_dind_sidecar_installs_the_build_firewall(tmp_path: Path) -> None:
    """The rules the worker leaves to its Engine (SPACEPORT_BUILD_HOST_FIREWALL=external)
    are exactly sandbox/build_network.host_firewall_rules(), in order, in the sidecar's
    network namespace (the pod's) before dockerd starts; a restarted sidecar adds none."""
    dind = container(by_kind(render(tmp_path), "Deployment")["t-spaceport-worker"], "dind")
    shell, flags, script, name = dind["command"]
    assert (shell, flags, name) == ("/bin/sh", "-ec", "dind")
    expected = [" ".join(rule) for rule in host_firewall_rules()]
    for rule in expected:
        assert f"iptables -C INPUT {rule} 2>/dev/null || iptables -I INPUT 1 {rule}" in script
    inserted = re.findall(r"iptables -I INPUT 1 (.+)$", script, flags=re.MULTILINE)
    assert list(reversed(inserted)) == expected
    assert script.rstrip().endswith('exec dockerd-entrypoint.sh "$@"')
    # What charts/README.md tells the operator of a node's or a build VM's Engine to run.
    readme = (ROOT / "charts" / "README.md").read_text()
    assert all(f"iptables -I INPUT 1 {rule}" in readme for rule in expected)

    # Run it as the sidecar would, with an iptables and an entrypoint that write down what
    # they are told: the chain ends up as host_firewall_rules() says, twice run or once.
    bin_path = tmp_path / "bin"
    bin_path.mkdir()
    (bin_path / "iptables").write_text(FAKE_IPTABLES)
    (bin_path / "dockerd-entrypoint.sh").write_text('#!/bin/sh\nprintf "%s\\n" "$@" > "$ARGS"\n')
    for tool in bin_path.iterdir():
        tool.chmod(0o755)
    chain, args = tmp_path / "chain", tmp_path / "args"
    chain.write_text("")
    env = {"PATH": f"{bin_path}:/usr/bin:/bin", "CHAIN": str(chain), "ARGS": str(args)}
    for _ in range(2):
        subprocess.run([*dind["command"], *dind["args"]], env=env, check=True, timeout=30)
        assert chain.read_text().splitlines() == expected
        assert args.read_text().splitlines() == dind["args"]


def test_per_space_ingresses_route_to_the_gateway(tmp_path: Path) -> None:
    docs = render(tmp_path, {"spaces": {"ingressClass": "nginx"}})
    settings = by_kind(docs, "ConfigMap")["t-spaceport-settings"]["data"]
    assert settings["SPACEPORT_KUBE_INGRESS_CLASS"] == "nginx"
    assert settings["SPACEPORT_KUBE_INGRESS_SERVICE"] == "t-spaceport-gateway"
    assert settings["SPACEPORT_KUBE_INGRESS_SERVICE_PORT"] == "80"
    gateway = by_kind(docs, "Service")["t-spaceport-gateway"]
    assert gateway["metadata"]["namespace"] == "spaces"
    assert gateway["spec"] == {
        "type": "ExternalName",
        "externalName": "t-spaceport-api.spaceport.svc.cluster.local",
        "ports": [{"name": "http", "port": 80}],
    }
    assert "t-spaceport-gateway" not in by_kind(render(tmp_path), "Service")


# -- against the test control plane --------------------------------------------------------


def dry_run_create(plane: ControlPlane, docs: list[dict[str, Any]], namespace: str) -> None:
    """Each rendered object, validated by the API server (dryRun=All): schema, defaults,
    admission. Server-side apply, so objects that exist already (the namespaces) pass too."""
    from kubernetes.dynamic import DynamicClient

    dynamic = DynamicClient(plane.api_client())
    refused = []
    for doc in docs:
        resource = dynamic.resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
        kwargs: dict[str, Any] = {}
        if resource.namespaced:
            kwargs["namespace"] = doc["metadata"].get("namespace", namespace)
        try:
            resource.server_side_apply(
                body=doc, field_manager="spaceport-test", dry_run="All", **kwargs
            )
        except Exception as exc:  # noqa: BLE001 - collect every refusal, then fail
            refused.append(f"{doc['kind']}/{doc['metadata']['name']}: {exc}")
    assert not refused, "\n".join(refused)


@pytest.mark.kube
def test_rendered_manifests_pass_a_server_side_dry_run(
    kube_cluster: ControlPlane, kube_namespace: str, tmp_path: Path
) -> None:
    spaces = f"{kube_namespace}-spaces"
    # Namespaced objects need their namespace to exist, even in a dry run: the install
    # makes it first (Helm orders Namespace first).
    kube_cluster.create_namespace(spaces)
    try:
        everything = {
            "spaces": {"ingressClass": "nginx"},
            "registry": {"url": "registry.example.org/s", "username": "u", "password": "p"},
            "ingress": {"apiTlsSecret": "api-tls", "spacesTlsSecret": "spaces-tls"},
        }
        for values in ({}, EXTERNAL_VALUES, everything):
            spaces_values = {**values.get("spaces", {}), "namespace": spaces}
            docs = render(tmp_path, {**values, "spaces": spaces_values}, namespace=kube_namespace)
            kinds = {d["kind"] for d in docs}
            assert {"Deployment", "Role", "ClusterRole", "Ingress", "Namespace"} <= kinds
            dry_run_create(kube_cluster, docs, kube_namespace)
        # A broken object is refused: the dry run does validate.
        with pytest.raises(AssertionError, match="replicas"):
            broken = render(tmp_path, {"spaces": {"namespace": spaces}}, namespace=kube_namespace)
            deployment = next(d for d in broken if d["kind"] == "Deployment")
            deployment["spec"]["replicas"] = "two"
            dry_run_create(kube_cluster, [deployment], kube_namespace)
    finally:
        from kubernetes import client

        client.CoreV1Api(kube_cluster.api_client()).delete_namespace(spaces)


# -- the image and the registry ---------------------------------------------------------------


def image_context() -> tuple[bytes, str]:
    """The image's build context (what its Dockerfile copies, nothing else) and a digest of
    it, so an unchanged tree reuses the image."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(DOCKERFILE, arcname="Dockerfile")
        for name in IMAGE_CONTEXT:
            tar.add(
                ROOT / name,
                arcname=name,
                filter=lambda info: None if "__pycache__" in info.name else info,
            )
    data = buffer.getvalue()
    return data, hashlib.sha256(data).hexdigest()[:16]


@pytest.fixture(scope="session")
def spaceport_image(local_registry: LocalRegistry) -> tuple[str, str]:
    """Spaceport's own image, built from charts/spaceport/image/Dockerfile and pushed to
    the local registry (tests/local_registry.py): (repository, tag)."""
    import docker

    from builder import base_image
    from orchestrator.core.settings import get_settings

    services.require(
        "Docker Engine", services.docker_available(), "scripts/bootstrap.sh installs it"
    )
    client = docker.from_env(timeout=900)
    lines: list[str] = []
    # python:3.11-slim, pulled or made from Debian packages when no registry answers.
    base_image.ensure_image(client, "python:3.11-slim", lines.append, get_settings())
    context, digest = image_context()
    repository = f"{local_registry.address}/spaceport/spaceport"
    tag = f"test-{digest}"
    try:
        client.images.build(
            fileobj=io.BytesIO(context),
            custom_context=True,
            tag=f"{repository}:{tag}",
            rm=True,
            pull=False,
        )
    except docker.errors.BuildError as exc:
        log = "".join(str(chunk.get("stream", chunk)) for chunk in exc.build_log)
        pytest.fail(f"the Spaceport image did not build: {exc}\n{log[-4000:]}")
    pushed = client.images.push(
        repository, tag=tag, stream=True, decode=True, auth_config=local_registry.auth_config()
    )
    for status in pushed:
        if "error" in status:
            pytest.fail(f"push of {repository}:{tag} failed: {status['error']}")
    return repository, tag


def test_the_image_runs_spaceport_as_uid_1000(spaceport_image: tuple[str, str]) -> None:
    """The chart's pods run the image as uid 1000: it must serve the API so (SQLite in its
    home here), with git, git-lfs and skopeo at hand. Probed from inside the container,
    on its own loopback."""
    import docker

    repository, tag = spaceport_image
    client = docker.from_env(timeout=120)
    box = client.containers.run(
        f"{repository}:{tag}",
        ["spaceport", "serve", "--host", "127.0.0.1", "--port", "8000"],
        user="1000:1000",
        detach=True,
        network_mode="none",
    )
    probe = (
        "import urllib.request; "
        "print(urllib.request.urlopen('http://127.0.0.1:8000/api/health').read().decode())"
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            code, out = box.exec_run(["python3", "-c", probe])
            if code == 0 or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert code == 0, box.logs().decode(errors="replace")[-2000:]
        assert json.loads(out) == {"status": "ok"}
        for tool in (["git", "--version"], ["git", "lfs", "version"], ["skopeo", "--version"]):
            code, out = box.exec_run(tool)
            assert code == 0, (tool, out)
        # A `space` volume's init container runs this image with exactly this command
        # (sandbox/kubernetes/objects.py): it is there, and the API refuses an unsigned URL.
        code, out = box.exec_run(
            ["python", "-m", "sandbox.kubernetes.fetch_export", "/tmp/files"],
            environment={
                "SPACEPORT_EXPORT_URL": "http://127.0.0.1:8000/api/volumes/space-files/"
                f"{'0' * 24}/{'a' * 40}?path=&for={'1' * 24}&expires=9999999999&sig=00"
            },
        )
        assert code == 1, out
        assert b"refused: HTTP 403: this Space files URL is not signed" in out, out
    finally:
        box.remove(force=True)


# -- install ----------------------------------------------------------------------------------


def release_pods(plane: ControlPlane, namespace: str, release: str) -> list[Any]:
    from kubernetes import client

    core = client.CoreV1Api(plane.api_client())
    return core.list_namespaced_pod(
        namespace, label_selector=f"app.kubernetes.io/instance={release}"
    ).items


@pytest.mark.kube
@pytest.mark.timeout(1200)
def test_helm_install_schedules_the_control_plane_on_fake_nodes(
    kube_cluster: ControlPlane,
    kube_namespace: str,
    spaceport_image: tuple[str, str],
    local_registry: LocalRegistry,
    tmp_path: Path,
) -> None:
    from kubernetes import client

    repository, tag = spaceport_image
    # The image is really in the registry (pods never pull: kwok runs no container).
    assert local_registry.manifest_digest("spaceport/spaceport", tag) is not None

    release = "sp" + uuid.uuid4().hex[:6]
    spaces = f"{kube_namespace}-spaces"
    storage_class = f"spaceport-test-{release}"
    core = client.CoreV1Api(kube_cluster.api_client())
    # The shared home: a ReadWriteMany volume for the claim to bind to (the test cluster
    # has no provisioner; no kubelet ever mounts it).
    core.create_persistent_volume(
        {
            "metadata": {"name": storage_class},
            "spec": {
                "capacity": {"storage": "50Gi"},
                "accessModes": ["ReadWriteMany"],
                "storageClassName": storage_class,
                "persistentVolumeReclaimPolicy": "Retain",
                "hostPath": {"path": "/nonexistent/spaceport-test"},
            },
        }
    )
    # The pods pull with the registry's credentials, from a Secret of the operator's.
    auth = base64.b64encode(
        f"{local_registry.username}:{local_registry.password}".encode()
    ).decode()
    docker_config = {"auths": {local_registry.address: {"auth": auth}}}
    core.create_namespaced_secret(
        kube_namespace,
        {
            "metadata": {"name": "registry-pull"},
            "type": "kubernetes.io/dockerconfigjson",
            "stringData": {".dockerconfigjson": json.dumps(docker_config)},
        },
    )
    values = {
        **EXTERNAL_VALUES,
        "image": {"repository": repository, "tag": tag},
        "imagePullSecrets": ["registry-pull"],
        "spaces": {"namespace": spaces},
        # No docker:dind in the local registry: builds would use an engine elsewhere.
        "worker": {"engine": {"mode": "external", "host": "tcp://engine.example.org:2376"}},
        "persistence": {"storageClass": storage_class, "keep": False},
        "hardware": {"overrides": {"cpu-basic": {"cpu": 1, "memory_gib": 2, "disk_gib": 10}}},
    }
    installed = False
    try:
        run_helm(
            "install", release, str(CHART), "--namespace", kube_namespace,
            "--values", str(values_file(tmp_path, values)), "--wait", "--timeout", "5m",
            kubeconfig=kube_cluster.kubeconfig, timeout=400,
        )  # fmt: skip
        installed = True
        status = json.loads(
            run_helm(
                "status", release, "-n", kube_namespace, "-o", "json",
                kubeconfig=kube_cluster.kubeconfig,
            ).stdout
        )  # fmt: skip
        assert status["info"]["status"] == "deployed"

        pods = release_pods(kube_cluster, kube_namespace, release)
        components = sorted(p.metadata.labels["app.kubernetes.io/component"] for p in pods)
        assert components == ["api", "api", "beat", "controller", "controller", "worker"]
        nodes = {n.metadata.name: n for n in core.list_node().items}
        for pod in pods:
            node = nodes[pod.spec.node_name]
            # On a fake CPU node (the GPU pool's taint keeps the control plane off it).
            assert node.metadata.annotations.get("kwok.x-k8s.io/node") == "fake"
            assert node.metadata.labels["spaceport.dev/pool"] == "cpu", pod.metadata.name
            assert pod.status.phase == "Running", pod.metadata.name
            ready = {c.type: c.status for c in pod.status.conditions}
            assert ready.get("PodScheduled") == "True" and ready.get("Ready") == "True"
            for c in pod.spec.containers:
                assert c.image == f"{repository}:{tag}", (pod.metadata.name, c.image)
            assert [s.name for s in pod.spec.image_pull_secrets] == ["registry-pull"]
        # Two API replicas spread over the two CPU nodes when they can.
        api_nodes = {p.spec.node_name for p in pods if "api" in p.metadata.name}
        assert len(api_nodes) == 2

        # What the pods were given: the settings and the catalogue, RBAC in place.
        settings = core.read_namespaced_config_map(f"{release}-spaceport-settings", kube_namespace)
        assert settings.data["SPACEPORT_BACKEND"] == "kubernetes"
        assert settings.data["SPACEPORT_KUBE_NAMESPACE"] == spaces
        hardware = core.read_namespaced_config_map(f"{release}-spaceport-hardware", kube_namespace)
        assert json.loads(hardware.data["overrides.json"])["cpu-basic"]["cpu"] == 1
        rbac = client.RbacAuthorizationV1Api(kube_cluster.api_client())
        assert rbac.read_namespaced_role(f"{release}-spaceport-controller", spaces).rules
        pvc = core.read_namespaced_persistent_volume_claim(
            f"{release}-spaceport-home", kube_namespace
        )
        assert pvc.status.phase == "Bound"

        # The controller's ServiceAccount may do its work in the Spaces namespace, and
        # nothing in the control plane's own.
        authz = client.AuthorizationV1Api(kube_cluster.api_client())
        user = f"system:serviceaccount:{kube_namespace}:{release}-spaceport-controller"

        def may(verb: str, resource: str, namespace: str | None, group: str = "") -> bool:
            review = authz.create_subject_access_review(
                {
                    "spec": {
                        "user": user,
                        "groups": ["system:serviceaccounts"],
                        "resourceAttributes": {
                            "verb": verb,
                            "group": group,
                            "resource": resource,
                            **({"namespace": namespace} if namespace else {}),
                        },
                    }
                }
            )
            return bool(review.status.allowed)

        assert may("create", "deployments", spaces, group="apps")
        assert may("create", "networkpolicies", spaces, group="networking.k8s.io")
        assert may("get", "pods/log", spaces) or may("get", "pods", spaces)
        assert may("create", "secrets", spaces)
        assert may("list", "nodes", None)
        assert not may("get", "secrets", kube_namespace)
        assert not may("create", "pods", "default")
        assert not may("update", "nodes", None)
    finally:
        if installed:
            run_helm(
                "uninstall", release, "-n", kube_namespace, "--wait", "--timeout", "3m",
                kubeconfig=kube_cluster.kubeconfig, timeout=240,
            )  # fmt: skip
        core.delete_persistent_volume(storage_class)
    # helm uninstall leaves nothing of the release behind.
    deadline = time.monotonic() + 60
    while release_pods(kube_cluster, kube_namespace, release) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not release_pods(kube_cluster, kube_namespace, release)
    rbac = client.RbacAuthorizationV1Api(kube_cluster.api_client())
    cluster_roles = [
        r.metadata.name
        for r in rbac.list_cluster_role().items
        if r.metadata.name.startswith(release)
    ]
    assert not cluster_roles
    left = core.list_namespaced_config_map(
        kube_namespace, label_selector=f"app.kubernetes.io/instance={release}"
    ).items
    assert not left
    # The Spaces namespace the chart made goes with it (every Space in it too).
    from kubernetes.client.rest import ApiException

    try:
        phase = core.read_namespace(spaces).status.phase
    except ApiException as exc:
        assert exc.status == 404
    else:
        assert phase == "Terminating"
