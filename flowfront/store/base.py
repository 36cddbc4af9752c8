"""The store contract, written once over SQL that both engines run.

:class:`TraceStore` is the one contract: recorded calls (the profiling cache and the replay
source), datasets, imports, live calls in flight (intents), served calls, the decision log,
feedback and the served generation. Every method is implemented here over a small transaction
primitive (:meth:`TraceStore._transaction`) that the engines provide, so SQLite and PostgreSQL
share every rule: what is scrubbed of secrets, how a claim on a live call is decided, what a
prune removes. ``flowfront.store.testing`` runs one contract suite over both.

Every row is scrubbed on its way in (``redactor``: the environment's secrets, the store URL's
password and the common key shapes). Keys and prompt keys are computed by the caller from the
unscrubbed call, so replay lookups are unaffected.
"""

from __future__ import annotations

import abc
import os
import socket
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import replace
from typing import Any, Protocol

import orjson

from flowfront.errors import StoreError
from flowfront.processes import pid_alive
from flowfront.redact import Redactor
from flowfront.store.records import Decision, Feedback, ServedCall, Trace, canonical
from flowfront.store.schema import CURRENT, MIGRATIONS, Dialect, ddl
from flowfront.store.url import StoreURL

__all__ = ["INTENT_LEASE_S", "StoreUnavailable", "TraceStore", "Tx"]

# A claim on a live call not refreshed for this long belongs to nobody. Holders refresh every
# third of it (backends/cached.py); 30 s expired under a loaded suite, when the refreshing thread
# waited behind busy executor threads. A dead holder on this host is seen at once (its pid).
INTENT_LEASE_S = 300.0
_HOST = socket.gethostname()


class StoreUnavailable(StoreError):
    """The store cannot be reached now (a lost database connection); retrying later may work."""

    retryable = True


