"""Serving one request: decide (router or static), execute, fall back, log the decision.

Decision: the router's per-query estimates (through the micro-batcher) or the frontier's static
estimates, then the same selection rules the compiler and the router use; candidates calling a
model whose breaker is open go in as not allowed. Execution: the chosen configuration on the
executor; when a call fails, the next candidate under the same preference that avoids every
model that failed so far runs instead, up to ``max_fallbacks`` times. The whole request has one
deadline. Every request that reached a workflow, answered or not, leaves one decision row
(``flowfront.store.Decision``) written with its calls; in durable mode the response waits for it.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from flowfront.backends.base import DeltaSink
from flowfront.backends.guard import CallLog, current_log
from flowfront.errors import BackendError, FlowfrontError, InfeasibleError, ReplayMissError
from flowfront.executor import Query, RunResult
from flowfront.router.select import Preference, select
from flowfront.service.checkpoints import ServedCheckpoints
from flowfront.service.errors import DeadlineExceeded, InvalidRequest, NotReady, status_for
from flowfront.service.state import Shared, WorkflowEntry
from flowfront.store import Decision

__all__ = ["Outcome", "StreamSink", "decision_row", "run_request"]

_REJECTED_QUERY_CHARS = 512


@dataclass
class _Decision:
    strategy: str
    estimates: tuple[np.ndarray, np.ndarray, np.ndarray]  # (K,) accuracy, latency, cost for this query
    ood: bool
    hint: dict | None = None
    hinted: bool = False
    group: str | None = None


@dataclass
class Outcome:
    """One request as it goes: filled in while it is served; responses and the decision row are
    built from it."""

    trace_id: str
    entry: WorkflowEntry
    query: str
    preference: Preference
    task: str | None
    endpoint: str
    started_at: float = field(default_factory=time.time)
    decision: _Decision | None = None
    index: int | None = None
    first_index: int | None = None
    propensity: float = 1.0
    explored: bool = False
    feasible: bool = True
    result: RunResult | None = None
    log: CallLog = field(default_factory=CallLog)
    attempts: list[dict] = field(default_factory=list)
    checkpoints: list[dict] = field(default_factory=list)  # re-decisions (service/checkpoints.py)
    decision_s: float = 0.0
    execution_s: float = 0.0

    @property
    def strategy(self) -> str:
        return self.decision.strategy if self.decision is not None else "none"

    @property
    def ood(self) -> bool:
        return self.decision.ood if self.decision is not None else False

    @property
    def hint(self) -> dict | None:
        return self.decision.hint if self.decision is not None else None

    @property
    def fell_back(self) -> bool:
        return bool(self.attempts)

    @property
    def predicted(self) -> tuple[float, float, float]:
        assert self.decision is not None and self.index is not None
        acc, lat, cost = self.decision.estimates
        return float(acc[self.index]), float(lat[self.index]), float(cost[self.index])

    @property
    def candidate(self) -> str:
        assert self.index is not None
        return self.entry.ids[self.index]


class StreamSink(Protocol):
    """Receives a streamed answer: ``opened`` when the call producing it starts (with the
    candidate and model answering), returning what takes its text piece by piece; ``started``
    once any text went out (from then on no fallback may replace it)."""

    started: bool

    def opened(self, trace_id: str, candidate: str, model: str) -> DeltaSink: ...


@dataclass
class _Tagged:
    """The executor's token sink for one attempt: names the candidate the call belongs to."""

    out: Outcome
    sink: StreamSink

    def opened(self, node: str, model: str) -> DeltaSink:
        return self.sink.opened(self.out.trace_id, self.out.log.candidate, model)


