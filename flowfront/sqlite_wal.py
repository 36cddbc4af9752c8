"""Opening a SQLite file in WAL mode when several processes may open it at the same moment.

Ordinary lock waits during the switch to WAL go through the busy handler (``timeout=``): a held
read or write lock makes the switch wait, measured. But some locks the switch and WAL recovery
take are answered with SQLITE_BUSY at once, without the handler (waiting there could deadlock),
and CI saw "database is locked" when three processes opened one new embedding cache together.
So the switch is retried here while SQLite says busy or locked, until the deadline; every other
error is raised as it is. The worst case is about twice ``timeout``: one handler wait, then the
retries.
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
    conn = sqlite3.connect(
        str(path), timeout=timeout, check_same_thread=False, isolation_level=isolation_level
    )
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
