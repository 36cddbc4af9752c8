"""The replay backend: answers ``llm`` calls from recorded traces, offline and deterministically.

A budget cuts the recorded (unlimited) response at ``budget`` tokens, which is exactly what a
greedy call with that ``max_tokens`` returns. Latency is the recorded one when the data has it,
otherwise the model card's latency model. A call with no record is an error naming the model and
the prompt key, never an invented answer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from flowfront.backends.base import Backend, CallRequest, Completion, DeltaSink, LatencySource
from flowfront.backends.prefix import Cut, Recorded, cut, recorded
from flowfront.errors import BackendError, ReplayMissError
from flowfront.modelcards import ModelCard
from flowfront.store import TraceStore
from flowfront.tokens import count_message_tokens


class ReplayBackend(Backend):
    """Replay over an in-memory index of the store's traces, the widest record per prompt.

    The index is built on first use (one SQLite scan); answers are then pure dictionary lookups
    plus a cached truncation, which keeps replay in the tens of microseconds per call.
    """

    name = "replay"

    def __init__(
        self, store: TraceStore, cards: dict[str, ModelCard], *, models: Iterable[str] | None = None
    ) -> None:
        self.store = store
        self.cards = cards
        self.models = None if models is None else sorted(set(models))
        self._index: dict[str, Recorded] | None = None
        self._cuts: dict[tuple[str, int | None], Cut] = {}

    def _load(self) -> dict[str, Recorded]:
        if self._index is None:
            index: dict[str, Recorded] = {}
            for t in self.store.iter_traces(models=self.models):
                rec = recorded(t)
                if rec.error is None or t.prompt_key not in index:
                    old = index.get(t.prompt_key)
                    if old is None or old.error is not None or rec.reach() > old.reach():
                        index[t.prompt_key] = rec
            self._index = index
        return self._index

    def has(self, request: CallRequest) -> bool:
        return request.prompt_key in self._load()

    async def complete(self, request: CallRequest, *, on_delta: DeltaSink | None = None) -> Completion:
        done = self.answer(request)
        if on_delta is not None:
            replay_deltas(done, self._load()[request.prompt_key], on_delta)
        return done

    def answer(self, request: CallRequest) -> Completion:
        """Synchronous core, shared by the executor, the litellm provider and ``replay-serve``."""
        pkey = request.prompt_key
        rec = self._load().get(pkey)
        if rec is None:
            raise ReplayMissError(request.model, pkey)
        if rec.error:
            raise BackendError(f"recorded call to {request.model!r} failed: {rec.error}", model=request.model)
        if not rec.covers(request.budget):
            raise BackendError(
                f"replay of {request.model!r} (prompt key {pkey}) was recorded up to {rec.max_tokens} "
                f"tokens and cut there; budget {request.budget} needs more",
                model=request.model,
                hint="record it again at the node's largest budget (`flowfront record`) or use a budget "
                     "within it",
            )
        return completion_from_record(rec, request, self._cut(pkey, rec, request.budget), self._card)

    def _cut(self, pkey: str, rec: Recorded, budget: int | None) -> Cut:
        key = (pkey, budget)
        done = self._cuts.get(key)
        if done is None:
            done = self._cuts[key] = cut(rec, budget)
        return done

    @staticmethod
    def _cost(card: ModelCard | None, rec: Recorded, prompt: int, tokens: int, truncated: bool) -> float:
        card = card if card is not None and card.has_prices else None
        if rec.cost_usd is None:
            return float(card.cost_usd(prompt, tokens)) if card is not None else 0.0
        if not truncated or card is None:
            return rec.cost_usd
        # Keep the recorded price level; scale it by the card's estimate of what the cut saves.
        full = float(card.cost_usd(prompt, rec.completion_tokens))
        return rec.cost_usd * (float(card.cost_usd(prompt, tokens)) / full) if full > 0 else rec.cost_usd

    def _card(self, model: str) -> ModelCard | None:
        """The model's card, or None: an outcome table over models without cards runs with what it
        records, and what it does not record is unavailable (0, labelled so), never invented."""
        return self.cards.get(model)



def completion_from_record(rec: Recorded, request: CallRequest, done: Cut,
                           card_for: Callable[[str], ModelCard | None]) -> Completion:
    """The completion a record gives for ``request`` (already cut to its budget).

    Latency is the recorded one (the whole call's, or the arrival of the cut's last token) when
    the record has it, else the model card's latency model; ``latency_source`` says which.
    """
    prompt_tokens = (
        rec.prompt_tokens if rec.prompt_tokens is not None else count_message_tokens(list(request.messages))
    )
    cut_here = done.tokens != rec.completion_tokens
    card = card_for(request.model) if (done.latency_s is None or rec.cost_usd is None or cut_here) else None
    latency: float
    source: LatencySource
    if done.latency_s is not None:
        latency, source = done.latency_s, "recorded"
    elif card is not None and card.has_latency_model:
        latency, source = float(card.latency_s(prompt_tokens, done.tokens)), "modeled"
    else:
        latency, source = 0.0, "unavailable"
    cost = ReplayBackend._cost(card, rec, prompt_tokens, done.tokens, cut_here)
    return Completion(
        text=done.text,
        prompt_tokens=prompt_tokens,
        completion_tokens=done.tokens,
        latency_s=latency,
        cost_usd=cost,
        latency_source=source,
        truncated=done.truncated,
        recorded_score=rec.score,
        reference_text=rec.response if done.truncated else None,
    )


def replay_deltas(done: Completion, rec: Recorded, on_delta: DeltaSink) -> None:
    """Hand a recorded answer over as it was streamed when recorded (token by token where the
    record kept each token's offset), up to the cut; else as one piece."""
    text = done.text or ""
    offsets = rec.timing.offsets if rec.timing is not None else ()
    start = 0
    for end in offsets:
        if end > len(text):
            break
        if end > start:
            on_delta(text[start:end])
            start = end
    if start < len(text):
        on_delta(text[start:])
