"""The Kubernetes test environment: a real control plane with fake (kwok) nodes."""
