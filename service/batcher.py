"""An async micro-batcher: concurrent requests' items go through one blocking call together.

Embedding a query and running the router's boosters cost ~10 ms for one query and much less
per query in a batch, and both block. The batcher keeps one batch running in a worker thread
(the event loop never waits on onnxruntime or LightGBM); items that arrive meanwhile queue up
and form the next batch. Under load batches grow by themselves; an idle server answers a lone
request at once (``max_wait_s`` can trade a little latency for fuller batches).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, TypeVar

__all__ = ["MicroBatcher"]

In = TypeVar("In")
Out = TypeVar("Out")
log = logging.getLogger("flowfront.service")


class MicroBatcher(Generic[In, Out]):
    """``await submit(item)`` returns ``fn([.., item, ..])[i]``; ``fn`` runs in ``pool``.

    ``fn`` maps a batch to one output per item, in order. Start with :meth:`start` inside the
    running loop; :meth:`aclose` fails whatever is still queued and stops the worker task.
    """

    def __init__(
        self,
        fn: Callable[[Sequence[In]], Sequence[Out]],
        pool: ThreadPoolExecutor,
        *,
        max_size: int = 64,
        max_wait_s: float = 0.0,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self.fn = fn
        self.pool = pool
        self.max_size = max_size
        self.max_wait_s = max_wait_s
        self.on_batch = on_batch
        self._queue: asyncio.Queue[tuple[In, asyncio.Future[Out]]] = asyncio.Queue()
        self._task: asyncio.Task | None = None
        self.batches = 0
        self.items = 0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="micro-batcher")

    async def submit(self, item: In) -> Out:
        """Queue ``item`` and wait for its output (exceptions of ``fn`` are raised here)."""
        if self._task is None or self._task.done():
            raise RuntimeError("the batcher is not running; call start() inside the event loop")
        future: asyncio.Future[Out] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((item, future))
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            if self.max_wait_s > 0 and self._queue.qsize() + 1 < self.max_size:
                await asyncio.sleep(self.max_wait_s)
            while len(batch) < self.max_size and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            live = [(item, fut) for item, fut in batch if not fut.done()]  # callers past their deadline left
            if not live:
                continue
            try:
                outputs = await loop.run_in_executor(self.pool, self.fn, [item for item, _ in live])
            except Exception as exc:  # handed to every caller of the batch, who raises it
                for _, fut in live:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            self.batches += 1
            self.items += len(live)
            if self.on_batch is not None:
                self.on_batch(len(live))
            for (_, fut), out in zip(live, outputs, strict=True):
                if not fut.done():
                    fut.set_result(out)

    async def aclose(self) -> None:
        """Stop the worker; queued callers get an error instead of waiting forever."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                log.debug("micro-batcher stopped")
            self._task = None
        while not self._queue.empty():
            _, fut = self._queue.get_nowait()
            if not fut.done():
                fut.set_exception(RuntimeError("the service is shutting down"))
