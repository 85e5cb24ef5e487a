"""The HTTP API: Hub-compatible routes (shapes in shared/reference/hub-api.md) plus
Spaceport's own (builds)."""
