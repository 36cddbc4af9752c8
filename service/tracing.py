"""Served requests into the store: one decision row and its call rows per request, group commit.

Requests hand their decision and call log to :class:`TraceWriter`; a background task writes
batches in one transaction each, from a worker thread. With ``durable`` (the default) a request
waits until the transaction holding its rows has committed, and a request whose rows could not
be committed is answered 503 with Retry-After (never 200 and then lost): while one batch
commits, the requests that finish meanwhile queue up and form the next batch, so commits stay
few under load and nobody waits for a timer. Without ``durable`` requests return at once,
batches gather for ``flush_interval_s``, a batch the store refuses is kept and retried until the
store is back, and once ``queue_max`` requests wait the newest are dropped and counted
(``flowfront_traces_dropped``). :meth:`TraceWriter.aclose` writes whatever is queued, which is
how SIGTERM loses nothing. Retention runs in a task of its own, never on the commit path.
While the store is known down (a write, a probe or ``/readyz`` found it so) it is probed every
``probe_interval_s``, and durable requests are refused before they run (:meth:`refuse_if_down`)
instead of each waiting out two write attempts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

from flowfront.backends.guard import CallEvent
from flowfront.errors import FlowfrontError, ReplayMissError, StoreError
from flowfront.redact import Redactor
from flowfront.service.metrics import Metrics
from flowfront.store import Decision, ServedCall, StoreUnavailable, StoreURL, TraceStore, connect

__all__ = ["TraceWriter", "served_calls"]

log = logging.getLogger("flowfront.service")
_ATTEMPTS = 2  # a durable batch is tried this often before its requests are told (503)


@dataclass(frozen=True, slots=True)
class _Pending:
    decision: Decision
    events: tuple[CallEvent, ...]
    committed: asyncio.Future | None = None  # set once the batch holding it is committed (or lost)


def served_calls(decision: Decision, events: tuple[CallEvent, ...], redactor: Redactor) -> list[ServedCall]:
    """Call rows of one request, numbered in call order. A replay miss leaves no call row: the
    decision says the query was rejected, and rejected queries must not fill the store."""
    rows = []
    for seq, e in enumerate(events):
        if isinstance(e.error, ReplayMissError):
            continue
        done, req = e.completion, e.request
        error = None if done is not None else ("cancelled (request deadline or shutdown)" if e.cancelled
                                               else redactor.scrub(str(e.error)))
        request: dict = {"sampling": req.sampling, "truncated": bool(done and done.truncated)}
        if done is not None:
            request["messages"] = list(req.messages)
        else:  # a failed call keeps a compact row: its prompt is not worth the disk
            request["prompt_chars"] = sum(len(str(m.get("content", ""))) for m in req.messages)
        rows.append(
            ServedCall(
                trace_id=decision.id,
                seq=seq,
                candidate=e.candidate,
                node=req.node,
                model=req.model,
                budget=req.budget,
                prompt_key=req.prompt_key,
                request=request,
                response=done.text if done is not None else None,
                prompt_tokens=done.prompt_tokens if done else None,
                completion_tokens=done.completion_tokens if done else None,
                latency_s=done.latency_s if done else None,
                latency_source=done.latency_source if done else None,
                cost_usd=done.cost_usd if done else None,
                score=done.recorded_score if done else None,
                error=error,
                wall_s=e.wall_s,
                created_at=e.started_at,
            )
        )
    return rows


class TraceWriter:
    """Background, batched writes of served requests to the served-request store."""

    def __init__(
        self,
        url: StoreURL,
        metrics: Metrics,
        redactor: Redactor,
        *,
        batch_size: int = 512,
        flush_interval_s: float = 0.2,
        queue_max: int = 100_000,
        durable: bool = True,
        max_age_s: float | None = None,
        max_bytes: int | None = None,
        prune_interval_s: float = 60.0,
        probe_interval_s: float = 1.0,
    ) -> None:
        self.url = url
        self.durable = durable
        self.max_age_s, self.max_bytes, self.prune_interval_s = max_age_s, max_bytes, prune_interval_s
        self.metrics = metrics
        self.redactor = redactor
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.queue_max = queue_max
        self._queue: asyncio.Queue[_Pending | None] = asyncio.Queue()
        self._room = asyncio.Event()
        self._room.set()
        self.store: TraceStore | None = None
        self._task: asyncio.Task | None = None
        self._pruner: asyncio.Task | None = None
        self._full = asyncio.Event()
        # Set while the store is known down (a write or a probe failed), cleared once it answers.
        self.outage: StoreError | None = None
        self.probe_interval_s = probe_interval_s
        self._prober: asyncio.Task | None = None
        self.written = 0
        self.dropped = 0
        self._closing = False

    async def start(self, store: TraceStore | None = None) -> None:
        """Open the store (or use ``store``) and start writing."""
        self.store = (
            store if store is not None else await asyncio.to_thread(connect, self.url, redactor=self.redactor)
        )
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self._run(), name="trace-writer")
        if self.max_age_s or self.max_bytes:
            self._pruner = loop.create_task(self._prune_forever(), name="trace-retention")

    def refuse_if_down(self) -> None:
        """Durable, with the store known down: refuse a request before it runs. Its answer could not
        be logged, so it would be a 503 anyway, after two write attempts' timeouts and the model
        calls; refusing first keeps the calls and the caller's wait."""
        if self.durable and self.outage is not None:
            raise StoreUnavailable(f"not run: its answer could not be logged ({self.outage.message})",
                                   hint="retry shortly; the service keeps trying the store")

    def observed(self, problem: StoreError | None) -> None:
        """What a check of the store (``/readyz``, a probe, a write) found: down, or answering."""
        if problem is None:
            if self.outage is not None:
                log.info("the store %s answers again", self.url.shown)
            self.outage = None
            return
        self.outage = problem
        if self._task is not None and not self._closing and (self._prober is None or self._prober.done()):
            self._prober = asyncio.get_running_loop().create_task(self._probe(), name="trace-store-probe")

    async def _probe(self) -> None:
        while self.outage is not None and not self._closing and self.store is not None:
            await asyncio.sleep(self.probe_interval_s)
            try:
                await asyncio.to_thread(self.store.ping)
            except StoreError as exc:
                self.outage = exc
            else:
                self.observed(None)

    async def record(self, decision: Decision, events: list[CallEvent]) -> None:
        """Queue one request's rows; when durable, return once they are committed (or raise). An
        error answer with the store down does not wait: there is nothing to confirm, and its rows
        stay queued until the store is back."""
        durable = self.durable and self._task is not None and not (
            self.outage is not None and decision.status != 200
        )
        if not durable and self._queue.qsize() >= self.queue_max:
            self.dropped += 1
            self.metrics.traces_dropped.inc()
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.error("dropped %d served requests' traces: the store %s is behind and %d are queued",
                          self.dropped, self.url.shown, self.queue_max)
            return
        while durable and self._queue.qsize() >= self.queue_max:
            self._room.clear()
            await self._room.wait()  # back-pressure: a durable request waits for room, never drops
        committed = asyncio.get_running_loop().create_future() if durable else None
        self._queue.put_nowait(_Pending(decision, tuple(events), committed))
        self.metrics.trace_queue.set(self._queue.qsize())
        if self._queue.qsize() >= self.batch_size or committed is not None:
            self._full.set()
        if committed is not None:
            await asyncio.shield(committed)  # a cancelled request still leaves its rows to be written

    async def _run(self) -> None:
        while True:
            first = await self._queue.get()
            if first is None:
                return
            if self._queue.qsize() + 1 < self.batch_size and first.committed is None:
                self._full.clear()
                with contextlib.suppress(TimeoutError):  # a full batch or the flush interval, first wins
                    await asyncio.wait_for(self._full.wait(), self.flush_interval_s)
            batch, stop = [first], False
            while len(batch) < self.batch_size and not self._queue.empty():
                item = self._queue.get_nowait()
                if item is None:
                    stop = True
                    break
                batch.append(item)
            self._room.set()
            await self._write(batch)
            if stop:
                return

    async def _write(self, batch: list[_Pending]) -> None:
        failure: FlowfrontError | None = None
        rows, attempt = 0, 0
        while True:
            try:
                rows = await asyncio.to_thread(self._put, batch)
                self.observed(None)
                break
            except StoreError as exc:
                self.observed(exc)
                failure, attempt = exc, attempt + 1
                if attempt == 1 or attempt % 20 == 0:
                    log.error(
                        "the store %s refused %d served requests (attempt %d): %s",
                        self.url.shown,
                        len(batch),
                        attempt,
                        exc,
                    )
                # waiting requests (durable) are told soon; queued-only rows are kept until the store
                # is back, except on shutdown, which must end
                if attempt >= _ATTEMPTS and (self._closing or any(p.committed is not None for p in batch)):
                    self.metrics.traces_failed.inc(len(batch))
                    if not any(p.committed is not None for p in batch):
                        log.error("lost %d served requests' traces at shutdown: %s", len(batch), exc)
                    break
                await asyncio.sleep(min(5.0, 0.2 * 2 ** min(attempt, 5)))
        for pending in batch:
            if pending.committed is not None and not pending.committed.done():
                if rows:
                    pending.committed.set_result(None)
                else:  # the request learns its rows are not stored: 503, never a 200 then lost
                    pending.committed.set_exception(
                        StoreUnavailable(
                            f"this response could not be logged: {failure}"
                            if failure
                            else "the store refused the write",
                            hint="retry shortly; the service keeps trying the store",
                        )
                    )
        self.written += rows
        self.metrics.traces_written.inc(rows)
        self.metrics.trace_queue.set(self._queue.qsize())

    def _put(self, batch: list[_Pending]) -> int:
        assert self.store is not None
        calls = [row for p in batch for row in served_calls(p.decision, p.events, self.redactor)]
        return self.store.put_served([p.decision for p in batch], calls)

    async def _prune_forever(self) -> None:
        while True:
            await asyncio.sleep(self.prune_interval_s)
            await self.prune_now()

    async def prune_now(self) -> int:
        """Apply the retention limits once (off the event loop); returns the requests removed."""
        assert self.store is not None
        started = time.perf_counter()
        try:
            removed = await asyncio.to_thread(
                self.store.prune_served, max_age_s=self.max_age_s, max_bytes=self.max_bytes
            )
        except StoreError as exc:
            log.warning("retention on %s failed, tried again later: %s", self.url.shown, exc)
            return 0
        if removed:
            log.info("retention removed %d served requests from %s in %.2fs", removed, self.url.shown,
                     time.perf_counter() - started)
        return removed

    async def aclose(self) -> None:
        """Write everything queued, then close the store."""
        self._closing = True
        for task in (self._pruner, self._prober):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._pruner = self._prober = None
        if self._task is not None:
            await self._queue.put(None)
            self._full.set()
            await self._task
            self._task = None
        rest = [item for item in _drain(self._queue) if item is not None]  # finished during shutdown
        if rest:
            await self._write(rest)
        if self.store is not None:
            await asyncio.to_thread(self.store.close)
            self.store = None


def _drain(queue: asyncio.Queue) -> list:
    items = []
    while not queue.empty():
        items.append(queue.get_nowait())
    return items
