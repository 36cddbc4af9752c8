"""Per-model circuit breakers: stop sending calls to a model that keeps failing.

closed ──(``failures`` retryable failures in a row)──▶ open ──(``reset_s`` later)──▶ half-open
half-open lets one probe call through: success closes the breaker, failure opens it again.
Only failures that say something about the model count (timeouts, retryable provider errors);
a replay miss or a cancelled request does not.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

__all__ = ["BreakerBoard", "State"]

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
