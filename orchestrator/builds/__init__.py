"""The path of a build: a commit becomes a queued build (deploy), travels through the broker
(tasks, embedded_broker) to a worker, which runs the builder and records the result (runner)."""
