"""The backend every served call goes through: per-call timeout, circuit breaker, call log.

The executor sees an ordinary :class:`Backend`. Each request sets a :class:`CallLog` in a
context variable before executing; the executor's concurrent branches inherit the context, so
every call of the request (failed ones included) lands in that request's log, which becomes
its traces. Timeouts are enforced here rather than only in the executor so that a timeout can
be told apart from a cancelled request and counted against the model.
"""

from __future__ import annotations

import asyncio
import time
from contextvars import ContextVar
from dataclasses import dataclass, field

from flowfront.backends.base import Backend, CallRequest, Completion, WrappingBackend
from flowfront.errors import BackendError, CallTimeoutError, ReplayMissError
from flowfront.service.breaker import BreakerBoard
from flowfront.service.metrics import Metrics

__all__ = ["CallEvent", "CallLog", "GuardedBackend", "current_log"]


@dataclass(slots=True)
class CallEvent:
    """One call made while serving a request."""

    candidate: str
    request: CallRequest
    completion: Completion | None
    error: BackendError | None
    cancelled: bool
    wall_s: float
    started_at: float


@dataclass(slots=True)
class CallLog:
    """The calls of one request; ``candidate`` is the attempt the next calls belong to."""

    candidate: str = ""
    events: list[CallEvent] = field(default_factory=list)

    def last_error(self, candidate: str) -> BackendError | None:
        for event in reversed(self.events):
            if event.candidate == candidate and event.error is not None:
                return event.error
        return None

    def cost_usd(self) -> float:
        return sum(e.completion.cost_usd for e in self.events if e.completion is not None)


current_log: ContextVar[CallLog | None] = ContextVar("flowfront_call_log", default=None)


class GuardedBackend(WrappingBackend):
    """Wraps the real backend (and fault injection, when configured) for serving."""

    name = "guarded"

    def __init__(self, inner: Backend, breakers: BreakerBoard, metrics: Metrics, timeout_s: float) -> None:
        super().__init__(inner)
        self.breakers = breakers
        self.metrics = metrics
        self.timeout_s = timeout_s


    async def complete(self, request: CallRequest) -> Completion:
        model = request.model
        log = current_log.get()
        started, wall = time.time(), time.perf_counter()
        if not self.breakers.acquire(model):
            error = BackendError(f"circuit breaker for {model!r} is open after repeated failures", model=model,
                                 retryable=True, hint=f"the service retries {model!r} by itself after the breaker's reset time")
            self._failed(log, request, error, "breaker_open", started, wall)
            raise error
        try:
            async with asyncio.timeout(self.timeout_s):
                done = await self.inner.complete(request)
        except TimeoutError:
            error = CallTimeoutError(model, self.timeout_s)
            self.breakers.failure(model)
            self._failed(log, request, error, "timeout", started, wall)
            raise error from None
        except BackendError as error:
            kind = "replay_miss" if isinstance(error, ReplayMissError) else "retryable" if error.retryable else "failed"
            if error.retryable:
                self.breakers.failure(model)
            else:
                self.breakers.release(model)  # says nothing about the model's health
            self._failed(log, request, error, kind, started, wall)
            raise
        except asyncio.CancelledError:
            self.breakers.release(model)
            if log is not None:
                log.events.append(CallEvent(log.candidate, request, None, None, True, time.perf_counter() - wall, started))
            raise
        self.breakers.success(model)
        if log is not None:
            log.events.append(CallEvent(log.candidate, request, done, None, False, time.perf_counter() - wall, started))
        return done

    def _failed(self, log: CallLog | None, request: CallRequest, error: BackendError, kind: str,
                started: float, wall: float) -> None:
        self.metrics.backend_errors.labels(model=request.model, kind=kind).inc()
        if log is not None:
            log.events.append(CallEvent(log.candidate, request, None, error, False, time.perf_counter() - wall, started))
