"""The path of a build: a commit becomes a queued build (deploy), travels through the broker
(tasks, embedded_broker) to a worker, which reads the commit once and runs the builder
(runner, with the builder's inputs mapped in options), writing its log in batches (logs).
Every move of a build, and the built image it records in the Space's spec, goes through
the state machine (state)."""