async def run_request(shared: Shared, entry: WorkflowEntry, query: str, preference: Preference,
                      strategy: str | None, task: str | None = None, *, endpoint: str = "run",
                      stream: StreamSink | None = None) -> Outcome:
    """Serve one query; raises a FlowfrontError the handlers map to HTTP. With ``stream``, the
    answer's call streams into it when the workflow allows (``executor.streamed_call``)."""
    limit = shared.settings.max_query_chars
    if len(query) > limit:
        raise InvalidRequest(f"`query` has {len(query):,} characters, more than the limit of {limit:,}",
                             field="query", hint="shorten the query or raise FLOWFRONT_MAX_QUERY_CHARS")
    if entry.frontier is None:
        raise NotReady(f"workflow {entry.name!r} cannot serve yet: {entry.status}",
                       hint="compile it, then POST /admin/reload")
    out = Outcome(shared.trace_id(), entry, query, preference, task, endpoint)
    token = current_log.set(out.log)
    error: FlowfrontError | None = None
    try:
        async with asyncio.timeout(shared.settings.request_deadline_s):
            await _serve(shared, out, strategy, stream)
        return out
    except TimeoutError:
        error = DeadlineExceeded(shared.settings.request_deadline_s)
        raise error from None
    except FlowfrontError as exc:
        error = exc
        raise
    finally:
        current_log.reset(token)
        _count_usage(shared, out)
        row = decision_row(shared, out, error)
        if shared.telemetry is not None:
            shared.telemetry.request(row, out.log.events, time.time())
        await shared.writer.record(row, out.log.events)


async def _serve(shared: Shared, out: Outcome, strategy: str | None, stream: StreamSink | None) -> None:
    entry = out.entry
    shared.writer.refuse_if_down()
    started = time.perf_counter()
    out.decision = await _decide(entry, out.query, strategy, out.task)
    avoid = shared.breakers.unavailable(entry.all_models)
    try:
        out.index, out.feasible, out.attempts = _choose(entry, out.decision, out.preference, avoid)
    except BackendError as exc:  # every candidate's model is behind an open breaker
        exc.retry_after_s = shared.breakers.seconds_until_probe(avoid)  # a declared field: when to retry
        raise
    if shared.settings.explore > 0 and out.decision.strategy == "router" and not out.attempts:
        out.index, out.propensity, out.explored = explore(
            entry,
            out.decision.estimates,
            out.preference,
            out.index,
            out.feasible,
            avoid,
            out.trace_id,
            shared.settings.explore,
        )
    out.first_index = out.index
    decided = time.perf_counter()
    out.decision_s = decided - started
    shared.metrics.decision_seconds.labels(workflow=entry.name, strategy=out.decision.strategy).observe(
        out.decision_s
    )
    await _execute(shared, out, avoid, stream)
    out.execution_s = time.perf_counter() - decided
    if out.attempts:
        shared.metrics.fallbacks.labels(workflow=entry.name).inc()
    shared.metrics.execution_seconds.labels(workflow=entry.name).observe(out.execution_s)
    shared.metrics.chosen.labels(workflow=entry.name, candidate=out.candidate).inc()


async def _execute(shared: Shared, out: Outcome, avoid: set[str], stream: StreamSink | None) -> None:
    """Run the chosen candidate; on a failed call, the next one avoiding every failed model so far."""
    entry, decision = out.entry, out.decision
    assert entry.executor is not None and decision is not None and out.index is not None
    failed: set[str] = set()
    # Fallbacks prefer an answer to a refusal: hard limits relax to the nearest candidate.
    relaxed = out.preference.model_copy(update={"on_infeasible": "nearest"})
    query = Query(out.trace_id, out.query)
    while True:  # one pass per candidate tried: at most 1 + max_fallbacks
        out.log.candidate = entry.ids[out.index]
        redecide = (ServedCheckpoints(out, avoid | failed, shared.metrics)
                    if entry.progressive is not None and decision.strategy == "router" and not out.explored
                    else None)
        result = await entry.executor.run(entry.resolved[out.index], query, checkpoint=redecide,
                                          stream=_Tagged(out, stream) if stream is not None else None)
        if result.error is None:
            out.result = result
            return
        error = out.log.last_error(entry.ids[out.index]) or BackendError(
            result.error, model=result.failed_model
        )
        out.attempts.append({"candidate": entry.ids[out.index], "error": shared.redactor.scrub(str(error)),
                             "model": result.failed_model})
        failed.add(result.failed_model or "")
        if (
            result.failed_model is None
            or len(failed) > shared.settings.max_fallbacks
            or (stream and stream.started)
        ):
            raise _for_caller(error)  # (text already streamed: no other candidate may replace it)
        try:
            out.index, out.feasible, _ = _choose(entry, decision, relaxed, avoid | failed)
        except BackendError:
            raise _for_caller(error) from None
        out.propensity, out.explored = 1.0, False  # a fallback is chosen by rule, not by chance


