"""Fault injection: a backend wrapper that makes named models fail or hang.

Used by drills and tests of the service's fallback and circuit-breaker paths, on any backend
(replay included), so a fault behaves exactly like a provider outage would: a failing model
raises a retryable :class:`BackendError` (as a 503 from a provider does), a hanging model
never answers and is cut off by the caller's per-call timeout.

>>> # backend = FaultInjectingBackend(ReplayBackend(store, cards), fail_models={"claude-v2"})
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterable

from flowfront.backends.base import Backend, CallRequest, Completion, DeltaSink, WrappingBackend
from flowfront.errors import BackendError, SpecError


class FaultInjectingBackend(WrappingBackend):
    """Wraps ``inner``; calls to ``fail_models`` fail, calls to ``hang_models`` hang.

    ``hang_s`` is how long a hanging call sleeps before it would answer; it should exceed the
    per-call timeout, so the caller sees a timeout, never the late answer. ``injected`` counts
    the faults per model, so drills can check the faults were actually exercised.
    """

    name = "faults"

    def __init__(
        self,
        inner: Backend,
        *,
        fail_models: Iterable[str] = (),
        hang_models: Iterable[str] = (),
        hang_s: float = 3600.0,
    ) -> None:
        super().__init__(inner)
        self.fail_models = frozenset(fail_models)
        self.hang_models = frozenset(hang_models)
        both = self.fail_models & self.hang_models
        if both:
            raise SpecError(
                f"model {sorted(both)[0]!r} is configured both to fail and to hang",
                hint="list each model under one fault only",
            )
        if hang_s <= 0:
            raise SpecError(
                f"hang_s must be positive, got {hang_s}", hint="pass a duration above the call timeout"
            )
        self.hang_s = hang_s
        self.injected: Counter[str] = Counter()

    @property
    def active(self) -> bool:
        """Whether any fault is configured."""
        return bool(self.fail_models or self.hang_models)

    async def complete(self, request: CallRequest, *, on_delta: DeltaSink | None = None) -> Completion:
        model = request.model
        if model in self.fail_models:
            self.injected[model] += 1
            raise BackendError(
                f"model {model!r} is unavailable (injected fault)",
                model=model,
                retryable=True,
                hint="unset FLOWFRONT_FAULT_FAIL_MODELS to stop injecting this fault",
            )
        if model in self.hang_models:
            self.injected[model] += 1
            await asyncio.sleep(self.hang_s)  # the caller's timeout cancels this sleep
        return await (
            self.inner.complete(request)
            if on_delta is None
            else self.inner.complete(request, on_delta=on_delta)
        )
