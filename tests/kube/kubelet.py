"""What a kubelet would report about a container, written by tests into pod status.

kwok plays every fake node's kubelet and reports each container running; a test that needs
another verdict (an image that cannot be pulled, a crash loop) writes it the same way kwok
does, through the pod's status subresource.
"""

from __future__ import annotations

from typing import Any

from kubernetes import client

# The app container waiting in CrashLoopBackOff; its last run ended with code 3.
CRASH_LOOP: dict[str, Any] = {
    "restartCount": 3,
    "started": False,
    "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s"}},
    "lastState": {
        "terminated": {
            "exitCode": 3,
            "reason": "Error",
            "startedAt": "2026-01-01T00:00:00Z",
            "finishedAt": "2026-01-01T00:00:01Z",
        }
    },
}


def report_app_status(
    api: client.ApiClient, namespace: str, pod: client.V1Pod, status: dict[str, Any]
) -> None:
    """Write the pod's (first) container's status, not Ready, as its kubelet would."""
    container = pod.spec.containers[0]
    body = {
        "status": {
            "phase": "Running",
            "conditions": [
                {"type": "Ready", "status": "False"},
                {"type": "ContainersReady", "status": "False"},
                {"type": "PodScheduled", "status": "True"},
            ],
            "containerStatuses": [
                {
                    "name": container.name,
                    "image": container.image,
                    "imageID": "",
                    "ready": False,
                    **status,
                }
            ],
        }
    }
    client.CoreV1Api(api).patch_namespaced_pod_status(pod.metadata.name, namespace, body)
