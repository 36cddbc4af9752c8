"""The trace store: SQLite in WAL mode.

One row per recorded call, keyed by a hash of (model, budget, messages, sampling parameters). It is
the profiling cache (a killed run resumes without repeating a call: every finished call is
committed before the next is looked up) and the replay source (imported outcome tables become
traces with ``budget`` NULL, i.e. the unlimited-budget response). Datasets imported with them live
in ``queries``.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import orjson

from flowfront.errors import StoreError
from flowfront.processes import pid_alive
from flowfront.redact import Redactor
from flowfront.sqlite_wal import connect_wal

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS traces (
    key TEXT PRIMARY KEY,
    prompt_key TEXT NOT NULL,
    model TEXT NOT NULL,
    budget INTEGER,
    request BLOB NOT NULL,
    response TEXT,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    latency_s REAL,
    cost_usd REAL,
    score REAL,
    error TEXT,
    source TEXT NOT NULL,
    query_id TEXT,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS traces_prompt ON traces (prompt_key);
CREATE INDEX IF NOT EXISTS traces_source ON traces (source, model);
CREATE TABLE IF NOT EXISTS queries (
    source TEXT NOT NULL,
    query_id TEXT NOT NULL,
    query TEXT NOT NULL,
    task TEXT,
    split TEXT,
    reference TEXT,
    PRIMARY KEY (source, query_id)
);
CREATE TABLE IF NOT EXISTS intents (prompt_key TEXT PRIMARY KEY, model TEXT NOT NULL, budget INTEGER, started_at REAL NOT NULL, pid INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS imports (source TEXT PRIMARY KEY, data_hash TEXT NOT NULL, summary TEXT NOT NULL, created_at REAL NOT NULL);
"""


def _canonical(obj: Any) -> bytes:
    return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)


def prompt_key(model: str, messages: Sequence[dict[str, Any]], sampling: dict[str, Any]) -> str:
    """Hash of a call without its budget: every budget of one prompt shares the recorded response."""
    return hashlib.blake2b(_canonical([model, list(messages), sampling]), digest_size=16).hexdigest()


def call_key(model: str, budget: int | None, messages: Sequence[dict[str, Any]], sampling: dict[str, Any]) -> str:
    return hashlib.blake2b(_canonical([model, budget, list(messages), sampling]), digest_size=16).hexdigest()


@dataclass(frozen=True, slots=True)
class Trace:
    key: str
    prompt_key: str
    model: str
    budget: int | None
    request: dict[str, Any]
    response: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    latency_s: float | None
    cost_usd: float | None
    score: float | None = None
    error: str | None = None
    source: str = "live"
    query_id: str | None = None
    created_at: float = 0.0

    def row(self) -> tuple[Any, ...]:
        return (
            self.key, self.prompt_key, self.model, self.budget, _canonical(self.request), self.response,
            self.prompt_tokens, self.completion_tokens, self.latency_s, self.cost_usd, self.score,
            self.error, self.source, self.query_id, self.created_at or time.time(),
        )


_COLUMNS = (
    "key, prompt_key, model, budget, request, response, prompt_tokens, completion_tokens, "
    "latency_s, cost_usd, score, error, source, query_id, created_at"
)


def _trace(row: tuple[Any, ...]) -> Trace:
    values = list(row)
    values[4] = orjson.loads(values[4])
    return Trace(*values)


