"""pytest fixtures for the test control plane (imported by tests/conftest.py).

`kube_cluster` starts one control plane for the session (tests.kube.control_plane). Under
CI=true a binary that is not built, or a component that will not start, fails the tests
that need it; elsewhere they are skipped with the command that fixes it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests import services
from tests.kube.control_plane import ControlPlane, ControlPlaneUnavailable, missing_binaries


@pytest.fixture(scope="session")
def kube_cluster() -> Iterator[ControlPlane]:
    missing = missing_binaries()
    services.require(
        "the test Kubernetes control plane",
        not missing,
        f"{', '.join(missing)} not built: run scripts/build_control_plane.sh",
    )
    plane = ControlPlane()
    try:
        plane.start()
    except ControlPlaneUnavailable as exc:
        services.require("the test Kubernetes control plane", False, str(exc))
    try:
        yield plane
    finally:
        plane.stop()


@pytest.fixture
def kube_namespace(kube_cluster: ControlPlane) -> Iterator[str]:
    """A namespace of its own for one test, deleted after it."""
    from kubernetes import client

    name = f"t-{uuid.uuid4().hex[:8]}"
    kube_cluster.create_namespace(name)
    try:
        yield name
    finally:
        client.CoreV1Api(kube_cluster.api_client()).delete_namespace(name)
