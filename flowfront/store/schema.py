"""The store's schema, per version, and the migrations between versions (both engines).

The version lives in ``meta.schema_version``. Opening a store creates the current schema when
the store is empty, migrates an older one forward in place (one transaction per step, under a
lock so two processes opening it together migrate once), and refuses a newer one. DDL is
written once with ``{blob}``/``{real}``/``{seq}`` holes that each engine fills.

Versions:

1. traces, queries, intents, imports (served calls were ``traces`` rows with source ``serve``).
2. served calls get a table of their own (``served_calls``, keyed by response id and call
   number), beside the decision log (``decisions``) and feedback (``feedback``); intents
   record their owner's host and a heartbeat, so processes on other machines can tell a live
   claim from a dead one. The migration moves v1's served rows into ``served_calls``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

__all__ = ["CURRENT", "Dialect", "MIGRATIONS", "ddl"]

CURRENT = 2


@dataclass(frozen=True)
class Dialect:
    """What differs between the engines' SQL (everything else is written once)."""

    name: str
    blob: str
    real: str
    seq: str  # a column giving insertion order to ``queries`` ("" where the engine has rowid)
    order: str  # the expression that orders ``queries`` rows by insertion
    param: str  # the driver's placeholder

    def sql(self, statement: str) -> str:
        """A statement written with ``?`` placeholders, in this engine's style."""
        return statement if self.param == "?" else statement.replace("?", self.param)


SQLITE = Dialect("sqlite", blob="BLOB", real="REAL", seq="", order="rowid", param="?")
POSTGRES = Dialect(
    "postgresql", blob="BYTEA", real="DOUBLE PRECISION", seq="seq BIGSERIAL,", order="seq", param="%s"
)

