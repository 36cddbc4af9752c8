"""Serving one request: decide (router or static), execute, fall back, record.

Decision: the router's per-query estimates (through the micro-batcher) or the frontier's static
estimates, then the same selection rules the compiler and the router use. Candidates calling a
model whose breaker is open are not chosen. Execution: the chosen configuration on the executor;
when a call fails, the next candidate under the same preference that avoids every model that
failed so far runs instead, up to ``max_fallbacks`` times. The whole request has one deadline.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import numpy as np

from flowfront.backends.guard import CallLog, current_log
from flowfront.errors import BackendError, InfeasibleError, ReplayMissError
from flowfront.executor import Query, RunResult
from flowfront.router.select import Preference, select
from flowfront.service.errors import DeadlineExceeded, InvalidRequest, NotReady
from flowfront.service.state import Shared, WorkflowEntry

__all__ = ["Outcome", "run_request"]


@dataclass
class Outcome:
    """Everything a response (run or chat) is built from."""

    trace_id: str
    entry: WorkflowEntry
    strategy: str
    index: int
    predicted: tuple[float, float, float]
    feasible: bool
    ood: bool
    result: RunResult
    log: CallLog
    attempts: list[dict] = field(default_factory=list)
    decision_s: float = 0.0
    execution_s: float = 0.0
    hint: dict | None = None  # {"task", "used", "reason"} when the request named a task

    @property
    def fell_back(self) -> bool:
        return bool(self.attempts)


@dataclass
class _Decision:
    strategy: str
    estimates: tuple[np.ndarray, np.ndarray, np.ndarray]  # (K,) accuracy, latency, cost for this query
    ood: bool
    hint: dict | None = None


async def run_request(shared: Shared, entry: WorkflowEntry, query: str, preference: Preference,
                      strategy: str | None, task: str | None = None) -> Outcome:
    """Serve one query; raises a FlowfrontError the handlers map to HTTP."""
    limit = shared.settings.max_query_chars
    if len(query) > limit:
        raise InvalidRequest(f"`query` has {len(query):,} characters, more than the limit of {limit:,}",
                             field="query", hint="shorten the query or raise FLOWFRONT_MAX_QUERY_CHARS")
    if entry.frontier is None:
        raise NotReady(f"workflow {entry.name!r} cannot serve yet: {entry.status}",
                       hint="compile it, then POST /admin/reload")
    log = CallLog()
    trace_id = shared.trace_id()
    token = current_log.set(log)
    try:
        async with asyncio.timeout(shared.settings.request_deadline_s):
            return await _serve(shared, entry, query, preference, (strategy, task), trace_id, log)
    except TimeoutError:
        raise DeadlineExceeded(shared.settings.request_deadline_s) from None
    finally:
        current_log.reset(token)
        await shared.writer.record(trace_id, entry.name, log.events)


async def _serve(shared: Shared, entry: WorkflowEntry, query: str, preference: Preference,
                 asked: tuple[str | None, str | None], trace_id: str, log: CallLog) -> Outcome:
    started = time.perf_counter()
    decision = await _decide(entry, query, *asked)
    avoid = shared.breakers.unavailable(entry.all_models)
    try:
        index, feasible, attempts = _choose(entry, decision, preference, avoid)
    except BackendError as exc:  # every candidate's model is behind an open breaker
        exc.retry_after_s = shared.breakers.seconds_until_probe(avoid)  # type: ignore[attr-defined]
        raise
    decided = time.perf_counter()
    shared.metrics.decision_seconds.labels(workflow=entry.name, strategy=decision.strategy).observe(decided - started)
    index, feasible, result = await _execute(shared, entry, decision, preference, (index, feasible), avoid,
                                             attempts, Query(trace_id, query), log)
    done = time.perf_counter()
    if attempts:
        shared.metrics.fallbacks.labels(workflow=entry.name).inc()
    shared.metrics.execution_seconds.labels(workflow=entry.name).observe(done - decided)
    shared.metrics.chosen.labels(workflow=entry.name, candidate=entry.ids[index]).inc()
    acc, lat, cost = decision.estimates
    return Outcome(trace_id, entry, decision.strategy, index, (float(acc[index]), float(lat[index]), float(cost[index])),
                   feasible, decision.ood, result, log, attempts, decided - started, done - decided, decision.hint)


async def _execute(shared: Shared, entry: WorkflowEntry, decision: _Decision, preference: Preference,
                   chosen: tuple[int, bool], avoid: set[str], attempts: list[dict], query: Query,
                   log: CallLog) -> tuple[int, bool, RunResult]:
    """Run the chosen candidate; on a failed call, the next one avoiding every failed model so far."""
    index, feasible = chosen
    failed: set[str] = set()
    # Fallbacks prefer an answer to a refusal: hard limits relax to the nearest candidate.
    relaxed = preference.model_copy(update={"on_infeasible": "nearest"})
    while True:  # one pass per candidate tried: at most 1 + max_fallbacks
        log.candidate = entry.ids[index]
        result = await entry.executor.run(entry.resolved[index], query)
        if result.error is None:
            return index, feasible, result
        error = log.last_error(entry.ids[index]) or BackendError(result.error, model=result.failed_model)
        attempts.append({"candidate": entry.ids[index], "error": shared.redactor.scrub(str(error)),
                         "model": result.failed_model})
        failed.add(result.failed_model or "")
        if result.failed_model is None or len(failed) > shared.settings.max_fallbacks:
            raise _for_caller(error)
        try:
            index, feasible, _ = _choose(entry, decision, relaxed, avoid | failed)
        except BackendError:
            raise _for_caller(error) from None


def _for_caller(error: BackendError) -> Exception:
    """A replay miss is the caller's to fix (send a recorded query), said in the API's words."""
    if isinstance(error, ReplayMissError):
        return InvalidRequest(f"no recorded answer for this query ({error.message})", field="query",
                              hint="the replay backend answers only queries in the recorded data; send one of "
                                   "its queries, or serve with a live backend (FLOWFRONT_BACKEND=litellm)")
    return error


async def _decide(entry: WorkflowEntry, query: str, strategy: str | None, task: str | None) -> _Decision:
    chosen = strategy or ("router" if entry.router is not None else "static")
    if chosen == "static":
        hint = None if task is None else {"task": task, "used": False, "reason": "static selection takes no hints"}
        return _Decision("static", entry.static, False, hint)
    if entry.router is None:
        raise NotReady(f"workflow {entry.name!r} has no usable router: {entry.router_problem}",
                       hint="send strategy=static, or train a router and POST /admin/reload")
    row = await entry.front.estimate(query, task)  # a row far from every training query carries the fallback
    return _Decision("router", (row.accuracy, row.latency_s, row.cost_usd), row.ood,
                     None if task is None else _hint_report(entry, task, row.hinted))


def _hint_report(entry: WorkflowEntry, task: str, used: bool) -> dict:
    if used:
        return {"task": task, "used": True, "reason": None}
    known = sorted(entry.front.hint_groups)
    reason = ("the router was trained without task labels; the task was predicted from the text" if not known else
              f"not a task the router was trained on ({', '.join(known)}); the task was predicted from the text")
    return {"task": task, "used": False, "reason": reason}


def _choose(entry: WorkflowEntry, decision: _Decision, preference: Preference,
            avoid: set[str]) -> tuple[int, bool, list[dict]]:
    """The best candidate under ``preference`` among those calling none of ``avoid``.

    Returns the index, whether it meets the limits, and the skipped better choice (if the
    unrestricted best was avoided) as an attempt record.
    """
    acc, lat, cost = decision.estimates
    if not avoid:
        return (*_select(acc, lat, cost, preference, entry, None), [])
    allowed = np.array([not (ms & avoid) for ms in entry.models])
    if not allowed.any():
        raise BackendError(f"every candidate of {entry.name!r} calls a model that is failing ({', '.join(sorted(avoid))})",
                           retryable=True, hint="retry after the circuit breakers' reset time")
    best = _select(acc, lat, cost, preference, entry, None)
    if allowed[best[0]]:
        return best[0], best[1], []
    index, feasible = _select(acc, lat, cost, preference.model_copy(update={"on_infeasible": "nearest"}), entry, allowed)
    blocked = sorted(entry.models[best[0]] & avoid)
    skipped = {"candidate": entry.ids[best[0]], "error": f"skipped: circuit breaker open for {', '.join(blocked)}",
               "model": blocked[0]}
    return index, feasible, [skipped]


def _select(acc: np.ndarray, lat: np.ndarray, cost: np.ndarray, preference: Preference, entry: WorkflowEntry,
            allowed: np.ndarray | None) -> tuple[int, bool]:
    """``select`` over the allowed columns (all when None), mapped back to frontier indices."""
    cols = np.arange(len(acc)) if allowed is None else np.flatnonzero(allowed)
    try:
        picked = select(acc if allowed is None else acc[cols], lat if allowed is None else lat[cols],
                        cost if allowed is None else cost[cols], preference, entry.scale)
    except InfeasibleError as exc:
        if exc.nearest is not None:  # name the candidate, not just its column
            exc.nearest["candidate"] = entry.ids[int(cols[exc.nearest["index"]])]
            exc.nearest["index"] = int(cols[exc.nearest["index"]])
        raise
    return int(cols[int(picked.index)]), bool(picked.feasible)