class Tx(Protocol):
    """One transaction's statements, written with ``?`` placeholders."""

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int: ...
    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...
    def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...
    def fetchone(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None: ...


def _upsert(table: str, columns: Sequence[str], key: Sequence[str]) -> str:
    """INSERT … ON CONFLICT DO UPDATE: the latest row for a key wins (SQLite ≥ 3.24, PostgreSQL)."""
    updates = ", ".join(f"{c}=excluded.{c}" for c in columns if c not in key)
    return (f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({','.join('?' * len(columns))}) "
            f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates}")


_PUT_TRACE = _upsert("traces", Trace.COLUMNS, ("key",))
_PUT_CALL = _upsert("served_calls", ServedCall.COLUMNS, ("trace_id", "seq"))
_PUT_DECISION = _upsert("decisions", Decision.COLUMNS, ("id",))
_PUT_FEEDBACK = (_upsert("feedback", Feedback.COLUMNS, ("id", "name")).replace(
    "created_at=excluded.created_at, ", ""))  # the first grade's time stays; updated_at moves
_TRACES = f"SELECT {', '.join(Trace.COLUMNS)} FROM traces"


class TraceStore(abc.ABC):
    """A handle on one trace store (thread-safe). Use :func:`flowfront.store.connect` to open one."""

    engine: str = "store"
    dialect: Dialect

    def __init__(self, url: StoreURL, *, redactor: Redactor | None = None) -> None:
        self.url = url
        base = redactor if redactor is not None else Redactor.from_environment()
        self.redactor = Redactor([*base.secrets, url.password]) if url.password else base
        self.owner = f"{_HOST}:{os.getpid()}:{os.urandom(4).hex()}"  # who holds this handle's intents

    # -- engine primitives ----------------------------------------------------------------------
    @abc.abstractmethod
    def _transaction(self, *, write: bool = True) -> AbstractContextManager[Tx]:
        """One transaction (committed on exit, rolled back on error); driver errors become StoreError."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections and files."""

    @abc.abstractmethod
    def size_bytes(self) -> int:
        """Bytes the store's rows occupy (a file's pages in use; a database's relations)."""

    def _reclaim(self) -> None:
        """Give freed space back to the file system after a prune (engines that can)."""

    def _live_bytes(self, table: str) -> int:
        """The bytes a size-capped prune of ``table`` counts (by default the whole store's rows)."""
        return self.size_bytes()

    def __enter__(self) -> TraceStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url.shown!r})"

    # -- schema ---------------------------------------------------------------------------------
    def _ensure_schema(self, lock: str = "") -> None:
        """Create the current schema on an empty store, migrate an older one, refuse a newer one."""
        with self._transaction() as tx:
            if lock:
                tx.execute(lock)
            tx.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            found = tx.fetchone("SELECT value FROM meta WHERE key='schema_version'")
            if found is None:
                for statement in ddl(CURRENT, self.dialect):
                    tx.execute(statement)
                tx.execute("INSERT INTO meta (key, value) VALUES ('schema_version', ?)", (str(CURRENT),))
                return
            version = int(found[0])
            if version > CURRENT:
                raise StoreError(
                    f"trace store {self.url.shown} has schema version {version}, newer than this "
                    f"flowfront's {CURRENT}",
                    hint="upgrade flowfront, or point --store at another store",
                )
            for step in range(version, CURRENT):
                MIGRATIONS[step](tx.execute, tx.fetchall, self.dialect)
                tx.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(step + 1),))

    def schema_version(self) -> int:
        with self._transaction(write=False) as tx:
            row = tx.fetchone("SELECT value FROM meta WHERE key='schema_version'")
        return int(row[0]) if row else 0

    def ping(self) -> None:
        """Raise StoreError unless the store answers now (readiness); engines bound the wait."""
        with self._transaction(write=False) as tx:
            tx.fetchone("SELECT 1")

    # -- traces ---------------------------------------------------------------------------------
    def put(self, trace: Trace) -> None:
        """Record one call and commit at once, so a kill right after loses nothing."""
        self.put_many([trace])

    def put_many(self, traces: Iterable[Trace]) -> int:
        rows = [self._scrubbed(t).row() for t in traces]
        if rows:
            with self._transaction() as tx:
                tx.executemany(_PUT_TRACE, rows)
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
        with self._transaction(write=False) as tx:
            row = tx.fetchone(f"{_TRACES} WHERE key=?", (key,))
        return Trace.from_row(row) if row else None

    def by_prompt(self, prompt_key: str) -> list[Trace]:
        """Every record of one prompt (all budgets it was called with)."""
        with self._transaction(write=False) as tx:
            rows = tx.fetchall(f"{_TRACES} WHERE prompt_key=?", (prompt_key,))
        return [Trace.from_row(r) for r in rows]

    def count(self, source: str | None = None) -> int:
        sql, args = ("SELECT COUNT(*) FROM traces", ()) if source is None else (
            "SELECT COUNT(*) FROM traces WHERE source=?", (source,))
        with self._transaction(write=False) as tx:
            row = tx.fetchone(sql, args)
        return int(row[0]) if row else 0

    def iter_traces(
        self, *, models: Iterable[str] | None = None, unlimited_only: bool = False
    ) -> Iterator[Trace]:
        where: list[str] = []
        args: list[Any] = []
        if models is not None:
            models = list(models)
            where.append(f"model IN ({','.join('?' * len(models))})")
            args.extend(models)
        if unlimited_only:
            where.append("budget IS NULL")
        sql = _TRACES + (f" WHERE {' AND '.join(where)}" if where else "")
        with self._transaction(write=False) as tx:
            rows = tx.fetchall(sql, args)
        return (Trace.from_row(r) for r in rows)

    # -- intents: live calls in flight ----------------------------------------------------------
    def claim_intent(
        self, prompt_key: str, model: str, budget: int | None, *, lease_s: float = INTENT_LEASE_S
    ) -> bool:
        """Claim the live call of ``prompt_key`` for this handle: True when nobody else holds it.

        A claim is held by a process that refreshes it (:meth:`heartbeat`); one not refreshed for
        ``lease_s``, or whose process on this host is gone, is stale and may be taken over. This
        is how processes sharing a store (on one machine or several) make each call once.
        """
        now = time.time()
        with self._transaction() as tx:
            inserted = tx.execute(
                "INSERT INTO intents (prompt_key, model, budget, started_at, pid, host, owner, heartbeat_at) "
                "VALUES (?,?,?,?,?,?,?,?) ON CONFLICT (prompt_key) DO NOTHING",
                (prompt_key, model, budget, now, os.getpid(), _HOST, self.owner, now))
            if inserted:
                return True
            row = tx.fetchone(
                "SELECT owner, host, pid, heartbeat_at, started_at FROM intents WHERE prompt_key=?"
                + self._for_update(),
                (prompt_key,),
            )
            if row is not None and row[0] != self.owner and not _stale(row, now, lease_s):
                return False
            tx.execute(
                "UPDATE intents SET model=?, budget=?, started_at=?, pid=?, host=?, owner=?, heartbeat_at=? "
                "WHERE prompt_key=?",
                (model, budget, now, os.getpid(), _HOST, self.owner, now, prompt_key),
            )
        return True

    def _for_update(self) -> str:
        return ""

    def begin_intent(self, prompt_key: str, model: str, budget: int | None) -> None:
        """Say a live call is about to be made, whoever held it before."""
        self.claim_intent(prompt_key, model, budget, lease_s=0.0)

    def heartbeat(self, prompt_keys: Iterable[str]) -> None:
        """Refresh this handle's claims on calls still in flight."""
        keys = list(prompt_keys)
        if keys:
            with self._transaction() as tx:
                tx.executemany("UPDATE intents SET heartbeat_at=? WHERE prompt_key=? AND owner=?",
                               [(time.time(), k, self.owner) for k in keys])

    def end_intent(self, prompt_key: str) -> None:
        """Give up a claim (the call failed): another process may make it."""
        with self._transaction() as tx:
            tx.execute("DELETE FROM intents WHERE prompt_key=? AND owner=?", (prompt_key, self.owner))

    def put_ending_intent(self, trace: Trace) -> None:
        """Write a live call's trace and drop its intent in one transaction."""
        row = self._scrubbed(trace).row()
        with self._transaction() as tx:
            tx.execute(_PUT_TRACE, row)
            tx.execute("DELETE FROM intents WHERE prompt_key=?", (trace.prompt_key,))

    def stale_intents(self, *, lease_s: float = INTENT_LEASE_S) -> list[tuple[str, str, int | None, float]]:
        """Intents left by a run that died mid-call: (prompt key, model, budget, started at).

        Intents of processes still running (another run sharing the store) are not stale.
        """
        now = time.time()
        with self._transaction(write=False) as tx:
            rows = tx.fetchall(
                "SELECT owner, host, pid, heartbeat_at, started_at, prompt_key, model, budget FROM intents"
            )
        return [(r[5], r[6], r[7], r[4]) for r in rows if _stale(r[:5], now, lease_s)]

    # -- datasets and imports -------------------------------------------------------------------
    def put_queries(
        self, source: str, rows: Iterable[tuple[str, str, str | None, str | None, str | None]]
    ) -> None:
        sql = _upsert(
            "queries", ("source", "query_id", "query", "task", "split", "reference"), ("source", "query_id")
        )
        with self._transaction() as tx:
            tx.executemany(sql, [(source, *r) for r in rows])

    def queries(self, source: str) -> list[tuple[str, str, str | None, str | None, str | None]]:
        with self._transaction(write=False) as tx:
            rows = tx.fetchall("SELECT query_id, query, task, split, reference FROM queries WHERE source=? "
                               f"ORDER BY {self.dialect.order}", (source,))
        return [(r[0], r[1], r[2], r[3], r[4]) for r in rows]

    def models_per_query(self, source: str) -> dict[str, set[str]]:
        """Which models have a recorded outcome for each query of a source."""
        out: dict[str, set[str]] = {}
        with self._transaction(write=False) as tx:
            rows = tx.fetchall(
                "SELECT query_id, model FROM traces WHERE source=? AND budget IS NULL AND error IS NULL",
                (source,),
            )
        for qid, model in rows:
            out.setdefault(qid, set()).add(model)
        return out

    def import_record(self, source: str) -> tuple[str, dict[str, Any]] | None:
        with self._transaction(write=False) as tx:
            row = tx.fetchone("SELECT data_hash, summary FROM imports WHERE source=?", (source,))
        return (row[0], orjson.loads(row[1])) if row else None

    def record_import(self, source: str, data_hash: str, summary: dict[str, Any]) -> None:
        sql = _upsert("imports", ("source", "data_hash", "summary", "created_at"), ("source",))
        with self._transaction() as tx:
            tx.execute(sql, (source, data_hash, canonical(summary).decode(), time.time()))

    def delete_source(self, source: str) -> None:
        with self._transaction() as tx:
            for table in ("traces", "queries", "imports"):
                tx.execute(f"DELETE FROM {table} WHERE source=?", (source,))

    def copy_to(self, other: TraceStore, *, batch: int = 5000) -> dict[str, int]:
        """Copy the recorded calls, datasets and imports into ``other`` (e.g. a SQLite store into
        PostgreSQL); served requests stay where they were logged. Returns the rows copied."""
        with self._transaction(write=False) as tx:
            sources = [r[0] for r in tx.fetchall("SELECT DISTINCT source FROM queries")]
            imports = tx.fetchall("SELECT source, data_hash, summary FROM imports")
        traces = list(self.iter_traces())
        for start in range(0, len(traces), batch):
            other.put_many(traces[start:start + batch])
        queries = 0
        for source in sources:
            rows = self.queries(source)
            other.put_queries(source, rows)
            queries += len(rows)
        for source, data_hash, summary in imports:
            other.record_import(source, data_hash, orjson.loads(summary))
        return {"traces": len(traces), "queries": queries, "imports": len(imports)}

    # -- served requests: calls, decisions, feedback ------------------------------------------------
    def put_served(self, decisions: Sequence[Decision], calls: Sequence[ServedCall]) -> int:
        """Decisions and their calls in one transaction: a request's rows are all there, or none."""
        scrub = self.redactor.scrub
        drows = [replace(d, query=scrub(d.query), answer=scrub(d.answer) if d.answer is not None else None,
                         error=scrub(d.error) if d.error is not None else None,
                         fallbacks=self.redactor.scrub_obj(d.fallbacks)).row() for d in decisions]
        crows = [replace(c, request=self.redactor.scrub_obj(c.request),
                         response=scrub(c.response) if c.response is not None else None,
                         error=scrub(c.error) if c.error is not None else None).row() for c in calls]
        with self._transaction() as tx:
            if drows:
                tx.executemany(_PUT_DECISION, drows)
            if crows:
                tx.executemany(_PUT_CALL, crows)
        return len(drows) + len(crows)

    def decisions(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        workflow: str | None = None,
        ids: Sequence[str] | None = None,
        limit: int | None = None,
    ) -> list[Decision]:
        """Decisions, oldest first, filtered by time (``created_at``), workflow or response ids."""
        where, args = self._window(since, until, workflow)
        if not _match_ids(ids, where, args):
            return []
        sql = (
            f"SELECT {', '.join(Decision.COLUMNS)} FROM decisions"
            + (f" WHERE {' AND '.join(where)}" if where else "")
            + " ORDER BY created_at, id"
            + (f" LIMIT {int(limit)}" if limit is not None else "")
        )
        with self._transaction(write=False) as tx:
            rows = tx.fetchall(sql, args)
        return [Decision.from_row(r) for r in rows]

    @staticmethod
    def _window(
        since: float | None, until: float | None, workflow: str | None
    ) -> tuple[list[str], list[Any]]:
        where: list[str] = []
        args: list[Any] = []
        for clause, value in (
            ("created_at >= ?", since),
            ("created_at < ?", until),
            ("workflow = ?", workflow),
        ):
            if value is not None:
                where.append(clause)
                args.append(value)
        return where, args

    def served_calls(self, trace_id: str | None = None) -> list[ServedCall]:
        """The calls of one served request (all of them when None), in call order."""
        sql = f"SELECT {', '.join(ServedCall.COLUMNS)} FROM served_calls"
        args: tuple[Any, ...] = ()
        if trace_id is not None:
            sql, args = sql + " WHERE trace_id=?", (trace_id,)
        with self._transaction(write=False) as tx:
            rows = tx.fetchall(sql + " ORDER BY trace_id, seq", args)
        return [ServedCall.from_row(r) for r in rows]

    def count_served(self) -> tuple[int, int]:
        """(decisions, served calls)."""
        with self._transaction(write=False) as tx:
            d = tx.fetchone("SELECT COUNT(*) FROM decisions")
            c = tx.fetchone("SELECT COUNT(*) FROM served_calls")
        return int(d[0]) if d else 0, int(c[0]) if c else 0

    def put_feedback(self, rows: Sequence[Feedback]) -> list[str]:
        """Upsert grades whose response id has a decision; returns the ids that have none (unwritten)."""
        ids = sorted({f.id for f in rows})
        if not ids:
            return []
        scrub = self.redactor.scrub
        with self._transaction() as tx:
            known = {
                r[0]
                for r in tx.fetchall(
                    f"SELECT id FROM decisions WHERE id IN ({','.join('?' * len(ids))})", ids
                )
            }
            keep = [
                replace(
                    f,
                    comment=scrub(f.comment) if f.comment else f.comment,
                    label=scrub(f.label) if f.label else f.label,
                ).row()
                for f in rows
                if f.id in known
            ]
            if keep:
                tx.executemany(_PUT_FEEDBACK, keep)
        return [i for i in ids if i not in known]

    def feedback(self, *, ids: Sequence[str] | None = None, name: str | None = None,
                 since: float | None = None) -> list[Feedback]:
        """Grades, oldest update first; ``since`` filters on ``updated_at``."""
        where: list[str] = []
        args: list[Any] = []
        if not _match_ids(ids, where, args):
            return []
        for clause, value in (("name = ?", name), ("updated_at >= ?", since)):
            if value is not None:
                where.append(clause)
                args.append(value)
        sql = (
            f"SELECT {', '.join(Feedback.COLUMNS)} FROM feedback"
            + (f" WHERE {' AND '.join(where)}" if where else "")
            + " ORDER BY updated_at, id, name"
        )
        with self._transaction(write=False) as tx:
            rows = tx.fetchall(sql, args)
        return [Feedback.from_row(r) for r in rows]

    # -- the served generation: a reload every replica picks up -----------------------------------
    def generation(self) -> int:
        with self._transaction(write=False) as tx:
            row = tx.fetchone("SELECT value FROM meta WHERE key='serve_generation'")
        return int(row[0]) if row else 0

    def ensure_generation(self) -> int:
        """The served generation, starting it at 1 on a store that has none."""
        return self._seeded_generation(1, bump=False)

    def bump_generation(self) -> int:
        """Advance the served generation by one (atomically) and return the new value."""
        return self._seeded_generation(0, bump=True)

    def _seeded_generation(self, start: int, *, bump: bool) -> int:
        # One transaction: the row is made if missing, then (maybe) advanced and read under its lock.
        with self._transaction() as tx:
            tx.execute(
                "INSERT INTO meta (key, value) VALUES ('serve_generation', ?) ON CONFLICT (key) DO NOTHING",
                (str(start),),
            )
            if bump:
                tx.execute(
                    "UPDATE meta SET value=CAST(CAST(value AS INTEGER) + 1 AS TEXT) "
                    "WHERE key='serve_generation'"
                )
            row = tx.fetchone("SELECT value FROM meta WHERE key='serve_generation'")
        return int(row[0]) if row else start

    # -- retention ------------------------------------------------------------------------------
    def prune(
        self, *, source: str | None = None, max_age_s: float | None = None, max_bytes: int | None = None
    ) -> int:
        """Delete traces older than ``max_age_s``, then the oldest until the store holds at most
        ``max_bytes``; give the space back. Returns how many rows went."""
        where, args = ("source=?", [source]) if source is not None else ("1=1", [])
        return self._prune("traces", "key", where, args, max_age_s, max_bytes)

    def prune_served(self, *, max_age_s: float | None = None, max_bytes: int | None = None) -> int:
        """The same retention for served requests: a decision goes with its calls and its feedback."""
        return self._prune("decisions", "id", "1=1", [], max_age_s, max_bytes)

    def _prune(self, table: str, key: str, where: str, args: list[Any], max_age_s: float | None,
               max_bytes: int | None) -> int:
        removed = 0
        if max_age_s is not None:
            with self._transaction() as tx:
                cutoff = time.time() - max_age_s
                removed += self._delete(tx, table, key, f"{where} AND created_at < ?", [*args, cutoff])
        while max_bytes is not None and self._live_bytes(table) > max_bytes:
            with self._transaction() as tx:
                row = tx.fetchone(f"SELECT COUNT(*) FROM {table} WHERE {where}", args)
                n = int(row[0]) if row else 0
                if n == 0:
                    break
                oldest = f"{key} IN (SELECT {key} FROM {table} WHERE {where} ORDER BY created_at LIMIT ?)"
                removed += self._delete(tx, table, key, oldest, [*args, max(1, n // 10)])
            self._reclaim()
        self._reclaim()
        return removed

    @staticmethod
    def _delete(tx: Tx, table: str, key: str, where: str, args: list[Any]) -> int:
        if table == "decisions":  # calls and feedback of the decisions that go, first
            ids = [r[0] for r in tx.fetchall(f"SELECT id FROM decisions WHERE {where}", args)]
            for start in range(0, len(ids), 500):
                chunk = ids[start:start + 500]
                marks = ",".join("?" * len(chunk))
                tx.execute(f"DELETE FROM served_calls WHERE trace_id IN ({marks})", chunk)
                tx.execute(f"DELETE FROM feedback WHERE id IN ({marks})", chunk)
                tx.execute(f"DELETE FROM decisions WHERE id IN ({marks})", chunk)
            return len(ids)
        return tx.execute(f"DELETE FROM {table} WHERE {where}", args)


def _stale(row: Sequence[Any], now: float, lease_s: float) -> bool:
    """Whether an intent (owner, host, pid, heartbeat_at, started_at) is held by nobody."""
    _, host, pid, heartbeat, started = row
    if host in (None, _HOST) and not pid_alive(int(pid)):
        return True  # its process on this machine (or a v1 store's, always local) is gone
    return bool((heartbeat if heartbeat is not None else started) < now - lease_s)


def _match_ids(ids: Iterable[str] | None, where: list[str], args: list[Any]) -> bool:
    """Narrow a query to ``ids`` (an ``id IN`` clause); False when the list is empty: nothing can match."""
    if ids is None:
        return True
    ids = list(ids)
    where.append(f"id IN ({','.join('?' * len(ids))})")
    args.extend(ids)
    return bool(ids)
