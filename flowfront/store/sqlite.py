"""The SQLite engine: one file in WAL mode, the embedded default (``make run``, tests, a laptop).

One connection per handle behind a lock (SQLite serialises writers anyway); ``BEGIN IMMEDIATE``
for writes, so a read-then-write (a claim, a migration) cannot interleave with another process's.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from flowfront.errors import StoreError
from flowfront.redact import Redactor
from flowfront.sqlite_wal import connect_wal
from flowfront.store.base import TraceStore, Tx
from flowfront.store.schema import SQLITE
from flowfront.store.url import StoreURL

__all__ = ["SQLiteStore"]


class _SQLiteTx:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        return self.conn.execute(sql, params).rowcount

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self.conn.executemany(sql, rows)

    def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self.conn.execute(sql, params).fetchall()

    def fetchone(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        row: tuple[Any, ...] | None = self.conn.execute(sql, params).fetchone()
        return row


class SQLiteStore(TraceStore):
    """A trace store in one SQLite file."""

    engine = "sqlite"
    dialect = SQLITE

    def __init__(self, url: StoreURL, *, redactor: Redactor | None = None, timeout_s: float = 30.0) -> None:
        super().__init__(url, redactor=redactor)
        assert url.path is not None
        self.path = url.path
        self._lock = threading.RLock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # a new store can give pages back to the file system after a prune (no-op on old ones)
            self._conn = connect_wal(self.path, timeout=timeout_s, first=("PRAGMA auto_vacuum=INCREMENTAL",),
                                     isolation_level=None)
        except (sqlite3.DatabaseError, OSError) as exc:
            raise _unusable(self, exc) from None
        try:
            self._ensure_schema()
        except BaseException:
            self._conn.close()
            raise

    @contextmanager
    def _transaction(self, *, write: bool = True) -> Iterator[Tx]:
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                try:
                    yield _SQLiteTx(self._conn)
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
                self._conn.execute("COMMIT")
            except sqlite3.DatabaseError as exc:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise _unusable(self, exc) from None

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def size_bytes(self) -> int:
        """Bytes the database holds (pages in use), WAL excluded."""
        with self._lock:
            pages = self._conn.execute("PRAGMA page_count").fetchone()[0]
            free = self._conn.execute("PRAGMA freelist_count").fetchone()[0]
            size = self._conn.execute("PRAGMA page_size").fetchone()[0]
        return int((pages - free) * size)

    def file_bytes(self) -> int:
        """The file's size on disk (what a prune must shrink), WAL included."""
        total = 0
        for suffix in ("", "-wal"):
            path = self.path.with_name(self.path.name + suffix)
            if path.exists():
                total += path.stat().st_size
        return total

    def _reclaim(self) -> None:
        with self._lock:
            mode = self._conn.execute("PRAGMA auto_vacuum").fetchone()[0]
            if mode == 2:  # incremental; run by sqlite3_exec: a stepped statement frees only a page or so
                self._conn.executescript("PRAGMA incremental_vacuum;")
            elif self._conn.execute("PRAGMA freelist_count").fetchone()[0]:
                self._conn.execute("VACUUM")  # an old store made without auto_vacuum: rewrite it once
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()


def _unusable(store: SQLiteStore, exc: BaseException) -> StoreError:
    text = str(exc)
    if isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text):
        return StoreError(
            f"trace store {store.url.shown} is busy ({text})",
            hint="another process holds a long write on it; retry, or give each process its own store",
        )
    return StoreError(f"trace store {store.url.shown} is not a usable SQLite database ({text})",
                      hint="move the file aside (it may be corrupt) and run again to start a fresh store")
