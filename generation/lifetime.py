"""Worker processes end with the process that started them.

A worker killed parent (SIGKILL, OOM killer, a closed terminal) leaves its workers re-parented to init: a
render worker in the middle of a job keeps rendering, a generation worker keeps its share of the body bank in
memory and waits forever for its next task, and both take the CPU and memory of the run that resumes.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time

PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int, poll_s: float = 1.0) -> None:
    """Call first thing in a worker (a pool initializer): exit when process ``parent_pid`` is gone.

    Linux: the kernel kills the worker at once (``prctl(PR_SET_PDEATHSIG, SIGKILL)``; it fires when the thread
    that started the worker ends, so start pools from a long-lived thread, as this project does); everywhere
    else, and as a fallback, a daemon thread polls the parent id every ``poll_s`` seconds.
    """
    if os.getppid() != parent_pid:  # the parent died before the worker got here
        os._exit(1)
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):
            pass

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(poll_s)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
