"""One log style for every step, after Dokku: the git hook, build logs, the CLI and SSE
all show the same shapes, so a user learns to read them once.

    -----> A step starts
           a detail of that step
     !     something went wrong, and what to do about it
"""

from __future__ import annotations

from collections.abc import Callable

LogSink = Callable[[str], None]

STEP = "-----> "
DETAIL = "       "
ERROR = " !     "


def step(message: str) -> str:
    return STEP + message


def detail(message: str) -> str:
    return DETAIL + message


def error(message: str) -> str:
    return ERROR + message


def is_error(line: str) -> bool:
    return line.startswith(ERROR)
