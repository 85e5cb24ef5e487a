"""Processes of `spaceport up` die with it, however it dies.

Two mechanisms, because each covers what the other can't:

* :func:`die_with_parent` (a ``preexec_fn``) asks Linux to send the child SIGTERM when
  `up` dies, ``prctl(PR_SET_PDEATHSIG)``, even on ``kill -9`` of `up`.
* :func:`watch_parent`, in the child, checks once a second that its parent is still the
  `up` that started it (elsewhere than on Linux, or if the signal was lost); once it is
  not, the child stops gracefully and, should that hang (a build thread, a log
  follower), exits after a grace period.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time
from collections.abc import Callable

PR_SET_PDEATHSIG = 1
# The pid of the `up` that started this process (set by up.py in its children's env).
PARENT_ENV = "SPACEPORT_UP_PID"
# The same pid, passed on by a child to what it starts (git http-backend and its hook).
ANCESTOR_ENV = "SPACEPORT_UP_ANCESTOR_PID"
GRACE_SECONDS = 10.0


def die_with_parent(parent: int) -> Callable[[], None]:
    """The preexec_fn for a child of process `parent` (`up`): it runs in the child between
    fork and exec."""

    def preexec() -> None:
        if sys.platform.startswith("linux"):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)  # `up` died between the fork and the prctl: no signal would come

    return preexec


def watch_parent() -> None:
    """In a child of `up`: stop once `up` is gone. Does nothing for a process started by
    hand (no SPACEPORT_UP_PID)."""
    parent = os.environ.pop(PARENT_ENV, None)
    if not parent or not parent.isdigit():
        return
    # Grandchildren can't rely on the death signal (it comes from their own parent): they
    # watch `up` itself (watch_ancestor).
    os.environ[ANCESTOR_ENV] = parent

    def watch() -> None:
        while os.getppid() == int(parent):
            time.sleep(1)
        os.kill(os.getpid(), signal.SIGTERM)  # the process's own graceful stop
        time.sleep(GRACE_SECONDS)
        os._exit(1)

    threading.Thread(target=watch, name="watch-parent", daemon=True).start()


def watch_ancestor() -> None:
    """In a grandchild of `up` (the git hook that follows a build for the pusher): exit
    once `up` is gone, rather than follow a build nobody runs any more."""
    ancestor = os.environ.get(ANCESTOR_ENV, "")
    if not ancestor.isdigit():
        return

    def watch() -> None:
        while _alive(int(ancestor)):
            time.sleep(1)
        os._exit(1)

    threading.Thread(target=watch, name="watch-up", daemon=True).start()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
