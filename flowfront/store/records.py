"""What a trace store holds: recorded calls, served calls, decisions and feedback.

Frozen dataclasses with a ``row()`` in column order; JSON-valued fields are encoded once here
(orjson, sorted keys) so both engines store the same bytes.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

__all__ = ["Decision", "Feedback", "ServedCall", "Trace", "call_key", "canonical", "prompt_key"]


def canonical(obj: Any) -> bytes:
    return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)


def prompt_key(model: str, messages: Sequence[dict[str, Any]], sampling: dict[str, Any]) -> str:
    """Hash of a call without its budget: every budget of one prompt shares the recorded response."""
    return hashlib.blake2b(canonical([model, list(messages), sampling]), digest_size=16).hexdigest()


def call_key(
    model: str, budget: int | None, messages: Sequence[dict[str, Any]], sampling: dict[str, Any]
) -> str:
    return hashlib.blake2b(canonical([model, budget, list(messages), sampling]), digest_size=16).hexdigest()


@dataclass(frozen=True, slots=True)
class Trace:
    """One recorded call: the profiling cache and the replay source."""

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

    COLUMNS = (
        "key",
        "prompt_key",
        "model",
        "budget",
        "request",
        "response",
        "prompt_tokens",
        "completion_tokens",
        "latency_s",
        "cost_usd",
        "score",
        "error",
        "source",
        "query_id",
        "created_at",
    )

    def row(self) -> tuple[Any, ...]:
        return (
            self.key, self.prompt_key, self.model, self.budget, canonical(self.request), self.response,
            self.prompt_tokens, self.completion_tokens, self.latency_s, self.cost_usd, self.score,
            self.error, self.source, self.query_id, self.created_at or time.time(),
        )

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> Trace:
        values = list(row)
        values[4] = orjson.loads(bytes(values[4]))
        return cls(*values)


@dataclass(frozen=True, slots=True)
class ServedCall:
    """One model call made while serving a request (a log row, never a replay source)."""

    trace_id: str
    seq: int
    candidate: str
    node: str | None
    model: str
    budget: int | None
    prompt_key: str
    request: dict[str, Any]
    response: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    latency_s: float | None
    latency_source: str | None
    cost_usd: float | None
    score: float | None
    error: str | None
    wall_s: float
    created_at: float

    COLUMNS = (
        "trace_id",
        "seq",
        "candidate",
        "node",
        "model",
        "budget",
        "prompt_key",
        "request",
        "response",
        "prompt_tokens",
        "completion_tokens",
        "latency_s",
        "latency_source",
        "cost_usd",
        "score",
        "error",
        "wall_s",
        "created_at",
    )

    def row(self) -> tuple[Any, ...]:
        values = [getattr(self, c) for c in self.COLUMNS]
        values[7] = canonical(self.request)
        return tuple(values)

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> ServedCall:
        values = list(row)
        values[7] = orjson.loads(bytes(values[7]))
        return cls(*values)


@dataclass(frozen=True, slots=True)
class Decision:
    """One served request: what was asked, what the router knew and chose, and what it cost.

    ``estimates`` holds the router's (or static selection's) per-candidate estimates in frontier
    order, ``{"accuracy": [...], "latency_s": [...], "cost_usd": [...]}``, so a later estimator
    has the direct model for every candidate, not only the served one. ``propensity`` is the
    probability with which ``candidate`` was chosen (1.0 unless the service explored).
    ``generation`` is the checksum of the router artifact that decided (the frontier's for
    static selection). ``checkpoints`` lists re-decisions made while the workflow ran.
    """

    id: str
    created_at: float
    workflow: str
    endpoint: str
    query: str
    task: str | None
    preference: dict[str, Any]
    strategy: str
    generation: str
    frontier_hash: str
    execution: str
    candidate: str | None
    candidate_index: int | None
    first_candidate: str | None
    estimates: dict[str, list[float]] | None
    propensity: float
    explored: bool
    ood: bool
    hinted: bool
    feasible: bool
    latency_s: float | None
    latency_wall_s: float | None
    cost_usd: float | None
    status: int
    error: str | None
    fallbacks: list[dict[str, Any]] = field(default_factory=list)
    checkpoints: list[dict[str, Any]] = field(default_factory=list)
    answer: str | None = None
    replica: str = ""
    route_group: str | None = None  # the task (given) or group (predicted) the router routed the query as

    COLUMNS = (
        "id",
        "created_at",
        "workflow",
        "endpoint",
        "query",
        "task",
        "preference",
        "strategy",
        "generation",
        "frontier_hash",
        "execution",
        "candidate",
        "candidate_index",
        "first_candidate",
        "estimates",
        "propensity",
        "explored",
        "ood",
        "hinted",
        "feasible",
        "latency_s",
        "latency_wall_s",
        "cost_usd",
        "status",
        "error",
        "fallbacks",
        "checkpoints",
        "answer",
        "replica",
        "route_group",
    )
    _JSON = ("preference", "estimates", "fallbacks", "checkpoints")
    _BOOL = ("explored", "ood", "hinted", "feasible")

    def row(self) -> tuple[Any, ...]:
        out = []
        for name in self.COLUMNS:
            value = getattr(self, name)
            if name in self._JSON:
                value = None if value is None else canonical(value).decode()
            elif name in self._BOOL:
                value = int(bool(value))
            out.append(value)
        return tuple(out)

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> Decision:
        values = dict(zip(cls.COLUMNS, row, strict=True))
        for name in cls._JSON:
            values[name] = None if values[name] is None else orjson.loads(values[name])
        for name in cls._BOOL:
            values[name] = bool(values[name])
        return cls(**values)

    def as_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.COLUMNS}


@dataclass(frozen=True, slots=True)
class Feedback:
    """A grade for a served response: the shape of a Langfuse score / an OpenTelemetry GenAI
    evaluation result. One per (response id, name); a new one replaces the old."""

    id: str
    name: str
    value: float | None = None
    label: str | None = None
    comment: str | None = None
    source: str = "api"
    created_at: float = 0.0
    updated_at: float = 0.0

    COLUMNS = ("id", "name", "value", "label", "comment", "source", "created_at", "updated_at")

    def row(self) -> tuple[Any, ...]:
        now = time.time()
        return (self.id, self.name, self.value, self.label, self.comment, self.source,
                self.created_at or now, self.updated_at or now)

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> Feedback:
        return cls(*row)

    def as_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.COLUMNS}
