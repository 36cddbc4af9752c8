"""Guards for a served backend: per-model circuit breakers, a per-call timeout and a call log.

Breakers: closed ──(``failures`` retryable failures in a row)──▶ open ──(``reset_s`` later)──▶
half-open, which lets one probe call through: success closes the breaker, failure opens it
again. Only failures that say something about the model count (timeouts, retryable provider
errors); a replay miss or a cancelled request does not.

:class:`GuardedBackend` is the Backend the executor sees while serving. Each request sets a
:class:`CallLog` in a context variable before executing; the executor's concurrent branches
inherit the context, so every call of the request (failed ones included) lands in that request's
log, which becomes its traces. Timeouts are enforced here rather than only in the executor so a
timeout can be told apart from a cancelled request and counted against the model. It lives in
the kernel beside the other wrapping backends so the executor never calls up into the service;
the service only supplies the ``on_error`` hook (its metrics).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Literal

from flowfront.backends.base import Backend, CallRequest, Completion, DeltaSink, WrappingBackend
from flowfront.errors import BackendError, CallTimeoutError, ReplayMissError

__all__ = ["BreakerBoard", "CallEvent", "CallLog", "GuardedBackend", "State", "current_log"]

State = Literal["closed", "open", "half-open"]
STATE_CODE: dict[State, int] = {"closed": 0, "half-open": 1, "open": 2}


@dataclass(slots=True)
class _Breaker:
    failures: int = 0
    opened_at: float | None = None
    probing: bool = False  # a half-open probe is in flight


class BreakerBoard:
    """One breaker per model. Event-loop confined: no locks, every method is synchronous.

    ``on_change(model, state)`` is called on every state change (metrics, logs).
    """

    def __init__(
        self,
        failures: int,
        reset_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[str, State], None] | None = None,
    ) -> None:
        self.threshold = failures
        self.reset_s = reset_s
        self.clock = clock
        self.on_change = on_change
        self._breakers: dict[str, _Breaker] = {}
        self._open = 0  # breakers not closed; lets the common case skip every per-model check

    def unavailable(self, models: set[str]) -> set[str]:
        """The models among ``models`` that selection should avoid now."""
        if not self._open:
            return set()
        return {m for m in models if not self.available(m)}

    def state(self, model: str) -> State:
        """The model's state now (an open breaker past its reset time reads half-open)."""
        b = self._breakers.get(model)
        if b is None or b.opened_at is None:
            return "closed"
        return "half-open" if self.clock() - b.opened_at >= self.reset_s else "open"

    def seconds_until_probe(self, models: set[str]) -> float:
        """How long until the first of ``models``' open breakers lets a probe through (0: none open)."""
        now = self.clock()
        waits = [self.reset_s - (now - b.opened_at) for m, b in self._breakers.items()
                 if m in models and b.opened_at is not None]
        return max(0.0, min(waits)) if waits else 0.0

    def available(self, model: str) -> bool:
        """Whether a call to ``model`` may be planned (open breakers are avoided by selection)."""
        state = self.state(model)
        return state == "closed" or (state == "half-open" and not self._breakers[model].probing)

    def acquire(self, model: str) -> bool:
        """Ask to make a call now; half-open admits one probe at a time."""
        state = self.state(model)
        if state == "closed":
            return True
        b = self._breakers[model]
        if state == "half-open" and not b.probing:
            b.probing = True
            self._notify(model, "half-open")
            return True
        return False

    def success(self, model: str) -> None:
        b = self._breakers.get(model)
        if b is None:
            return
        was_open = b.opened_at is not None
        b.failures, b.opened_at, b.probing = 0, None, False
        if was_open:
            self._open -= 1
            self._notify(model, "closed")

    def failure(self, model: str) -> None:
        b = self._breakers.setdefault(model, _Breaker())
        b.failures += 1
        if b.probing or (b.opened_at is None and b.failures >= self.threshold):
            self._open += b.opened_at is None
            b.opened_at, b.probing = self.clock(), False
            self._notify(model, "open")

    def release(self, model: str) -> None:
        """A probe ended without a verdict (cancelled): let another one through."""
        b = self._breakers.get(model)
        if b is not None:
            b.probing = False

    def snapshot(self) -> dict[str, State]:
        """Every model's state, for /readyz and tests."""
        return {model: self.state(model) for model in self._breakers}

    def _notify(self, model: str, state: State) -> None:
        if self.on_change is not None:
            self.on_change(model, state)



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

    def __init__(self, inner: Backend, breakers: BreakerBoard, timeout_s: float,
                 on_error: Callable[[str, str], None] | None = None) -> None:
        super().__init__(inner)
        self.breakers = breakers
        self.timeout_s = timeout_s
        self.on_error = on_error  # (model, kind): the service counts failed calls with it

    async def complete(self, request: CallRequest, *, on_delta: DeltaSink | None = None) -> Completion:
        model = request.model
        log = current_log.get()
        started, wall = time.time(), time.perf_counter()
        if not self.breakers.acquire(model):
            error = BackendError(
                f"circuit breaker for {model!r} is open after repeated failures",
                model=model,
                retryable=True,
                hint=f"the service retries {model!r} by itself after the breaker's reset time",
            )
            self._failed(log, request, error, "breaker_open", started, wall)
            raise error
        try:
            async with asyncio.timeout(self.timeout_s):
                done = await (self.inner.complete(request) if on_delta is None
                              else self.inner.complete(request, on_delta=on_delta))
        except TimeoutError:
            error = CallTimeoutError(model, self.timeout_s)
            self.breakers.failure(model)
            self._failed(log, request, error, "timeout", started, wall)
            raise error from None
        except BackendError as error:
            kind = (
                "replay_miss"
                if isinstance(error, ReplayMissError)
                else "retryable"
                if error.retryable
                else "failed"
            )
            if error.retryable:
                self.breakers.failure(model)
            else:
                self.breakers.release(model)  # says nothing about the model's health
            self._failed(log, request, error, kind, started, wall)
            raise
        except asyncio.CancelledError:
            self.breakers.release(model)
            if log is not None:
                log.events.append(
                    CallEvent(log.candidate, request, None, None, True, time.perf_counter() - wall, started)
                )
            raise
        self.breakers.success(model)
        if log is not None:
            log.events.append(
                CallEvent(log.candidate, request, done, None, False, time.perf_counter() - wall, started)
            )
        return done

    def _failed(self, log: CallLog | None, request: CallRequest, error: BackendError, kind: str,
                started: float, wall: float) -> None:
        if self.on_error is not None:
            self.on_error(request.model, kind)
        if log is not None:
            log.events.append(
                CallEvent(log.candidate, request, None, error, False, time.perf_counter() - wall, started)
            )