_V1 = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS traces (
    key TEXT PRIMARY KEY, prompt_key TEXT NOT NULL, model TEXT NOT NULL, budget INTEGER,
    request {blob} NOT NULL, response TEXT, prompt_tokens INTEGER, completion_tokens INTEGER,
    latency_s {real}, cost_usd {real}, score {real}, error TEXT, source TEXT NOT NULL, query_id TEXT,
    created_at {real} NOT NULL
);
CREATE INDEX IF NOT EXISTS traces_prompt ON traces (prompt_key);
CREATE INDEX IF NOT EXISTS traces_source ON traces (source, model);
CREATE TABLE IF NOT EXISTS queries (
    {seq} source TEXT NOT NULL, query_id TEXT NOT NULL, query TEXT NOT NULL, task TEXT, split TEXT,
    reference TEXT, PRIMARY KEY (source, query_id)
);
CREATE TABLE IF NOT EXISTS imports (
    source TEXT PRIMARY KEY, data_hash TEXT NOT NULL, summary TEXT NOT NULL, created_at {real} NOT NULL
);
CREATE TABLE IF NOT EXISTS intents (
    prompt_key TEXT PRIMARY KEY, model TEXT NOT NULL, budget INTEGER, started_at {real} NOT NULL,
    pid INTEGER NOT NULL{owner}
);
"""
_OWNER = ", host TEXT, owner TEXT, heartbeat_at {real}"

_V2_TABLES = """
CREATE TABLE IF NOT EXISTS served_calls (
    trace_id TEXT NOT NULL, seq INTEGER NOT NULL, candidate TEXT NOT NULL, node TEXT, model TEXT NOT NULL,
    budget INTEGER, prompt_key TEXT NOT NULL, request {blob} NOT NULL, response TEXT, prompt_tokens INTEGER,
    completion_tokens INTEGER, latency_s {real}, latency_source TEXT, cost_usd {real}, score {real},
    error TEXT,
    wall_s {real} NOT NULL, created_at {real} NOT NULL, PRIMARY KEY (trace_id, seq)
);
CREATE INDEX IF NOT EXISTS served_calls_time ON served_calls (created_at);
CREATE TABLE IF NOT EXISTS decisions (
    id TEXT PRIMARY KEY, created_at {real} NOT NULL, workflow TEXT NOT NULL, endpoint TEXT NOT NULL,
    query TEXT NOT NULL, task TEXT, preference TEXT NOT NULL, strategy TEXT NOT NULL,
    generation TEXT NOT NULL,
    frontier_hash TEXT NOT NULL, execution TEXT NOT NULL, candidate TEXT, candidate_index INTEGER,
    first_candidate TEXT, estimates TEXT, propensity {real} NOT NULL, explored INTEGER NOT NULL,
    ood INTEGER NOT NULL, hinted INTEGER NOT NULL, feasible INTEGER NOT NULL, latency_s {real},
    latency_wall_s {real}, cost_usd {real}, status INTEGER NOT NULL, error TEXT, fallbacks TEXT NOT NULL,
    checkpoints TEXT NOT NULL, answer TEXT, replica TEXT NOT NULL, route_group TEXT
);
CREATE INDEX IF NOT EXISTS decisions_time ON decisions (created_at);
CREATE INDEX IF NOT EXISTS decisions_workflow ON decisions (workflow, created_at);
CREATE TABLE IF NOT EXISTS feedback (
    id TEXT NOT NULL, name TEXT NOT NULL, value {real}, label TEXT, comment TEXT, source TEXT NOT NULL,
    created_at {real} NOT NULL, updated_at {real} NOT NULL, PRIMARY KEY (id, name)
);
CREATE INDEX IF NOT EXISTS feedback_time ON feedback (updated_at);
"""


def ddl(version: int, dialect: Dialect) -> list[str]:
    """The statements that create schema ``version`` from nothing."""
    owner = "" if version == 1 else _OWNER.format(real=dialect.real)
    text = (_V1 if version == 1 else _V1 + _V2_TABLES).format(blob=dialect.blob, real=dialect.real,
                                                                 seq=dialect.seq, owner=owner)
    return [s.strip() for s in text.split(";") if s.strip()]


# -- migrations: each takes (execute, fetchall, dialect) inside one transaction -------------------
Execute = Callable[[str, tuple[Any, ...]], object]
FetchAll = Callable[[str, tuple[Any, ...]], list[tuple[Any, ...]]]


def _v1_to_v2(execute: Execute, fetchall: FetchAll, dialect: Dialect) -> None:
    for column, kind in (("host", "TEXT"), ("owner", "TEXT"), ("heartbeat_at", dialect.real)):
        execute(f"ALTER TABLE intents ADD COLUMN {column} {kind}", ())
    for statement in [s.strip() for s in _V2_TABLES.format(blob=dialect.blob, real=dialect.real).split(";")]:
        if statement:
            execute(statement, ())
    rows = fetchall(
        dialect.sql(
            "SELECT prompt_key, model, budget, request, response, prompt_tokens, completion_tokens, "
            "latency_s, cost_usd, score, error, query_id, created_at FROM traces WHERE source=?"
        ),
        ("serve",),
    )
    insert = dialect.sql(
        "INSERT INTO served_calls (trace_id, seq, candidate, node, model, budget, prompt_key, request, "
        "response, prompt_tokens, completion_tokens, latency_s, latency_source, cost_usd, score, error, "
        "wall_s, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT (trace_id, seq) DO "
        "NOTHING"
    )
    for (
        pkey,
        model,
        budget,
        request,
        response,
        ptok,
        ctok,
        lat,
        cost,
        score,
        error,
        query_id,
        created,
    ) in rows:
        req = orjson.loads(bytes(request))
        trace_id = str(req.get("trace_id") or query_id or "")
        execute(
            insert,
            (
                trace_id,
                int(req.get("call", 0)),
                str(req.get("candidate", "")),
                req.get("node"),
                model,
                budget,
                pkey,
                bytes(request),
                response,
                ptok,
                ctok,
                lat,
                None,
                cost,
                score,
                error,
                float(req.get("wall_s") or 0.0),
                created,
            ),
        )
    execute(dialect.sql("DELETE FROM traces WHERE source=?"), ("serve",))


MIGRATIONS: dict[int, Callable[[Execute, FetchAll, Dialect], None]] = {1: _v1_to_v2}
