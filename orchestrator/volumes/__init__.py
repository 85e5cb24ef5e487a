"""Volumes of Spaces (the Hub's `Volume`): writable buckets and other Spaces' files.

spec.py checks what an owner asks for and stores it on the Space (spec); buckets.py keeps
the buckets; mounts.py turns a Space's volumes into the backend's VolumeMounts."""
