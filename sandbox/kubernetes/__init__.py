"""The Kubernetes backend: Spaces as Deployments on a cluster's CPU and GPU node pools.

* objects.py: the objects of one Space (Deployment, Service, Ingress, NetworkPolicy, the
  Secret holding its environment), pure functions of its Revision, unit-tested without a
  cluster (like KubeSpawner's make_pod).
* informers.py: one shared list-then-watch per kind (pods, deployments, events, nodes),
  restarted on errors and on expired resource versions; the backend reads only its caches.
* placement.py: room per hardware tier from nodes' allocatable resources less what is
  requested on them, and why a pod waits, in plain words.
* backend.py: KubernetesBackend, the sandbox.backend.Backend the controller drives.
"""
