"""Whether a process is still running (local servers, runs that share a trace store)."""

from __future__ import annotations

import contextlib
import os


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs; a finished child of this process is reaped and reported dead."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    with contextlib.suppress(ChildProcessError):  # a zombie child "exists" until it is reaped
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    return True
