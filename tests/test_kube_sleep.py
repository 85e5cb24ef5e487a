"""Sleep on Kubernetes, on the test control plane: a pod cannot be frozen, so an idle
Space sleeps deep at once, its Deployment scaled to 0 (kept, as for a pause); a visit (the
gateway's wake request) scales it back to 1 and it serves again."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from orchestrator.core.db import session_scope
from orchestrator.core.models import Space, Stage
from orchestrator.gateway.activity import request_wake
from orchestrator.spaces import lifecycle
from tests.kube.control_plane import ControlPlane
from tests.test_kube_controller import (
    Running,
    deployment_of,
    home,  # noqa: F401 - the fixture
    new_space,
    pods_of,
    run_controller,  # noqa: F401 - the fixture
    space,
    stage_is,
    until,
)

pytestmark = pytest.mark.kube
SLEEP_SECONDS = 6


def test_sleep_scales_the_deployment_to_zero_and_a_visit_scales_it_back(
    kube_cluster: ControlPlane,
    kube_namespace: str,
    run_controller: Callable[[], Running],  # noqa: F811 - the fixture
) -> None:
    app = new_space("nap")
    with session_scope() as session:
        row = session.get(Space, app)
        assert row is not None
        lifecycle.set_sleep_time(session, row, SLEEP_SECONDS, actor="alice")
    running = run_controller()
    assert not running.backend.can_freeze
    until("RUNNING", stage_is(app, Stage.RUNNING))
    assert deployment_of(kube_cluster, kube_namespace, app).spec.replicas == 1

    until("deep sleep", lambda: space(app).sleep_depth == "deep")  # never light here
    assert space(app).stage == Stage.STOPPED  # the owner set its sleep time
    until("no pod left", lambda: not pods_of(kube_cluster, kube_namespace, app))
    deployment = deployment_of(kube_cluster, kube_namespace, app)
    assert deployment is not None and deployment.spec.replicas == 0

    request_wake(app, datetime.now(UTC))  # what the gateway does on a visit
    until("RUNNING again", stage_is(app, Stage.RUNNING))
    assert deployment_of(kube_cluster, kube_namespace, app).spec.replicas == 1
    assert space(app).sleep_depth is None
