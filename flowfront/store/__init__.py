"""The trace store: one contract (:class:`TraceStore`), two engines, chosen by URL.

``connect("sqlite:///runs/traces.sqlite")`` (or a bare path) opens a SQLite file, the embedded
default; ``connect("postgresql://flowfront@127.0.0.1:5432/flowfront")`` a PostgreSQL database
that replicas and processes on other machines share. Both hold the same tables: recorded calls
(the profiling cache and the replay source), datasets, imports, live calls in flight, and for
served traffic the calls, the decision log and feedback (``flowfront.store.records``).
"""

from __future__ import annotations

from pathlib import Path

from flowfront.redact import Redactor
from flowfront.store.base import INTENT_LEASE_S, StoreUnavailable, TraceStore
from flowfront.store.records import Decision, Feedback, ServedCall, Trace, call_key, prompt_key
from flowfront.store.schema import CURRENT as SCHEMA_VERSION
from flowfront.store.url import StoreURL, parse_store_url

__all__ = [
    "INTENT_LEASE_S",
    "SCHEMA_VERSION",
    "Decision",
    "Feedback",
    "ServedCall",
    "StoreURL",
    "StoreUnavailable",
    "Trace",
    "TraceStore",
    "call_key",
    "connect",
    "parse_store_url",
    "prompt_key",
]


def connect(url: str | Path | StoreURL, *, redactor: Redactor | None = None) -> TraceStore:
    """Open the store ``url`` names, creating or migrating its schema."""
    parsed = url if isinstance(url, StoreURL) else parse_store_url(url)
    if parsed.engine == "postgresql":
        from flowfront.store.postgres import PostgresStore

        return PostgresStore(parsed, redactor=redactor)
    from flowfront.store.sqlite import SQLiteStore

    return SQLiteStore(parsed, redactor=redactor)
