"""Served calls into the trace store, with group commit.

Requests hand their call log to :class:`TraceWriter`; a background task writes batches in one
SQLite transaction each from a worker thread. With ``durable`` (the default) a request waits
until the transaction holding its trace has committed, so an answered request always has its
trace, even after kill -9: while one batch commits, the requests that finish meanwhile queue up
and form the next batch, so commits stay few under load (group commit) and nobody waits for a
timer. Without ``durable`` requests return at once and batches gather for ``flush_interval_s``.
A full queue makes requests wait (back-pressure), never drops a trace. :meth:`TraceWriter.aclose`
writes whatever is queued, which is how SIGTERM loses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from flowfront.backends.guard import CallEvent
from flowfront.redact import Redactor
from flowfront.service.metrics import Metrics
from flowfront.store import Trace, TraceStore

__all__ = ["TraceWriter", "served_traces"]

SOURCE = "serve"
log = logging.getLogger("flowfront.service")


@dataclass(frozen=True, slots=True)
class _Pending:
    trace_id: str
    workflow: str
    events: tuple[CallEvent, ...]
    committed: asyncio.Future | None = None  # set once the batch holding it is on disk


def served_traces(pending: _Pending, redactor: Redactor) -> list[Trace]:
    """Trace rows for one request: keyed by trace id and call number, so every call is a row."""
    rows = []
    for seq, e in enumerate(pending.events):
        done, req = e.completion, e.request
        error = None if done is not None else ("cancelled (request deadline or shutdown)" if e.cancelled
                                               else redactor.scrub(str(e.error)))
        request = {"model": req.model, "budget": req.budget, "sampling": req.sampling,
                   "trace_id": pending.trace_id, "workflow": pending.workflow, "candidate": e.candidate,
                   "call": seq, "wall_s": e.wall_s, "truncated": bool(done and done.truncated)}
        if done is not None:
            request["messages"] = list(req.messages)
        else:  # a rejected or failed call keeps a compact row: its prompt is not worth the disk
            request["prompt_chars"] = sum(len(str(m.get("content", ""))) for m in req.messages)
        rows.append(Trace(
            key=hashlib.blake2b(f"{pending.trace_id}:{seq}".encode(), digest_size=16).hexdigest(),
            prompt_key=req.prompt_key, model=req.model, budget=req.budget, request=request,
            response=done.text if done is not None else None,
            prompt_tokens=done.prompt_tokens if done else None, completion_tokens=done.completion_tokens if done else None,
            latency_s=done.latency_s if done else None, cost_usd=done.cost_usd if done else None,
            score=done.recorded_score if done else None, error=error, source=SOURCE, query_id=pending.trace_id,
            created_at=e.started_at,
        ))
    return rows


class TraceWriter:
    """Background, batched writes of served calls to a :class:`TraceStore`."""

    def __init__(self, path: Path, metrics: Metrics, redactor: Redactor, *, batch_size: int = 512,
                 flush_interval_s: float = 0.2, queue_max: int = 100_000, durable: bool = True,
                 max_age_s: float | None = None, max_bytes: int | None = None, prune_every: int = 50) -> None:
        self.path = path
        self.durable = durable
        self.max_age_s, self.max_bytes, self.prune_every = max_age_s, max_bytes, prune_every
        self._batches = 0
        self.metrics = metrics
        self.redactor = redactor
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self._queue: asyncio.Queue[_Pending | None] = asyncio.Queue(maxsize=queue_max)
        self._store: TraceStore | None = None
        self._task: asyncio.Task | None = None
        self._full = asyncio.Event()
        self.written = 0

    async def start(self) -> None:
        self._store = await asyncio.to_thread(TraceStore, self.path)
        self._task = asyncio.get_running_loop().create_task(self._run(), name="trace-writer")

    async def record(self, trace_id: str, workflow: str, events: list[CallEvent]) -> None:
        """Queue one request's calls; when durable, return once they are committed."""
        if not events:
            return
        committed = asyncio.get_running_loop().create_future() if self.durable and self._task is not None else None
        await self._queue.put(_Pending(trace_id, workflow, tuple(events), committed))
        if self._queue.qsize() >= self.batch_size or committed is not None:
            self._full.set()
        if committed is not None:
            await asyncio.shield(committed)  # a cancelled request still leaves its trace to be written

    async def _run(self) -> None:
        while True:
            first = await self._queue.get()
            if first is None:
                return
            if self._queue.qsize() + 1 < self.batch_size and first.committed is None:
                self._full.clear()
                # Wait for a full batch or the flush interval, whichever comes first.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._full.wait(), self.flush_interval_s)
            batch, stop = [first], False
            while len(batch) < self.batch_size and not self._queue.empty():
                item = self._queue.get_nowait()
                if item is None:
                    stop = True
                    break
                batch.append(item)
            await self._write(batch)
            if stop:
                return

    async def _write(self, batch: list[_Pending]) -> None:
        try:
            rows = await asyncio.to_thread(self._rows_and_put, batch)
        finally:
            for pending in batch:  # released after the commit (or after the loss was logged)
                if pending.committed is not None and not pending.committed.done():
                    pending.committed.set_result(None)
        self.written += rows
        self.metrics.traces_written.inc(rows)
        self.metrics.trace_queue.set(self._queue.qsize())

    def _rows_and_put(self, batch: list[_Pending]) -> int:
        rows = [row for pending in batch for row in served_traces(pending, self.redactor)]
        self._batches += 1
        if (self.max_age_s or self.max_bytes) and self._batches % self.prune_every == 0:
            # retention runs in the writer's thread, between batches: no request waits on it
            self._store.prune(source=SOURCE, max_age_s=self.max_age_s, max_bytes=self.max_bytes)
        for attempt in range(3):  # a busy SQLite (another writer) is worth a retry before giving up
            try:
                return self._store.put_many(rows)
            except Exception as exc:  # sqlite3 errors and StoreError alike
                if attempt == 2:
                    # Said loudly; the writer keeps going so later traces are not lost too.
                    log.error("lost %d served traces: the trace store %s rejected them: %s", len(rows), self.path, exc)
                    return 0
                time.sleep(0.2 * (attempt + 1))
        return 0

    async def aclose(self) -> None:
        """Write everything queued, then close the store."""
        if self._task is not None:
            await self._queue.put(None)
            self._full.set()
            await self._task
            self._task = None
        # Anything queued after the stop marker (a request that finished during shutdown).
        rest = []
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if item is not None:
                rest.append(item)
        if rest:
            await self._write(rest)
        if self._store is not None:
            await asyncio.to_thread(self._store.close)
            self._store = None