def _for_caller(error: BackendError) -> Exception:
    """A replay miss is the caller's to fix (send a recorded query), said in the API's words."""
    if isinstance(error, ReplayMissError):
        return InvalidRequest(
            f"no recorded answer for this query ({error.message})",
            field="query",
            hint="the replay backend answers only queries in the recorded data; send one of "
            "its queries, or serve with a live backend (FLOWFRONT_BACKEND=litellm)",
        )
    return error


async def _decide(entry: WorkflowEntry, query: str, strategy: str | None, task: str | None) -> _Decision:
    chosen = strategy or ("router" if entry.router is not None else "static")
    if chosen == "static":
        hint = (
            None
            if task is None
            else {"task": task, "used": False, "reason": "static selection takes no hints"}
        )
        assert entry.static is not None
        return _Decision("static", entry.static, False, hint)
    if entry.router is None or entry.front is None:
        raise NotReady(f"workflow {entry.name!r} has no usable router: {entry.router_problem}",
                       hint="send strategy=static, or train a router and POST /admin/reload")
    row = await entry.front.estimate(query, task)  # a row far from every training query carries the fallback
    return _Decision("router", (row.accuracy, row.latency_s, row.cost_usd), row.ood,
                     None if task is None else _hint_report(entry, task, row.hinted), row.hinted, row.group)


def _hint_report(entry: WorkflowEntry, task: str, used: bool) -> dict:
    if used:
        return {"task": task, "used": True, "reason": None}
    assert entry.front is not None
    known = sorted(entry.front.hint_groups)
    reason = (
        "the router was trained without task labels; the task was predicted from the text"
        if not known
        else f"not a task the router was trained on ({', '.join(known)}); the task was predicted from the "
             "text"
    )
    return {"task": task, "used": False, "reason": reason}


def _choose(entry: WorkflowEntry, decision: _Decision, preference: Preference,
            avoid: set[str]) -> tuple[int, bool, list[dict]]:
    """The best candidate under ``preference`` among those calling none of ``avoid``.

    Returns the index, whether it meets the limits, and the skipped better choice (if the
    unrestricted best was avoided) as an attempt record.
    """
    acc, lat, cost = decision.estimates
    assert entry.scale is not None
    best = _select(entry, acc, lat, cost, preference, None)
    if not avoid:
        return (*best, [])
    allowed = np.array([not (ms & avoid) for ms in entry.models])
    if not allowed.any():
        raise BackendError(
            f"every candidate of {entry.name!r} calls a model that is failing ({', '.join(sorted(avoid))})",
            retryable=True,
            hint="retry after the circuit breakers' reset time",
        )
    if allowed[best[0]]:
        return (*best, [])
    index, feasible = _select(
        entry, acc, lat, cost, preference.model_copy(update={"on_infeasible": "nearest"}), allowed
    )
    blocked = sorted(entry.models[best[0]] & avoid)
    skipped = {
        "candidate": entry.ids[best[0]],
        "error": f"skipped: circuit breaker open for {', '.join(blocked)}",
        "model": blocked[0],
    }
    return index, feasible, [skipped]


def _select(entry: WorkflowEntry, acc: np.ndarray, lat: np.ndarray, cost: np.ndarray, preference: Preference,
            allowed: np.ndarray | None) -> tuple[int, bool]:
    assert entry.scale is not None
    try:
        picked = select(acc, lat, cost, preference, entry.scale, allowed=allowed)
    except InfeasibleError as exc:
        if exc.nearest is not None:  # name the candidate, not just its column
            exc.nearest["candidate"] = entry.ids[int(exc.nearest["index"])]
        raise
    return int(picked.index), bool(picked.feasible)