class TraceStore:
    """A thread-safe handle on one SQLite trace store.

    Every row is scrubbed on its way in (``redactor``, by default the environment's secrets and
    the common key shapes): a query or a provider error that carries a key never reaches disk.
    Keys and prompt keys are computed by the caller from the unscrubbed call, so replay lookups
    are unaffected.
    """

    def __init__(self, path: Path, *, redactor: Redactor | None = None) -> None:
        self.path = Path(path)
        self.redactor = redactor if redactor is not None else Redactor.from_environment()
        self._lock = threading.Lock()
        self._conn = self._open()

    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # a new store can give pages back to the file system after a prune (no-op on old ones)
            conn = connect_wal(self.path, timeout=30.0, first=("PRAGMA auto_vacuum=INCREMENTAL",))
            conn.executescript(_SCHEMA)
            found = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if found is None:
                conn.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
                conn.commit()
            elif int(found[0]) != SCHEMA_VERSION:
                raise StoreError(
                    f"trace store {self.path} has schema version {found[0]}, this flowfront reads {SCHEMA_VERSION}",
                    hint="use a matching flowfront version or point FLOWFRONT_WORKDIR at a new folder",
                )
        except sqlite3.DatabaseError as exc:
            raise StoreError(
                f"trace store {self.path} is not a usable SQLite database ({exc})",
                hint="move the file aside (it may be corrupt) and run again to start a fresh store",
            ) from None
        return conn

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> TraceStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- traces ---------------------------------------------------------------------------------
    def put(self, trace: Trace) -> None:
        """Record one call and commit at once, so a kill right after loses nothing."""
        self.put_many([trace])

    def put_many(self, traces: Iterable[Trace]) -> int:
        rows = [self._scrubbed(t).row() for t in traces]
        with self._lock:
            self._conn.executemany(f"INSERT OR REPLACE INTO traces ({_COLUMNS}) VALUES ({','.join('?' * 15)})", rows)
            self._conn.commit()
        return len(rows)

    def _scrubbed(self, t: Trace) -> Trace:
        scrub = self.redactor.scrub
        request = self.redactor.scrub_obj(t.request)
        response = scrub(t.response) if t.response is not None else None
        error = scrub(t.error) if t.error is not None else None
        if request == t.request and response == t.response and error == t.error:
            return t
        return replace(t, request=request, response=response, error=error)

    def get(self, key: str) -> Trace | None:
        with self._lock:
            row = self._conn.execute(f"SELECT {_COLUMNS} FROM traces WHERE key=?", (key,)).fetchone()
        return _trace(row) if row else None

    def by_prompt(self, prompt_key: str) -> list[Trace]:
        """Every record of one prompt (all budgets it was called with)."""
        with self._lock:
            rows = self._conn.execute(f"SELECT {_COLUMNS} FROM traces WHERE prompt_key=?", (prompt_key,)).fetchall()
        return [_trace(r) for r in rows]

    # -- intents: live calls in flight ---------------------------------------------------------------
    def begin_intent(self, prompt_key: str, model: str, budget: int | None) -> None:
        """Say a live call is about to be made; removed when its trace is written. What is left
        after a crash names the calls that were in flight (made again on resume: no result)."""
        with self._lock:
            self._conn.execute("INSERT OR REPLACE INTO intents VALUES (?,?,?,?,?)",
                               (prompt_key, model, budget, time.time(), os.getpid()))
            self._conn.commit()

    def end_intent(self, prompt_key: str) -> None:
        with self._lock:
            self._conn.execute("DELETE FROM intents WHERE prompt_key=?", (prompt_key,))
            self._conn.commit()

    def put_ending_intent(self, trace: Trace) -> None:
        """Write a live call's trace and drop its intent in one transaction."""
        row = self._scrubbed(trace).row()
        with self._lock:
            self._conn.execute(f"INSERT OR REPLACE INTO traces ({_COLUMNS}) VALUES ({','.join('?' * 15)})", row)
            self._conn.execute("DELETE FROM intents WHERE prompt_key=?", (trace.prompt_key,))
            self._conn.commit()

    def stale_intents(self) -> list[tuple[str, str, int | None, float]]:
        """Intents left by a run that died mid-call: (prompt key, model, budget, started at).

        Intents of processes still running (another run sharing the store) are not stale.
        """
        with self._lock:
            rows = self._conn.execute("SELECT prompt_key, model, budget, started_at, pid FROM intents").fetchall()
        return [row[:4] for row in rows if not pid_alive(row[4])]

    # -- retention ----------------------------------------------------------------------------
    def size_bytes(self) -> int:
        """Bytes the database holds (pages in use), WAL excluded."""
        with self._lock:
            pages = self._conn.execute("PRAGMA page_count").fetchone()[0]
            free = self._conn.execute("PRAGMA freelist_count").fetchone()[0]
            size = self._conn.execute("PRAGMA page_size").fetchone()[0]
        return int((pages - free) * size)

    def prune(self, *, source: str | None = None, max_age_s: float | None = None,
              max_bytes: int | None = None) -> int:
        """Delete traces older than ``max_age_s``, then the oldest until the store holds at most
        ``max_bytes``; give the pages back and truncate the WAL. Returns how many rows went."""
        where, args = ("source=?", [source]) if source is not None else ("1=1", [])
        removed = 0
        with self._lock:
            if max_age_s is not None:
                cur = self._conn.execute(f"DELETE FROM traces WHERE {where} AND created_at < ?",
                                         (*args, time.time() - max_age_s))
                removed += cur.rowcount
                self._conn.commit()
        while max_bytes is not None and self.size_bytes() > max_bytes:
            with self._lock:
                n = self._conn.execute(f"SELECT COUNT(*) FROM traces WHERE {where}", args).fetchone()[0]
                if n == 0:
                    break
                cur = self._conn.execute(
                    f"DELETE FROM traces WHERE rowid IN (SELECT rowid FROM traces WHERE {where} "
                    "ORDER BY created_at LIMIT ?)", (*args, max(1, n // 10)))
                removed += cur.rowcount
                self._conn.commit()
                self._conn.execute("PRAGMA incremental_vacuum")
        with self._lock:
            self._conn.execute("PRAGMA incremental_vacuum")
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return removed

    def count(self, source: str | None = None) -> int:
        sql, args = ("SELECT COUNT(*) FROM traces", ()) if source is None else (
            "SELECT COUNT(*) FROM traces WHERE source=?", (source,))
        with self._lock:
            return int(self._conn.execute(sql, args).fetchone()[0])

    def iter_traces(self, *, models: Iterable[str] | None = None, unlimited_only: bool = False) -> Iterator[Trace]:
        where, args = [], []
        if models is not None:
            models = list(models)
            where.append(f"model IN ({','.join('?' * len(models))})")
            args.extend(models)
        if unlimited_only:
            where.append("budget IS NULL")
        sql = f"SELECT {_COLUMNS} FROM traces" + (f" WHERE {' AND '.join(where)}" if where else "")
        with self._lock:
            rows = self._conn.execute(sql, args).fetchall()
        return (_trace(r) for r in rows)

    # -- datasets -------------------------------------------------------------------------------
    def put_queries(self, source: str, rows: Iterable[tuple[str, str, str | None, str | None, str | None]]) -> None:
        with self._lock:
            self._conn.executemany(
                "INSERT OR REPLACE INTO queries (source, query_id, query, task, split, reference) VALUES (?,?,?,?,?,?)",
                [(source, *r) for r in rows],
            )
            self._conn.commit()

    def queries(self, source: str) -> list[tuple[str, str, str | None, str | None, str | None]]:
        with self._lock:
            return self._conn.execute(
                "SELECT query_id, query, task, split, reference FROM queries WHERE source=? ORDER BY rowid", (source,)
            ).fetchall()

    def models_per_query(self, source: str) -> dict[str, set[str]]:
        """Which models have a recorded outcome for each query of a source."""
        out: dict[str, set[str]] = {}
        with self._lock:
            for qid, model in self._conn.execute(
                "SELECT query_id, model FROM traces WHERE source=? AND budget IS NULL AND error IS NULL", (source,)
            ):
                out.setdefault(qid, set()).add(model)
        return out

    # -- imports --------------------------------------------------------------------------------
    def import_record(self, source: str) -> tuple[str, dict[str, Any]] | None:
        with self._lock:
            row = self._conn.execute("SELECT data_hash, summary FROM imports WHERE source=?", (source,)).fetchone()
        return (row[0], orjson.loads(row[1])) if row else None

    def record_import(self, source: str, data_hash: str, summary: dict[str, Any]) -> None:
        with self._lock:
            self._conn.execute(
                "INSERT OR REPLACE INTO imports VALUES (?,?,?,?)", (source, data_hash, _canonical(summary).decode(), time.time())
            )
            self._conn.commit()

    def delete_source(self, source: str) -> None:
        with self._lock:
            self._conn.execute("DELETE FROM traces WHERE source=?", (source,))
            self._conn.execute("DELETE FROM queries WHERE source=?", (source,))
            self._conn.execute("DELETE FROM imports WHERE source=?", (source,))
            self._conn.commit()
