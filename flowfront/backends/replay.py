"""The replay backend: answers ``llm`` calls from recorded traces, offline and deterministically.

A budget cuts the recorded (unlimited) response at ``budget`` tokens, which is exactly what a
greedy call with that ``max_tokens`` returns. Latency is the recorded one when the data has it,
otherwise the model card's latency model. A call with no record is an error naming the model and
the prompt key, never an invented answer.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from flowfront.backends.base import Backend, CallRequest, Completion
from flowfront.errors import BackendError, ReplayMissError, SpecError
from flowfront.modelcards import ModelCard
from flowfront.store import Trace, TraceStore
from flowfront.tokens import count_message_tokens, count_tokens, truncate_tokens


@dataclass(frozen=True, slots=True)
class _Record:
    response: str | None
    prompt_tokens: int | None
    completion_tokens: int
    latency_s: float | None
    cost_usd: float | None
    score: float | None
    error: str | None


class ReplayBackend(Backend):
    """Replay over an in-memory index of the store's unlimited-budget traces.

    The index is built on first use (one SQLite scan); answers are then pure dictionary lookups
    plus a cached truncation, which keeps replay in the tens of microseconds per call.
    """

    name = "replay"

    def __init__(self, store: TraceStore, cards: dict[str, ModelCard], *, models: Iterable[str] | None = None) -> None:
        self.store = store
        self.cards = cards
        self.models = None if models is None else sorted(set(models))
        self._index: dict[str, _Record] | None = None
        self._cuts: dict[tuple[str, int], tuple[str, int]] = {}

    def _load(self) -> dict[str, _Record]:
        if self._index is None:
            index: dict[str, _Record] = {}
            for t in self.store.iter_traces(models=self.models, unlimited_only=True):
                index[t.prompt_key] = _record(t)
            self._index = index
        return self._index

    def has(self, request: CallRequest) -> bool:
        return request.prompt_key in self._load()

    async def complete(self, request: CallRequest) -> Completion:
        return self.answer(request)

    def answer(self, request: CallRequest) -> Completion:
        """Synchronous core, shared by the executor, the litellm provider and ``replay-serve``."""
        pkey = request.prompt_key
        rec = self._load().get(pkey)
        if rec is None:
            raise ReplayMissError(request.model, pkey)
        if rec.error:
            raise BackendError(f"recorded call to {request.model!r} failed: {rec.error}", model=request.model)
        prompt_tokens = rec.prompt_tokens if rec.prompt_tokens is not None else count_message_tokens(list(request.messages))
        text, tokens, truncated = self._cut(pkey, rec, request.budget)
        card = self._card(request.model) if (truncated or rec.latency_s is None or rec.cost_usd is None) else None
        if rec.latency_s is not None and not truncated:
            latency, source = rec.latency_s, "recorded"
        else:
            latency, source = card.latency_s(prompt_tokens, tokens), "modeled"
        cost = self._cost(card, rec, prompt_tokens, tokens, truncated)
        return Completion(
            text=text,
            prompt_tokens=prompt_tokens,
            completion_tokens=tokens,
            latency_s=latency,
            cost_usd=cost,
            latency_source=source,
            truncated=truncated,
            recorded_score=rec.score,
            reference_text=rec.response if truncated else None,
        )

    def _cut(self, pkey: str, rec: _Record, budget: int | None) -> tuple[str | None, int, bool]:
        if budget is None or rec.completion_tokens <= budget:
            return rec.response, rec.completion_tokens, False
        if rec.response is None:
            # Score-only data: we know the call would be cut, not what the cut text says.
            return None, budget, True
        cached = self._cuts.get((pkey, budget))
        if cached is None:
            text, kept, _ = truncate_tokens(rec.response, budget)
            cached = self._cuts[(pkey, budget)] = (text, kept)
        return cached[0], cached[1], True

    @staticmethod
    def _cost(card: ModelCard | None, rec: _Record, prompt: int, tokens: int, truncated: bool) -> float:
        if rec.cost_usd is None:
            return card.cost_usd(prompt, tokens)
        if not truncated:
            return rec.cost_usd
        # Keep the recorded price level; scale it by the card's estimate of what the cut saves.
        full = card.cost_usd(prompt, rec.completion_tokens)
        return rec.cost_usd * (card.cost_usd(prompt, tokens) / full) if full > 0 else rec.cost_usd

    def _card(self, model: str) -> ModelCard:
        card = self.cards.get(model)
        if card is None:
            raise SpecError(
                f"no model card for {model!r}: replay needs its latency model and prices",
                hint="add configs/models/<model>.yaml with ttft, prefill/decode rates and prices",
            )
        return card


def _record(t: Trace) -> _Record:
    tokens = t.completion_tokens
    if tokens is None:
        tokens = count_tokens(t.response) if t.response is not None else 0
    return _Record(t.response, t.prompt_tokens, tokens, t.latency_s, t.cost_usd, t.score, t.error)
