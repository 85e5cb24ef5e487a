"""SPACEPORT_BACKEND picks the backend (orchestrator/core/backends.py), the one module outside
sandbox/ that names one."""

from __future__ import annotations

from typing import Any

import pytest

from sandbox.kubernetes.backend import KubernetesBackend


def test_the_backend_setting_chooses_kubernetes(
    spaceport_home: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SPACEPORT_BACKEND=kubernetes and its settings make a KubernetesBackend (nothing is
    dialed until it is used); the API's reading backend is one per process."""
    from orchestrator.core import backends
    from orchestrator.core.settings import get_settings

    kubeconfig = spaceport_home / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: t\n"
        "clusters: [{name: t, cluster: {server: 'https://127.0.0.1:9'}}]\n"
        "users: [{name: u, user: {token: abc}}]\n"
        "contexts: [{name: t, context: {cluster: t, user: u}}]\n"
    )
    monkeypatch.setenv("SPACEPORT_BACKEND", "kubernetes")
    monkeypatch.setenv("SPACEPORT_KUBECONFIG", str(kubeconfig))
    monkeypatch.setenv("SPACEPORT_KUBE_NAMESPACE", "team-spaces")
    monkeypatch.setenv("SPACEPORT_KUBE_INGRESS_CLASS", "nginx")
    monkeypatch.setenv("SPACEPORT_SPACES_DOMAIN", "spaces.example.org")
    monkeypatch.setattr(backends, "_shared", None)
    get_settings.cache_clear()
    made = backends.make_backend()
    assert isinstance(made, KubernetesBackend)
    assert made.namespace == "team-spaces"
    assert made.settings.ingress_class == "nginx"
    assert made.settings.ingress_service == "spaceport-gateway"
    assert made.settings.image_pull_secret is None  # no registry login configured
    assert made.api_client.configuration.host == "https://127.0.0.1:9"
    assert backends.reading_backend() is backends.reading_backend()
    assert backends.reading_backend().reader and not made.reader
    assert backends.make_backend() is not made
