"""Opening a SQLite file in WAL mode when several processes may open it at the same moment.

Switching a database to WAL takes an exclusive lock for a moment, and SQLite answers a second
connection asking at that moment with SQLITE_BUSY at once instead of calling its busy handler
(waiting there could deadlock). So ``timeout=`` does not cover the switch, and two processes
starting together (serve workers, train beside eval) could fail with "database is locked".
The switch is retried here until the connection's timeout; once the file is in WAL mode the
pragma is a read and never waits.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Literal

__all__ = ["connect_wal"]


def connect_wal(path: Path, *, timeout: float = 30.0, first: tuple[str, ...] = (),
                isolation_level: Literal["DEFERRED", "EXCLUSIVE", "IMMEDIATE"] | None = "DEFERRED"
                ) -> sqlite3.Connection:
    """A connection to ``path`` in WAL mode with ``synchronous=NORMAL`` (crash-safe under WAL).

    ``first``: statements run before the switch, e.g. an ``auto_vacuum`` pragma, which only
    takes effect while the file is still empty, and the switch to WAL writes its header.
    """
    conn = sqlite3.connect(str(path), timeout=timeout, check_same_thread=False, isolation_level=isolation_level)
    deadline, pause = time.monotonic() + timeout, 0.005
    try:
        for statement in first:
            conn.execute(statement)
        while True:
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                break
            except sqlite3.OperationalError as exc:
                if ("locked" not in str(exc) and "busy" not in str(exc)) or time.monotonic() > deadline:
                    raise
                time.sleep(pause)
                pause = min(pause * 2, 0.2)
        conn.execute("PRAGMA synchronous=NORMAL")
    except BaseException:
        conn.close()
        raise
    return conn