def explore(
    entry: WorkflowEntry,
    estimates: tuple[np.ndarray, np.ndarray, np.ndarray],
    preference: Preference,
    greedy: int,
    feasible: bool,
    avoid: set[str],
    trace_id: str,
    epsilon: float,
) -> tuple[int, float, bool]:
    """Epsilon-greedy exploration that never breaks a hard limit: with probability ``epsilon`` the
    candidate is drawn uniformly from the *eligible* ones (calling no avoided model and, by the
    router's estimates, within every hard limit the caller set), else the greedy choice stands.
    Returns (candidate, the probability it had of being chosen, whether the draw explored). The
    draw is a hash of the response id, so a logged decision can be re-derived. A request whose
    greedy choice already broke a limit (``on_infeasible="nearest"``) is not explored."""
    if not feasible:
        return greedy, 1.0, False
    acc, lat, cost = estimates
    ok = np.array([not (ms & avoid) for ms in entry.models])
    for limit, values, below in ((preference.max_latency_s, lat, True), (preference.max_cost_usd, cost, True),
                                 (preference.min_accuracy, acc, False)):
        if limit is not None:
            ok &= (values <= limit) if below else (values >= limit)
    eligible = np.flatnonzero(ok)
    if len(eligible) < 2:
        return greedy, 1.0, False
    digest = hashlib.blake2b(trace_id.encode(), digest_size=16).digest()
    u, v = (int.from_bytes(digest[:8], "big") / 2**64), (int.from_bytes(digest[8:], "big") / 2**64)
    chosen = int(eligible[int(v * len(eligible))]) if u < epsilon else greedy
    propensity = (1 - epsilon) * (chosen == greedy) + epsilon / len(eligible)
    return chosen, float(propensity), bool(u < epsilon)


def _count_usage(shared: Shared, out: Outcome) -> None:
    for e in out.log.events:
        if e.completion is not None:
            model = e.request.model
            shared.metrics.tokens.labels(workflow=out.entry.name, model=model, kind="prompt").inc(
                e.completion.prompt_tokens
            )
            shared.metrics.tokens.labels(workflow=out.entry.name, model=model,
                                         kind="completion").inc(e.completion.completion_tokens)
            shared.metrics.cost_usd.labels(workflow=out.entry.name, model=model).inc(e.completion.cost_usd)


def decision_row(shared: Shared, out: Outcome, error: FlowfrontError | None) -> Decision:
    """The decision log's row for one request, answered (``error`` None) or not."""
    entry, result, d = out.entry, out.result, out.decision
    assert entry.frontier is not None
    execution = entry.frontier.execution
    answer: Any = None
    if result is not None:
        answer = result.answer if result.answer is not None else (result.value.text if result.value else None)
    estimates = None if d is None else {name: [round(float(v), 6) for v in arr] for name, arr in
                                        zip(("accuracy", "latency_s", "cost_usd"), d.estimates, strict=True)}
    generation = (
        entry.router_generation
        if d is not None and d.strategy == "router"
        else f"static:{entry.frontier_hash}"
    )
    status = 200 if error is None else status_for(error)
    query = out.query
    if (
        400 <= status < 500 and len(query) > _REJECTED_QUERY_CHARS
    ):  # a rejected query is kept only to debug it
        query = query[:_REJECTED_QUERY_CHARS] + f"... [{len(query):,} characters]"
    return Decision(
        id=out.trace_id,
        created_at=out.started_at,
        workflow=entry.name,
        endpoint=out.endpoint,
        query=query,
        task=out.task,
        preference=out.preference.model_dump(mode="json", by_alias=True, exclude_none=True),
        strategy=out.strategy,
        generation=generation,
        frontier_hash=entry.frontier_hash,
        execution=execution,
        candidate=entry.ids[out.index] if out.index is not None and result is not None else None,
        candidate_index=out.index if result is not None else None,
        first_candidate=entry.ids[out.first_index] if out.first_index is not None else None,
        estimates=estimates,
        propensity=out.propensity,
        explored=out.explored,
        ood=out.ood,
        hinted=bool(d is not None and d.hinted),
        feasible=out.feasible,
        latency_s=None if result is None else result.latency(execution),
        latency_wall_s=None if result is None else result.latency_wall_s,
        cost_usd=out.log.cost_usd(),
        status=status,
        error=None if error is None else str(error),
        fallbacks=out.attempts,
        checkpoints=out.checkpoints,
        answer=None if answer is None else str(answer),
        replica=shared.replica,
        route_group=d.group if d is not None else None,
    )

