"""The PostgreSQL engine: one database shared by replicas and by processes on several machines.

psycopg 3 with its connection pool (the optional dependency group ``postgres``), imported when a
``postgresql://`` store is opened. Every method of the contract is one transaction on a pooled
connection; a lost connection becomes :class:`~flowfront.store.base.StoreUnavailable` and the
pool reconnects by itself when the database is back. Schema creation and migrations take a
transaction-scoped advisory lock, so replicas starting together set the schema up once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from flowfront.errors import StoreError
from flowfront.redact import Redactor
from flowfront.store.base import StoreUnavailable, TraceStore, Tx
from flowfront.store.schema import POSTGRES
from flowfront.store.url import StoreURL

__all__ = ["PostgresStore"]

_SCHEMA_LOCK = "SELECT pg_advisory_xact_lock(74200117)"
_TABLES = ("traces", "queries", "intents", "imports", "served_calls", "decisions", "feedback", "meta")


class _PGTx:
    def __init__(self, cursor: Any, sql: dict[str, str]) -> None:
        self.cur = cursor
        self._sql = sql

    def _convert(self, statement: str) -> str:
        found = self._sql.get(statement)
        if found is None:
            found = self._sql[statement] = POSTGRES.sql(statement)
        return found

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        self.cur.execute(self._convert(sql), params or None)
        return int(self.cur.rowcount or 0)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self.cur.executemany(self._convert(sql), rows)

    def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        self.cur.execute(self._convert(sql), params or None)
        return list(self.cur.fetchall())

    def fetchone(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        self.cur.execute(self._convert(sql), params or None)
        row: tuple[Any, ...] | None = self.cur.fetchone()
        return row


class PostgresStore(TraceStore):
    """A trace store in a PostgreSQL database (``postgresql://user:password@host:port/dbname``)."""

    engine = "postgresql"
    dialect = POSTGRES

    def __init__(self, url: StoreURL, *, redactor: Redactor | None = None, pool_size: int = 8,
                 connect_timeout_s: float = 2.0) -> None:
        super().__init__(url, redactor=redactor)
        try:
            import psycopg
            from psycopg_pool import ConnectionPool
        except ImportError:
            raise StoreError("a postgresql:// store needs psycopg",
                             hint="pip install 'flowfront[postgres]' (psycopg with its pool)") from None
        self._psycopg = psycopg
        pool_log = logging.getLogger("psycopg.pool")
        if (
            pool_log.level == logging.NOTSET
        ):  # its reconnect warnings are multi-line; the service says it in one
            pool_log.setLevel(logging.ERROR)
        self.timeout_s = connect_timeout_s
        self._sql: dict[str, str] = {}
        try:  # one direct attempt first: it says why (refused, auth), where the pool only times out
            psycopg.connect(url.raw, connect_timeout=max(1, int(connect_timeout_s))).close()
        except psycopg.Error as exc:
            raise self._unavailable(exc) from None
        self._pool = ConnectionPool(
            url.raw,
            min_size=1,
            max_size=pool_size,
            open=False,
            name="flowfront-store",
            kwargs={"connect_timeout": max(1, int(connect_timeout_s))},
            check=ConnectionPool.check_connection,
            reconnect_timeout=0,
        )
        self._pool.open(wait=False)
        try:
            self._ensure_schema(lock=_SCHEMA_LOCK)
        except BaseException:
            self._pool.close()
            raise

    def _unavailable(self, exc: BaseException) -> StoreError:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        return StoreUnavailable(
            f"PostgreSQL store {self.url.shown} is unreachable: {self.redactor.scrub(first)}",
            hint="start the database or fix the store URL; the service reconnects by itself",
        )

    @contextmanager
    def _transaction(self, *, write: bool = True) -> Iterator[Tx]:
        psycopg = self._psycopg
        from psycopg_pool import PoolTimeout

        try:
            with (
                self._pool.connection(timeout=self.timeout_s) as conn,
                conn.transaction(),
                conn.cursor() as cur,
            ):
                yield _PGTx(cur, self._sql)
        except (psycopg.OperationalError, PoolTimeout) as exc:
            raise self._unavailable(exc) from None
        except psycopg.Error as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            raise StoreError(
                f"PostgreSQL store {self.url.shown} refused a statement: {self.redactor.scrub(first)}",
                hint="check the database's log; the store's schema may have been changed by hand",
            ) from None

    def _for_update(self) -> str:
        return " FOR UPDATE"

    def close(self) -> None:
        self._pool.close()

    def size_bytes(self) -> int:
        """Bytes the store's tables and indexes occupy in the database."""
        marks = ",".join("?" * len(_TABLES))
        with self._transaction(write=False) as tx:
            row = tx.fetchone(
                "SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = current_schema() "
                f"AND c.relkind = 'r' AND c.relname IN ({marks})",
                _TABLES,
            )
        return int(row[0]) if row else 0

    def _live_bytes(self, table: str) -> int:
        # A table's size on disk keeps its dead rows until VACUUM reuses them: the prune counts the
        # bytes of the rows still there (a scan; retention runs in the background, seldom).
        related = {"decisions": ("decisions", "served_calls", "feedback")}.get(table, (table,))
        total = 0
        with self._transaction(write=False) as tx:
            for name in related:
                row = tx.fetchone(f"SELECT COALESCE(SUM(pg_column_size(t.*)), 0) FROM {name} t")
                total += int(row[0]) if row else 0
        return total

    def _reclaim(self) -> None:
        """Plain VACUUM: the space of deleted rows is reused by new ones (no table lock)."""
        try:
            with self._pool.connection(timeout=self.timeout_s) as conn:
                conn.autocommit = True
                try:
                    for table in ("traces", "served_calls", "decisions", "feedback"):
                        conn.execute(f"VACUUM {table}")
                finally:
                    conn.autocommit = False
        except self._psycopg.Error as exc:
            raise self._unavailable(exc) from None
