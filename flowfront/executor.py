"""The async executor: runs one configuration of a workflow on a query or a batch.

Independent branches and samples run concurrently; each model has an in-flight limit and each call
a timeout. Latency is reported three ways: measured wall time, modeled ``sequential`` (the sum of
call latencies) and modeled ``parallel`` (the critical path through the flow). A call identical
to one already made in the run (the same prompt, model, budget and sampling: answer and check by
one model on one prompt) is not made again: it has that call's output and costs nothing, which is
what the proxy assumes when it compiles (compile/proxy.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from flowfront.backends.base import Backend, CallRequest, Completion, DeltaSink
from flowfront.checkpoints import Checkpoint, CheckpointHook, NotMade, Reached, Switch, Switched, code_key
from flowfront.codefns import CODE_FUNCTIONS
from flowfront.errors import BackendError, CallTimeoutError
from flowfront.flow import FlowVisitor
from flowfront.parsers import PARSERS
from flowfront.space import Resolved, knob_value
from flowfront.spec import CodeNode, Cond, If, LLMNode, Loop, Parallel, Sample, Workflow
from flowfront.streamed import TokenSink, streamed_call
from flowfront.values import Value

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?:\.(text|answer))?\}")


@dataclass(frozen=True, slots=True)
class Query:
    query_id: str
    text: str
    task: str | None = None
    split: str | None = None
    reference: str | None = None


@dataclass(frozen=True, slots=True)
class CallRecord:
    node: str
    index: int
    model: str
    budget: int | None
    prompt_tokens: int
    completion_tokens: int
    latency_s: float
    latency_source: str
    cost_usd: float
    truncated: bool
    cached: bool
    request: CallRequest | None = None  # kept only when the executor is asked to (profiling)
    answer: Any = None  # the parsed answer, kept with the request
    score: float | None = None  # its recorded grade, when the data has one (kept with the request)
    reused: bool = False  # a repeat of an identical call made earlier in the run (nothing was called)


@dataclass(slots=True)
class RunResult:
    query_id: str
    answer: Any = None
    value: Value | None = None
    calls: list[CallRecord] = field(default_factory=list)
    latency_wall_s: float = 0.0
    latency_sequential_s: float = 0.0
    latency_parallel_s: float = 0.0
    cost_usd: float = 0.0
    error: str | None = None
    failed_model: str | None = None
    switches: list[Switch] = field(default_factory=list)  # re-decisions at checkpoints that changed it
    final: Resolved | None = None  # the configuration the answer came from (the chosen one, unless switched)

    def latency(self, execution: str) -> float:
        """The modeled latency under an execution model (``parallel``: the critical path)."""
        return self.latency_parallel_s if execution == "parallel" else self.latency_sequential_s


@dataclass(slots=True)
class _Run:
    resolved: Resolved
    query: Query
    env: dict[str, Any] = field(default_factory=dict)
    calls: list[CallRecord | None] = field(default_factory=list)
    next_slot: dict[str, int] = field(default_factory=dict)
    stream: TokenSink | None = None
    streamed: tuple[str, int] | None = None  # the call whose text streams (streamed_call)
    # Calls already issued in this run by request key: an identical request (same prompt, model,
    # budget and sampling) is answered by the first one, as the trace store would answer it.
    made: dict[str, asyncio.Future[Completion]] = field(default_factory=dict)
    # Progressive routing (flowfront.checkpoints): the hook, the checkpoints already decided, how
    # often each checkpoint node ran, where the run's clock stands (sequential, parallel), code
    # outputs by their inputs (a switched or walked flow does not re-run a sandbox), the keys of
    # calls made before a switch (their records stand), and for a compatibility walk the
    # checkpoint it stops at and the keys it used.
    hook: CheckpointHook | None = None
    decided: set[str] = field(default_factory=set)
    seen: dict[str, int] = field(default_factory=dict)
    at: tuple[float, float] = (0.0, 0.0)
    code_made: dict[str, Value] = field(default_factory=dict)
    prefix_keys: frozenset[str] = frozenset()
    walk_to: str | None = None
    used: set[str] = field(default_factory=set)

    def query_value(self) -> Value:
        return Value(answer=self.query.reference, text=self.query.text)

    def take_slots(self, node: str, n: int) -> int:
        start = self.next_slot.get(node, 0)
        self.next_slot[node] = start + n
        return start


class Executor(FlowVisitor[_Run, Awaitable[tuple[float, float]]]):
    """Runs workflow configurations against a backend.

    >>> # executor = Executor(workflow, ReplayBackend(store, cards))
    >>> # result = await executor.run(resolve(workflow, config), Query("q1", "2+2?"))
    """

    def __init__(
        self,
        workflow: Workflow,
        backend: Backend,
        *,
        concurrency: int = 16,
        timeout_s: float = 60.0,
        keep_requests: bool = False,
    ) -> None:
        super().__init__(workflow)
        self.checkpoints = frozenset(workflow.checkpoint_nodes())
        self.backend = backend
        self.concurrency = concurrency
        self.timeout_s = timeout_s
        self.keep_requests = keep_requests
        self._limits: dict[str, asyncio.Semaphore] = {}

    def _limit(self, model: str) -> asyncio.Semaphore:
        sem = self._limits.get(model)
        if sem is None:
            sem = self._limits[model] = asyncio.Semaphore(self.backend.concurrency(model) or self.concurrency)
        return sem

    async def run(self, resolved: Resolved, query: Query, *, stream: TokenSink | None = None,
                  checkpoint: CheckpointHook | None = None) -> RunResult:
        """Run one query; a failed call ends the run with ``error`` set (nothing is raised).

        With ``stream``, the call that produces the answer (:func:`streamed_call`) hands its text
        to ``stream`` as it is produced. With ``checkpoint``, the hook is asked at each checkpoint
        whether to switch configuration (flowfront.checkpoints); a switched run reports its
        ``switches`` and the configuration it ended on as ``final``."""
        run = self._new_run(resolved, query, stream, checkpoint)
        started = time.perf_counter()
        result = RunResult(query.query_id)
        kept: list[CallRecord | None] = []
        try:
            while True:
                offset = run.at  # zero, or what was spent before a switch
                try:
                    seq, par = await self._flow(self.workflow.flow, run)
                    break
                except Switched as sw:
                    result.switches.append(sw.switch)
                    kept += run.calls
                    run = self._new_run(sw.switch.after, query, stream, checkpoint, after=run)
            value = run.env.get(self.workflow.output)
            result.value = value
            result.answer = value.answer if isinstance(value, Value) else None
            result.latency_sequential_s, result.latency_parallel_s = offset[0] + seq, offset[1] + par
        except BackendError as exc:
            result.error, result.failed_model = str(exc), exc.model
        result.final = run.resolved
        result.calls = [c for c in kept + run.calls if c is not None]  # a failed call leaves no record
        result.cost_usd = sum(c.cost_usd for c in result.calls)
        result.latency_wall_s = time.perf_counter() - started
        return result

    def _new_run(self, resolved: Resolved, query: Query, stream: TokenSink | None,
                 hook: CheckpointHook | None, *, after: _Run | None = None) -> _Run:
        """A run's state; ``after`` is the run it switches from, whose calls and clock it keeps."""
        streamed = streamed_call(self.workflow, resolved.knobs) if stream is not None else None
        if hook is not None and streamed is not None and streamed[0] in self.checkpoints:
            streamed = None  # a switch after that call could change the answer already streamed
        run = _Run(resolved, query, stream=stream, streamed=streamed, hook=hook)
        if after is not None:
            run.made, run.decided, run.code_made = after.made, after.decided, after.code_made
            run.prefix_keys, run.at = frozenset(after.made), after.at
        return run

    async def run_batch(
        self,
        resolved: Resolved,
        queries: Sequence[Query],
        *,
        max_in_flight: int = 256,
        progress: Callable[[int], None] | None = None,
    ) -> list[RunResult]:
        """Run many queries concurrently (bounded), results in input order."""
        gate = asyncio.Semaphore(max_in_flight)

        async def one(q: Query) -> RunResult:
            async with gate:
                res = await self.run(resolved, q)
            if progress is not None:
                progress(1)
            return res

        return list(await asyncio.gather(*(one(q) for q in queries)))

    # -- flow -----------------------------------------------------------------------------------
    async def _flow(self, flow: list[Any], run: _Run) -> tuple[float, float]:
        # run.at is the clock where this flow started plus what it has spent; no checkpoint lies
        # inside a parallel branch (the spec refuses one), so the clock is exact where it is read.
        base_s, base_p = run.at
        seq = par = 0.0
        for step in flow:
            s, p = await self.step(step, run)
            seq += s
            par += p
            run.at = (base_s + seq, base_p + par)
            if isinstance(step, str) and step in self.checkpoints:
                await self._checkpoint(step, run)
        return seq, par

    async def _checkpoint(self, node: str, run: _Run) -> None:
        occurrence = run.seen.get(node, 0)
        run.seen[node] = occurrence + 1
        cid = f"{node}#{occurrence}"
        if run.walk_to is not None:
            if cid == run.walk_to:
                raise Reached
            return
        if run.hook is None or cid in run.decided:
            return
        run.decided.add(cid)
        calls = tuple(c for c in run.calls if c is not None)
        point = Checkpoint(
            node, occurrence, run.query, run.resolved, calls, dict(run.env), frozenset(run.made),
            run.at[0], run.at[1], sum(c.cost_usd for c in calls),
            lambda other: self._reaches(other, run, cid),
        )
        after = await run.hook(point)
        if after is not None and after != run.resolved:
            raise Switched(Switch(cid, run.resolved, after, run.at[1], point.cost_usd))

    async def _reaches(self, resolved: Resolved, run: _Run, cid: str) -> bool:
        """Walk ``resolved``'s flow over the calls ``run`` has made, calling nothing: whether it
        reaches checkpoint ``cid`` having used exactly those calls."""
        walk = _Run(resolved, run.query, made=run.made, code_made=run.code_made, walk_to=cid)
        try:
            await self._flow(self.workflow.flow, walk)
        except Reached:
            return walk.used == set(run.made)
        except NotMade:
            return False
        return False  # finished without passing the checkpoint

    # One method per step kind (the flow visitor); each returns (sequential, parallel) latency.
    async def llm(self, name: str, node: LLMNode, run: _Run) -> tuple[float, float]:
        value, lat = await self._call(name, node, run.take_slots(name, 1), run)
        run.env[name] = value
        return lat, lat

    async def code(self, name: str, node: CodeNode, run: _Run) -> tuple[float, float]:
        fn = CODE_FUNCTIONS[node.fn]
        args = [run.query_value() if arg == "query" else run.env.get(arg) for arg in node.inputs]
        key = code_key(name, args) if run.hook is not None or run.walk_to is not None else None
        if key is not None and key in run.code_made:
            run.env[name] = run.code_made[key]
        elif getattr(fn, "blocking", False):  # e.g. runs a subprocess: keep the event loop free
            run.env[name] = await asyncio.to_thread(fn, *args, **node.params)
        else:
            run.env[name] = fn(*args, **node.params)
        if key is not None:
            run.code_made[key] = run.env[name]
        return 0.0, 0.0

    async def sample(self, step: Sample, node: LLMNode, run: _Run) -> tuple[float, float]:
        k = knob_value(step.k, run.resolved.knobs)
        start = run.take_slots(step.sample, k)
        outs = await asyncio.gather(*(self._call(step.sample, node, start + i, run) for i in range(k)))
        run.env[step.sample] = [v for v, _ in outs]
        lats = [lat for _, lat in outs]
        return sum(lats), max(lats, default=0.0)

    async def parallel(self, step: Parallel, run: _Run) -> tuple[float, float]:
        branches = await asyncio.gather(*(self._flow(branch, run) for branch in step.parallel))
        return sum(s for s, _ in branches), max(p for _, p in branches)

    async def branch(self, step: If, run: _Run) -> tuple[float, float]:
        return await self._flow(step.then if self._holds(step.cond, run) else step.orelse, run)

    async def loop(self, step: Loop, run: _Run) -> tuple[float, float]:
        seq = par = 0.0
        for _ in range(knob_value(step.max_iters, run.resolved.knobs)):
            s, p = await self._flow(step.loop, run)
            seq, par = seq + s, par + p
            if step.until is not None and self._holds(step.until, run):
                break
        return seq, par

    @staticmethod
    def _holds(cond: Cond, run: _Run) -> bool:
        actual: object
        if cond.knob is not None:
            actual = run.resolved.knobs[cond.knob]
        else:
            value = run.env.get(cond.node) if cond.node is not None else None
            actual = value.answer if isinstance(value, Value) else None
        return cond.holds(actual)

    # -- calls ----------------------------------------------------------------------------------
    async def _call(self, name: str, node: LLMNode, index: int, run: _Run) -> tuple[Value, float]:
        setting = run.resolved.setting(name, index)
        request = CallRequest(
            model=setting.model,
            messages=tuple({"role": m.role, "content": _render(m.content, run)} for m in node.messages),
            budget=setting.budget,
            sampling=node.sampling,
            budgets=tuple(node.budgets),
            node=name,
            query_id=run.query.query_id,
        )
        if run.walk_to is not None:
            return self._walked(request, node, run), 0.0
        # Records keep the order calls were issued in, not the order they finished in.
        call_id = len(run.calls)
        run.calls.append(None)
        on_delta = (run.stream.opened(name, setting.model)
                    if run.stream is not None and run.streamed == (name, index) else None)
        earlier = run.made.get(request.key)
        reused = earlier is not None
        if earlier is not None:
            done = _reused(await asyncio.shield(earlier))
            if on_delta is not None and done.text:
                on_delta(done.text)
        else:
            run.made[request.key] = made = asyncio.get_running_loop().create_future()
            try:
                done = await self._complete(request, on_delta)
            except BaseException as exc:
                if isinstance(exc, asyncio.CancelledError):
                    made.cancel()
                else:
                    made.set_exception(exc)
                    made.exception()  # retrieved: the run reports the failure, not the event loop
                raise
            made.set_result(done)
        value = completion_value(PARSERS[node.parser], done, call_id)
        if request.key in run.prefix_keys:  # made before the run switched: its record stands
            return value, done.latency_s
        keep = self.keep_requests
        run.calls[call_id] = (
            CallRecord(
                node=name, index=index, model=setting.model, budget=setting.budget,
                prompt_tokens=done.prompt_tokens, completion_tokens=done.completion_tokens,
                latency_s=done.latency_s, latency_source=done.latency_source, cost_usd=done.cost_usd,
                truncated=done.truncated, cached=done.cached, reused=reused,
                request=request if keep else None, answer=value.answer if keep else None,
                score=value.score if keep else None,
            )
        )
        return value, done.latency_s

    @staticmethod
    def _walked(request: CallRequest, node: LLMNode, run: _Run) -> Value:
        earlier = run.made.get(request.key)
        if earlier is None or not earlier.done() or earlier.cancelled() or earlier.exception() is not None:
            raise NotMade
        run.used.add(request.key)
        return completion_value(PARSERS[node.parser], earlier.result())

    async def _complete(self, request: CallRequest, on_delta: DeltaSink | None) -> Completion:
        async with self._limit(request.model):
            try:
                async with asyncio.timeout(self.timeout_s):
                    return await (self.backend.complete(request) if on_delta is None
                                  else self.backend.complete(request, on_delta=on_delta))
            except TimeoutError:
                raise CallTimeoutError(request.model, self.timeout_s) from None


