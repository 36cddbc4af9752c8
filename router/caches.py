"""The embedding caches: an in-process LRU and an on-disk SQLite table keyed by text hash.

Both are shared by train, eval and serve, so a query is embedded once. The disk cache runs in WAL
mode so the service's worker threads and a training job can read it while one of them writes.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from flowfront.errors import StoreError
from flowfront.sqlite_wal import connect_wal

__all__ = ["EmbeddingCache", "LRUCache"]


class LRUCache:
    """Thread-safe in-process LRU of vectors for the serving path (no SQLite round trip)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def get_many(self, keys: Iterable[bytes]) -> dict[bytes, np.ndarray]:
        found: dict[bytes, np.ndarray] = {}
        with self._lock:
            for key in keys:
                vector = self._items.get(key)
                if vector is not None:
                    self._items.move_to_end(key)
                    found[key] = vector
        return found

    def put_many(self, items: dict[bytes, np.ndarray]) -> None:
        if self.capacity <= 0:
            return
        with self._lock:
            for key, vector in items.items():
                self._items[key] = vector
                self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)


_SCHEMA = """CREATE TABLE IF NOT EXISTS embeddings (
    namespace TEXT NOT NULL, text_sha256 BLOB NOT NULL, vector BLOB NOT NULL, added REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (namespace, text_sha256)) WITHOUT ROWID"""
_ROW_OVERHEAD = 64  # bytes a row costs beyond its vector (key, namespace, b-tree): for the size cap
_CHUNK = 500  # keys per IN (...) query, well under SQLite's bound-parameter limit


class EmbeddingCache:
    """Float32 vectors on disk keyed by (model identity, sha256 of the text).

    SQLite in WAL mode: readers never block the one writer, and concurrent processes (train,
    eval, serve workers) share the file without corrupting it; writes are single transactions.
    """

    def __init__(self, path: Path, namespace: str, dim: int, *, max_mb: float | None = None) -> None:
        self.path = Path(path)
        self.namespace = namespace
        self.dim = dim
        # At most this many vectors (all namespaces), oldest out first; None: unbounded.
        self.max_rows = None if max_mb is None else max(1, int(max_mb * 1e6 / (4 * dim + _ROW_OVERHEAD)))
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = connect_wal(self.path, timeout=30.0, isolation_level=None,
                                     first=("PRAGMA auto_vacuum=INCREMENTAL",))
            self._conn.execute(_SCHEMA)
            columns = {row[1] for row in self._conn.execute("PRAGMA table_info(embeddings)")}
            if "added" not in columns:  # a cache written before the size cap
                self._conn.execute("ALTER TABLE embeddings ADD COLUMN added REAL NOT NULL DEFAULT 0")
        except (sqlite3.Error, OSError) as exc:
            raise self._error("cannot be opened", exc) from exc

    def _error(self, what: str, exc: BaseException) -> StoreError:
        return StoreError(
            f"embedding cache {self.path} {what}: {exc}",
            hint=f"it only holds cached vectors; delete {self.path} (and its -wal/-shm files) and rerun",
        )

    def get_many(self, keys: Sequence[bytes]) -> dict[bytes, np.ndarray]:
        """The cached vectors among ``keys`` (sha256 digests)."""
        found: dict[bytes, np.ndarray] = {}
        try:
            with self._lock:
                for start in range(0, len(keys), _CHUNK):
                    chunk = list(keys[start : start + _CHUNK])
                    marks = ",".join("?" * len(chunk))
                    rows = self._conn.execute(
                        "SELECT text_sha256, vector FROM embeddings WHERE namespace = ? AND text_sha256 IN "
                        f"({marks})",
                        [self.namespace, *chunk],
                    ).fetchall()
                    found.update((bytes(k), self._decode(v)) for k, v in rows)
        except sqlite3.Error as exc:
            raise self._error("cannot be read", exc) from exc
        return found

    def _decode(self, blob: bytes) -> np.ndarray:
        if len(blob) != 4 * self.dim:
            raise StoreError(
                f"embedding cache {self.path} holds a {len(blob)}-byte vector, expected {4 * self.dim}",
                hint=f"delete {self.path}; it only holds cached vectors",
            )
        return np.frombuffer(blob, dtype=np.float32)

    def put_many(self, items: dict[bytes, np.ndarray]) -> None:
        """Store vectors in one transaction; a text already cached keeps its first vector."""
        now = time.time()
        rows = [
            (self.namespace, k, np.ascontiguousarray(v, dtype=np.float32).tobytes(), now)
            for k, v in items.items()
        ]
        try:
            with self._lock:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    self._conn.executemany("INSERT OR IGNORE INTO embeddings VALUES (?, ?, ?, ?)", rows)
                    over = self._over_cap()
                    if over > 0:  # the oldest go, a tenth more than needed so this is not every write
                        self._conn.execute(
                            "DELETE FROM embeddings WHERE (namespace, text_sha256) IN (SELECT namespace, "
                            "text_sha256 FROM embeddings ORDER BY added LIMIT ?)",
                            [over + (self.max_rows or 0) // 10],
                        )
                    self._conn.execute("COMMIT")
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
                if over > 0:
                    self._conn.executescript("PRAGMA incremental_vacuum;")
        except sqlite3.Error as exc:
            raise self._error("cannot be written", exc) from exc

    def _over_cap(self) -> int:
        if self.max_rows is None:
            return 0
        (count,) = self._conn.execute("SELECT COUNT(*) FROM embeddings").fetchone()
        return int(count) - self.max_rows

    def __len__(self) -> int:
        with self._lock:
            (count,) = self._conn.execute(
                "SELECT COUNT(*) FROM embeddings WHERE namespace = ?", [self.namespace]
            ).fetchone()
        return int(count)

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._conn.close()
