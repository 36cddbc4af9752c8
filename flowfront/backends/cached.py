"""The live cache: a backend in front of the trace store, so a finished call is never made twice.

Each prompt is called once, at the widest budget its node may use; every smaller budget is
answered by cutting that record (:mod:`flowfront.backends.prefix`), so profiling costs nodes ×
models calls, not nodes × models × budgets. Concurrent requests for one prompt share one call.
An intent row claims each live call before it is made and is removed with its trace in one
transaction: a run killed mid-call repeats no finished call and can say which calls were in
flight, and processes sharing one store (on one machine, or on several with PostgreSQL) make each
call once: a call another process has claimed is waited for, then read from the store. A claim
is kept alive by a heartbeat while its call runs; one whose process died is taken over.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import replace
from typing import Any

from flowfront.backends.base import Backend, CallRequest, Completion, DeltaSink
from flowfront.backends.prefix import Recorded, cut, recorded
from flowfront.backends.replay import completion_from_record, replay_deltas
from flowfront.errors import SpecError, StoreError
from flowfront.modelcards import ModelCard
from flowfront.store import INTENT_LEASE_S, Trace, TraceStore, call_key, prompt_key

log = logging.getLogger("flowfront.cache")


class CachedBackend(Backend):
    """Answers from the store when a record covers the call; otherwise calls ``inner`` once."""

    name = "cached"

    def __init__(self, inner: Backend, store: TraceStore) -> None:
        self.inner = inner
        self.store = store
        self._inflight: dict[str, asyncio.Future[Any]] = {}
        self._held: set[str] = set()  # prompt keys this process has claimed and is calling
        self._heartbeat: asyncio.Task[None] | None = None
        self.live_calls = 0
        stale = store.stale_intents()
        self.resumed_in_flight = len(stale)
        if stale:
            models = sorted({row[1] for row in stale})
            log.warning(
                "%d live calls were in flight when an earlier run stopped (%s); they had no result and are "
                "made again",
                len(stale),
                ", ".join(models),
            )

    def concurrency(self, model: str) -> int | None:
        return self.inner.concurrency(model)

    def identity(self, model: str) -> str:
        return self.inner.identity(model)

    async def complete(self, request: CallRequest, *, on_delta: DeltaSink | None = None) -> Completion:
        who = self.inner.identity(request.model)
        pkey = prompt_key(who, request.messages, request.sampling)
        while True:
            pending = self._inflight.get(pkey)
            if pending is None:
                break
            await asyncio.wait([pending])  # this process is already making this call; then look again
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._inflight[pkey] = future
        try:
            pause = 0.05
            while True:
                rec = await asyncio.to_thread(self._best, pkey, request.budget)
                if rec is not None:
                    done = replace(completion_from_record(rec, request, cut(rec, request.budget), self._card),
                                   cached=True)
                    if on_delta is not None:
                        replay_deltas(done, rec, on_delta)
                    return done
                if await asyncio.to_thread(
                    self.store.claim_intent, pkey, request.model, request.widest_budget
                ):
                    break
                await asyncio.sleep(pause)  # another process is making it: its trace will be here
                pause = min(1.0, pause * 2)
            return await self._call(request, who, pkey, on_delta)
        finally:
            del self._inflight[pkey]
            future.set_result(None)

    async def _call(
        self, request: CallRequest, who: str, pkey: str, on_delta: DeltaSink | None
    ) -> Completion:
        # A streamed call is made at its own budget: tokens past it must never reach the caller.
        widest = request.widest_budget if on_delta is None else request.budget
        live = replace(request, budget=widest)
        self._held.add(pkey)
        self._keep_alive()
        try:
            done = await (
                self.inner.complete(live)
                if on_delta is None
                else self.inner.complete(live, on_delta=on_delta)
            )
        except BaseException:
            self._held.discard(pkey)
            await asyncio.shield(asyncio.to_thread(self.store.end_intent, pkey))  # let another process try
            raise
        self.live_calls += 1
        trace = Trace(
            key=call_key(who, widest, request.messages, request.sampling),
            prompt_key=pkey,
            model=request.model,
            budget=widest,
            request={
                "model": request.model,
                "provider": who,
                "node": request.node,
                "messages": list(request.messages),
                "max_tokens": widest,
                "sampling": request.sampling,
                "finish_reason": "length" if done.truncated else "stop",
                # the machine is shared: each measured latency carries the load it was taken under
                "load_1m": round(os.getloadavg()[0], 2),
                **({"stream": done.timing.as_json()} if done.timing is not None else {}),
            },
            response=done.text,
            prompt_tokens=done.prompt_tokens,
            completion_tokens=done.completion_tokens,
            latency_s=done.latency_s,
            cost_usd=done.cost_usd,
            score=done.recorded_score,
            source="live",
            query_id=request.query_id,
        )
        await asyncio.to_thread(self.store.put_ending_intent, trace)
        self._held.discard(pkey)
        if widest == request.budget:
            return done
        rec = recorded(trace)
        return completion_from_record(rec, request, cut(rec, request.budget), self._card)

    def _best(self, pkey: str, budget: int | None) -> Recorded | None:
        best = None
        for t in self.store.by_prompt(pkey):
            rec = recorded(t)
            if rec.covers(budget) and (best is None or rec.reach() > best.reach()):
                best = rec
        return best

    def _card(self, model: str) -> ModelCard | None:
        cards: dict[str, ModelCard] = getattr(self.inner, "cards", {})
        card = cards.get(model)
        if card is None:
            raise SpecError(
                f"no model card for {model!r}: a cut needs its price", hint="add configs/models/<model>.yaml"
            )
        return card

    def _keep_alive(self) -> None:
        """Refresh this process's claims while their calls run (a claim not refreshed expires)."""
        if self._heartbeat is not None and not self._heartbeat.done():
            return

        async def beat() -> None:
            while self._held:
                await asyncio.sleep(INTENT_LEASE_S / 3)
                try:
                    await asyncio.to_thread(self.store.heartbeat, list(self._held))
                except StoreError as exc:
                    log.warning("could not refresh live-call claims: %s", exc)

        self._heartbeat = asyncio.get_running_loop().create_task(beat(), name="live-call-heartbeat")

    async def check(self) -> None:
        await self.inner.check()

    async def aclose(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        await self.inner.aclose()
