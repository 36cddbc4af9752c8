"""The backend contract: one async ``complete`` from a call request to a completion."""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from flowfront.store import call_key, prompt_key

if TYPE_CHECKING:
    from flowfront.backends.prefix import StreamTiming

LatencySource = Literal["recorded", "modeled", "measured", "unavailable"]
# Receives the text of a call as it is produced, piece by piece (a token, or a whole answer from
# a backend that cannot stream); the pieces joined are exactly the completion's text.
DeltaSink = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class CallRequest:
    """One ``llm`` call. ``budget`` caps output tokens; None is unlimited."""

    model: str
    messages: tuple[dict[str, Any], ...]
    budget: int | None = None
    sampling: dict[str, Any] = field(default_factory=dict)
    # The budgets this call's node may use. A live cache calls once at the widest of them and
    # answers the others by cutting that response (flowfront.backends.prefix); not part of the key.
    budgets: tuple[int | None, ...] = ()
    node: str | None = None  # which node and query the call serves: trace metadata, not part of the key
    query_id: str | None = None

    @property
    def widest_budget(self) -> int | None:
        """The largest budget of the node (None: unlimited), at least this call's own."""
        pool = (*self.budgets, self.budget)
        return None if None in pool else max(b for b in pool if b is not None)

    @property
    def key(self) -> str:
        return call_key(self.model, self.budget, self.messages, self.sampling)

    @property
    def prompt_key(self) -> str:
        return prompt_key(self.model, self.messages, self.sampling)


@dataclass(frozen=True, slots=True)
class Completion:
    """What a backend returns for a call.

    ``latency_s`` is the provider-side latency of the call: recorded in the data, modeled from the
    model card, or measured on a live call (``latency_source`` says which). ``recorded_score`` is
    the grade stored with a replayed response; when ``truncated`` is set, ``reference_text`` is the
    uncut recorded response, so the executor can tell whether the cut changed the answer.
    """

    text: str | None
    prompt_tokens: int
    completion_tokens: int
    latency_s: float
    cost_usd: float
    latency_source: LatencySource
    truncated: bool = False
    recorded_score: float | None = None
    reference_text: str | None = None
    cached: bool = False
    timing: StreamTiming | None = None  # per-token arrival times of a streamed live call


class Backend(abc.ABC):
    """Answers call requests. Implementations raise :class:`flowfront.errors.BackendError`."""

    name: str = "backend"

    @abc.abstractmethod
    async def complete(self, request: CallRequest, *, on_delta: DeltaSink | None = None) -> Completion:
        """Answer one call; with ``on_delta``, hand over its text as it is produced."""

    def identity(self, model: str) -> str:
        """Who actually answers calls to ``model`` (provider route, endpoint); keys cached traces.

        Two endpoints serving the same model name are different providers, and neither is the
        recorded data a replay answers from, so their traces must not share keys.
        """
        return model

    def concurrency(self, model: str) -> int | None:
        """The per-model in-flight limit this backend prefers (None: the executor's default)."""
        return None

    async def check(self) -> None:
        """Raise BackendError if the backend cannot serve calls now (used by readiness probes)."""

    async def aclose(self) -> None:
        """Release connections and files."""


class WrappingBackend(Backend):
    """A backend that adds behaviour around ``inner`` (faults, timeouts, breakers) and otherwise
    is ``inner``: identity, concurrency, readiness and closing pass through."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner

    def identity(self, model: str) -> str:
        return self.inner.identity(model)

    def concurrency(self, model: str) -> int | None:
        return self.inner.concurrency(model)

    async def check(self) -> None:
        await self.inner.check()

    async def aclose(self) -> None:
        await self.inner.aclose()
