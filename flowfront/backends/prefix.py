"""One recorded response serves every smaller budget (the greedy-prefix property).

A response generated with ``max_tokens = B`` begins with exactly what a call with any budget
``b < B`` returns: decoding is left to right, so the first ``b`` tokens do not depend on ``B``
(under greedy decoding the text is identical; under sampling it is a sample of the same
distribution). So a live run calls each prompt once, at the node's largest budget, and both the
live cache and replay answer smaller budgets by cutting that record. A record that ended on its
own (``finish_reason = stop``) answers every budget.

A streamed live call also records when each token arrived, so the latency of a cut is the
*recorded* time its last token arrived, not a model of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flowfront.store import Trace
from flowfront.tokens import count_tokens, truncate_tokens


@dataclass(frozen=True, slots=True)
class StreamTiming:
    """Per token of a streamed response: the end offset of its text and its arrival time (s)."""

    offsets: tuple[int, ...]
    times: tuple[float, ...]

    @property
    def ttft_s(self) -> float | None:
        return self.times[0] if self.times else None

    def as_json(self) -> dict[str, Any]:
        return {"offsets": list(self.offsets), "times": [round(t, 4) for t in self.times]}

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> StreamTiming | None:
        if not data or len(data.get("offsets", ())) != len(data.get("times", ())):
            return None
        return cls(tuple(int(o) for o in data["offsets"]), tuple(float(t) for t in data["times"]))


@dataclass(frozen=True, slots=True)
class Recorded:
    """A recorded call as replay and the live cache read it."""

    response: str | None
    prompt_tokens: int | None
    completion_tokens: int
    latency_s: float | None
    cost_usd: float | None
    score: float | None
    error: str | None
    max_tokens: int | None = None  # the budget it was called with; None: unlimited
    finished: bool = True  # ended on its own, so it answers any budget
    timing: StreamTiming | None = None

    def covers(self, budget: int | None) -> bool:
        """Whether this record answers a call with ``budget`` exactly."""
        if self.error is not None:
            return False
        if self.finished or self.max_tokens is None:
            return True
        return budget is not None and budget <= self.max_tokens

    def reach(self) -> float:
        """How many budgets it covers (to keep the widest of several records of one prompt)."""
        return float("inf") if self.finished or self.max_tokens is None else float(self.max_tokens)


def recorded(t: Trace) -> Recorded:
    tokens = t.completion_tokens
    if tokens is None:
        tokens = count_tokens(t.response) if t.response is not None else 0
    req = t.request if isinstance(t.request, dict) else {}
    max_tokens = req.get("max_tokens", t.budget)
    finish = req.get("finish_reason")
    # Imported outcome tables hold complete responses (budget NULL); a live call is complete
    # unless the provider said it stopped at max_tokens.
    finished = max_tokens is None or (finish != "length" and not req.get("truncated", False))
    return Recorded(
        t.response,
        t.prompt_tokens,
        tokens,
        t.latency_s,
        t.cost_usd,
        t.score,
        t.error,
        max_tokens=max_tokens,
        finished=finished,
        timing=StreamTiming.from_json(req.get("stream")),
    )


@dataclass(frozen=True, slots=True)
class Cut:
    text: str | None
    tokens: int
    truncated: bool
    latency_s: float | None  # recorded latency of the cut (None: not recorded, model it)


def cut(rec: Recorded, budget: int | None) -> Cut:
    """What a call with ``budget`` returns, given a record that covers it."""
    if budget is None or rec.completion_tokens < budget or (rec.completion_tokens == budget and rec.finished):
        return Cut(rec.response, rec.completion_tokens, not rec.finished, rec.latency_s)
    if rec.response is None:
        # Score-only data: we know the call would be cut, not what the cut text says.
        return Cut(None, budget, True, None)
    timing = rec.timing
    if timing is not None and len(timing.offsets) == rec.completion_tokens:
        return Cut(rec.response[: timing.offsets[budget - 1]], budget, True, timing.times[budget - 1])
    text, kept, _ = truncate_tokens(rec.response, budget)
    return Cut(text, kept, True, None)