def _reused(done: Completion) -> Completion:
    """A repeat of a call made earlier in the run: the same output, nothing spent."""
    return dataclasses.replace(
        done, prompt_tokens=0, completion_tokens=0, latency_s=0.0, cost_usd=0.0, cached=True, timing=None
    )


def completion_value(parse: Callable[[str], Any], done: Completion, call_id: int = 0) -> Value:
    """Parse a completion; a recorded grade survives a budget cut only if the answer is unchanged."""
    answer = parse(done.text) if done.text is not None else None
    score = done.recorded_score
    if score is not None and done.truncated:
        full = parse(done.reference_text) if done.reference_text is not None else None
        if done.text is None or answer is None or answer != full:
            score = 0.0
    return Value(answer=answer, text=done.text, score=score, calls=(call_id,))


def _render(template: str, run: _Run) -> str:
    """Fill ``{query}``, ``{node}`` and ``{node.text}``; inserted text is never re-scanned."""

    def show(value: Value | None, part: str | None) -> str:
        if value is None:
            return ""
        return (value.text or "") if part == "text" else str(value)

    def fill(match: re.Match[str]) -> str:
        name, part = match.group(1), match.group(2)
        if name == "query":
            return run.query.text
        value = run.env.get(name)
        if isinstance(value, list):
            return "\n\n".join(show(v, part) for v in value)
        return show(value, part)

    return _PLACEHOLDER.sub(fill, template)
