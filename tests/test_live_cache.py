"""The live cache and recordings: one call per prompt at the widest budget, exact cuts with recorded
latency, one call for concurrent duplicates, resume without repeats, and a recording that replays
offline to the same answers and latencies.

The model here is a deterministic greedy "server" in process (``CountingModel``): the logic under
test is flowfront's, and tests/live/ runs the same path against a real llama.cpp server.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest

from flowfront.backends.base import Backend, CallRequest, Completion
from flowfront.backends.cached import CachedBackend
from flowfront.backends.prefix import StreamTiming, cut, recorded
from flowfront.backends.replay import ReplayBackend
from flowfront.modelcards import ModelCard
from flowfront.store import connect

CARD = ModelCard(name="tiny", litellm_model="openai/tiny", input_usd_per_mtok=1.0, output_usd_per_mtok=2.0,
                 ttft_s=0.1, prefill_tok_per_s=1000, decode_tok_per_s=100, max_concurrency=1)


class CountingModel(Backend):
    """Greedy and deterministic: the answer to a prompt is words w0 w1 ... (``length`` of them),
    token i arriving at 0.05 + 0.01 * i seconds; it counts the calls it gets."""

    def __init__(self, length: int = 40, delay_s: float = 0.0) -> None:
        self.length, self.delay_s, self.calls = length, delay_s, []
        self.cards = {"tiny": CARD}

    async def complete(self, request: CallRequest) -> Completion:
        self.calls.append(request.budget)
        await asyncio.sleep(self.delay_s)
        n = self.length if request.budget is None else min(self.length, request.budget)
        words = [f"w{i} " for i in range(n)]
        offsets, total = [], 0
        for w in words:
            total += len(w)
            offsets.append(total)
        times = tuple(0.05 + 0.01 * i for i in range(n))
        return Completion(
            text="".join(words),
            prompt_tokens=7,
            completion_tokens=n,
            latency_s=times[-1] + 0.001,
            cost_usd=CARD.cost_usd(7, n),
            latency_source="measured",
            truncated=n < self.length,
            timing=StreamTiming(tuple(offsets), times),
        )


def request(budget: int | None, budgets=(8, 16, 64), text: str = "hello") -> CallRequest:
    return CallRequest(model="tiny", messages=({"role": "user", "content": text},), budget=budget,
                       sampling={"temperature": 0}, budgets=budgets, node="answer", query_id="q1")


def test_one_call_at_the_widest_budget_answers_every_smaller_one(tmp_path: Path) -> None:
    model = CountingModel(length=40)
    with connect(tmp_path / "t.sqlite") as store:
        cache = CachedBackend(model, store)
        small = asyncio.run(cache.complete(request(8)))
        assert model.calls == [64]  # called once, at the node's widest budget
        assert (
            small.text == "".join(f"w{i} " for i in range(8))
            and small.completion_tokens == 8
            and small.truncated
        )
        assert small.latency_s == pytest.approx(0.05 + 0.07)  # when the 8th token arrived, recorded
        assert small.latency_source == "recorded"
        assert small.cost_usd == pytest.approx(CARD.cost_usd(7, 8))
        full = asyncio.run(cache.complete(request(64)))
        mid = asyncio.run(cache.complete(request(16)))
        assert model.calls == [64]
        assert full.text.count("w") == 40 and not full.truncated  # ended on its own before 64
        assert mid.text == "".join(f"w{i} " for i in range(16))


def test_a_cut_record_does_not_answer_a_larger_budget(tmp_path: Path) -> None:
    model = CountingModel(length=100)
    with connect(tmp_path / "t.sqlite") as store:
        cache = CachedBackend(model, store)
        asyncio.run(cache.complete(request(8, budgets=(8, 16))))
        asyncio.run(cache.complete(request(64, budgets=(64,))))  # the 16-token record cannot answer 64
        assert model.calls == [16, 64]


def test_concurrent_duplicates_share_one_call_and_a_restart_repeats_none(tmp_path: Path) -> None:
    model = CountingModel(length=20, delay_s=0.05)
    with connect(tmp_path / "t.sqlite") as store:
        cache = CachedBackend(model, store)

        async def many():
            return await asyncio.gather(*(cache.complete(request(b)) for b in (8, 16, 64, 8, 16)))

        outs = asyncio.run(many())
        assert model.calls == [64] and len({o.text for o in outs}) == 3
    with connect(tmp_path / "t.sqlite") as store:  # a new process on the same store
        again = CachedBackend(model, store)
        asyncio.run(again.complete(request(16)))
        assert model.calls == [64] and again.resumed_in_flight == 0


def test_calls_in_flight_when_a_run_died_are_reported(tmp_path: Path, caplog) -> None:
    with connect(tmp_path / "t.sqlite") as store:
        store.begin_intent("pk-1", "tiny", 64)
        with store._lock:  # the intent of a process that no longer exists
            store._conn.execute("UPDATE intents SET pid=?", (2**22 + 12345,))
            store._conn.commit()
        cache = CachedBackend(CountingModel(), store)
    assert cache.resumed_in_flight == 1
    assert "in flight when an earlier run stopped" in caplog.text


def test_replay_serves_a_live_record_like_the_cache(tmp_path: Path) -> None:
    model = CountingModel(length=40)
    with connect(tmp_path / "t.sqlite") as store:
        cache = CachedBackend(model, store)
        live = {b: asyncio.run(cache.complete(request(b))) for b in (8, 16, 64)}
        replay = ReplayBackend(store, {"tiny": CARD})
        for budget, done in live.items():
            again = replay.answer(request(budget))
            assert (again.text, again.completion_tokens, again.truncated) == (
                done.text,
                done.completion_tokens,
                done.truncated,
            )
            assert again.latency_s == pytest.approx(done.latency_s) and again.latency_source in (
                "recorded",
                "measured",
            )


def test_cut_without_per_token_times_is_modeled(tmp_path: Path) -> None:
    model = CountingModel(length=40)
    with connect(tmp_path / "t.sqlite") as store:
        asyncio.run(CachedBackend(model, store).complete(request(64)))
        trace = next(store.iter_traces())
    rec = replace(recorded(trace), timing=None)
    done = cut(rec, 8)
    assert (
        done.truncated and done.tokens == 8 and done.latency_s is None
    )  # the caller models it from the card


def test_prompt_keys_ignore_budgets_and_metadata() -> None:
    a, b = request(8), replace(request(64), node="other", query_id="q2", budgets=())
    assert a.prompt_key == b.prompt_key and a.key != b.key
