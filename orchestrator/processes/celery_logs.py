"""Celery's log lines that `spaceport up` keeps out of its output.

Beat would log two INFO lines ("Sending due task") for every housekeeping tick, and the
worker two more per task ("received", "succeeded"): with ticks every few seconds they
drown what an operator wants to read. Beat runs at WARNING; the worker keeps its INFO lines
for builds and drops them only for the periodic housekeeping tasks.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

BEAT_LOG_LEVEL = "WARNING"
# The loggers of the worker's per-task lines (celery/worker/strategy.py, celery/app/trace.py).
TASK_LOGGERS = ("celery.worker.strategy", "celery.app.trace")


class HousekeepingFilter(logging.Filter):
    """Drops INFO-and-below lines about the named tasks; warnings and errors stay."""

    def __init__(self, task_names: Iterable[str]) -> None:
        super().__init__()
        self.task_names = frozenset(task_names)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.INFO:
            return True
        context = record.args if isinstance(record.args, dict) else getattr(record, "data", None)
        return not (isinstance(context, dict) and context.get("name") in self.task_names)


def periodic_task_names(beat_schedule: dict[str, dict[str, object]]) -> set[str]:
    return {str(entry["task"]) for entry in beat_schedule.values() if "task" in entry}


def quiet_housekeeping(beat_schedule: dict[str, dict[str, object]]) -> None:
    """Install the filter on the worker's task loggers (before the worker starts). Alembic's
    INFO lines (a "setup plugin" line per plugin when the worker checks the schema) go too."""
    quiet = HousekeepingFilter(periodic_task_names(beat_schedule))
    for name in TASK_LOGGERS:
        logging.getLogger(name).addFilter(quiet)
    logging.getLogger("alembic").setLevel(logging.WARNING)
