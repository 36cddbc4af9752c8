"""The executor on a small hand-made trace store: control flow, latency models, budgets, limits."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from flowfront.backends.base import Backend, CallRequest, Completion
from flowfront.backends.replay import ReplayBackend
from flowfront.data import user_messages
from flowfront.errors import BackendError, CallTimeoutError, ReplayMissError
from flowfront.executor import Executor, Query
from flowfront.modelcards import ModelCard
from flowfront.space import Configuration, resolve
from flowfront.spec import Workflow, parse_model
from flowfront.store import Trace, TraceStore, call_key, connect, prompt_key

# Each of answer, check and escalate asks one of three models the query and parses a choice.
_ASK = {"kind": "llm", "messages": [{"role": "user", "content": "{query}"}], "parser": "choice",
        "models": ["a", "b", "c"]}

CASCADE = {
    "name": "mini-cascade",
    "knobs": {"checker": {"values": ["on", "off"], "default": "on"}},
    "nodes": {
        "answer": dict(_ASK),
        "check": dict(_ASK),
        "agree": {"kind": "code", "fn": "agree", "inputs": ["answer", "check"]},
        "escalate": dict(_ASK),
        "final": {"kind": "code", "fn": "coalesce", "inputs": ["escalate", "answer"]},
    },
    "flow": [
        {
            "if": {"knob": "checker", "equals": "on"},
            "then": [
                {"parallel": [["answer"], ["check"]]},
                "agree",
                {"if": {"node": "agree", "equals": False}, "then": ["escalate"]},
            ],
            "else": ["answer"],
        },
        "final",
    ],
    "output": "final",
}
CODE = {
    "name": "mini-code",
    "nodes": {"solve": {"kind": "llm", "messages": [{"role": "user", "content": "{query}"}], "parser": "code",
                        "models": ["a"], "budgets": [8, 24, None]}},
    "flow": ["solve"],
    "output": "solve",
}
# model -> (response, recorded score, recorded latency)
ANSWERS = {
    "q1": {"a": ("A", 1.0, 1.0), "b": ("A", 1.0, 2.0), "c": ("B", 0.0, 4.0)},
    "q2": {"a": ("C", 0.0, 1.0), "b": ("D", 1.0, 2.0), "c": ("D", 1.0, 4.0)},
}
CODE_RESPONSE = (
    "Here you go:\n```python\ndef add(a, b):\n    return a + b\n```\nThis adds two numbers and returns the "
    "sum. It works for ints, floats and anything else with a plus operator defined."
)


def card(name: str) -> ModelCard:
    return ModelCard(
        name=name, litellm_model=f"openai/{name}", input_usd_per_mtok=1.0, output_usd_per_mtok=2.0,
        ttft_s=0.5, prefill_tok_per_s=1000.0, decode_tok_per_s=10.0, max_concurrency=4,
    )


def trace(
    model: str, query: str, response: str, score: float, latency: float | None, cost: float | None = 0.001
) -> Trace:
    msgs = user_messages(query)
    return Trace(
        key=call_key(model, None, msgs, {}), prompt_key=prompt_key(model, msgs, {}), model=model, budget=None,
        request={}, response=response, prompt_tokens=10, completion_tokens=None, latency_s=latency,
        cost_usd=cost, score=score, source="test", query_id=query,
    )


@pytest.fixture
def store(tmp_path: Path) -> TraceStore:
    s = connect(tmp_path / "t.sqlite")
    s.put_many(trace(m, q, *v) for q, by_model in ANSWERS.items() for m, v in by_model.items())
    s.put(trace("a", "code", CODE_RESPONSE, 1.0, None))
    yield s
    s.close()


@pytest.fixture
def cards() -> dict[str, ModelCard]:
    return {m: card(m) for m in "abc"}


def run(wf_data: dict, config: dict, query: str, backend: Backend, **kw):
    wf = parse_model(Workflow, wf_data, "test")
    executor = Executor(wf, backend, **kw)
    return asyncio.run(executor.run(resolve(wf, Configuration.parse(config)), Query(query, query)))


CFG = {
    "knobs": {"checker": "on"},
    "nodes": {"answer": {"model": "a"}, "check": {"model": "b"}, "escalate": {"model": "c"}},
}


def test_cascade_agreement_skips_escalation(store, cards) -> None:
    res = run(CASCADE, CFG, "q1", ReplayBackend(store, cards))
    assert res.answer == "A" and res.value.score == 1.0
    assert [c.node for c in res.calls] == ["answer", "check"]
    assert res.latency_sequential_s == pytest.approx(3.0)  # 1 + 2
    assert res.latency_parallel_s == pytest.approx(2.0)  # answer and check run concurrently
    assert res.cost_usd == pytest.approx(0.002)


def test_cascade_disagreement_escalates(store, cards) -> None:
    res = run(CASCADE, CFG, "q2", ReplayBackend(store, cards))
    assert res.answer == "D" and res.value.score == 1.0
    assert [c.node for c in res.calls][-1] == "escalate"
    assert res.latency_sequential_s == pytest.approx(7.0)
    assert res.latency_parallel_s == pytest.approx(6.0)  # max(1, 2) + 4


def test_checker_off_runs_one_call(store, cards) -> None:
    res = run(
        CASCADE,
        {"knobs": {"checker": "off"}, "nodes": {"answer": {"model": "a"}}},
        "q2",
        ReplayBackend(store, cards),
    )
    assert len(res.calls) == 1 and res.value.score == 0.0


def test_an_identical_call_in_a_run_is_made_once(store, cards) -> None:
    """Answer and check by one model on one prompt: the check is the answer's call, so the run
    realises exactly what the answer alone does (same answer, latency and cost), not twice the cost."""

    class Counting(ReplayBackend):
        made = 0

        async def complete(self, request, **kw):
            Counting.made += 1
            return await super().complete(request, **kw)

    alone = {"knobs": {"checker": "off"}, "nodes": {"answer": {"model": "a"}}}
    twice = {"knobs": {"checker": "on"}, "nodes": {"answer": {"model": "a"}, "check": {"model": "a"},
                                                   "escalate": {"model": "c"}}}
    for q in ANSWERS:
        Counting.made = 0
        one, both = (
            run(CASCADE, alone, q, Counting(store, cards)),
            run(CASCADE, twice, q, Counting(store, cards)),
        )
        assert Counting.made == 2  # one call for each run: the check reused the answer's
        assert (both.answer, both.value.score) == (one.answer, one.value.score)
        assert both.cost_usd == one.cost_usd and both.latency_parallel_s == one.latency_parallel_s
        assert both.latency_sequential_s == one.latency_sequential_s
        check = next(c for c in both.calls if c.node == "check")
        assert check.cached and check.cost_usd == 0.0 and check.completion_tokens == 0


def test_a_repeated_escalation_costs_nothing_and_keeps_the_answer(store, cards) -> None:
    cfg = {"knobs": {"checker": "on"}, "nodes": {"answer": {"model": "a"}, "check": {"model": "b"},
                                                 "escalate": {"model": "a"}}}
    res = run(CASCADE, cfg, "q2", ReplayBackend(store, cards))  # a and b disagree on q2
    assert [c.node for c in res.calls] == ["answer", "check", "escalate"] and res.answer == "C"
    assert res.calls[-1].cost_usd == 0.0 and res.latency_parallel_s == pytest.approx(2.0)


def test_a_failed_call_fails_its_repeat_too() -> None:
    wf = parse_model(Workflow, CASCADE, "test")

    class Failing(Backend):
        calls = 0

        async def complete(self, request: CallRequest) -> Completion:
            Failing.calls += 1
            await asyncio.sleep(0.01)
            raise BackendError("provider down", model=request.model)

    cfg = {"knobs": {"checker": "on"}, "nodes": {"answer": {"model": "a"}, "check": {"model": "a"},
                                                 "escalate": {"model": "c"}}}
    res = asyncio.run(Executor(wf, Failing()).run(resolve(wf, Configuration.parse(cfg)), Query("q", "q")))
    assert Failing.calls == 1 and res.error == "provider down" and res.failed_model == "a"


def test_budget_cut_keeps_grade_only_when_code_is_complete(store, cards) -> None:
    backend = ReplayBackend(store, cards)
    cut = run(CODE, {"nodes": {"solve": {"model": "a", "budget": 8}}}, "code", backend)
    assert cut.calls[0].truncated and cut.calls[0].completion_tokens == 8
    assert cut.answer is None and cut.value.score == 0.0  # cut inside the code block
    enough = run(CODE, {"nodes": {"solve": {"model": "a", "budget": 24}}}, "code", backend)
    assert enough.calls[0].truncated and "return a + b" in enough.answer
    assert enough.value.score == 1.0  # same code as the full response, so the recorded grade holds
    full = run(CODE, {"nodes": {"solve": {"model": "a"}}}, "code", backend)
    assert not full.calls[0].truncated and full.calls[0].completion_tokens > 24
    # modeled latency: ttft + prompt/prefill + output/decode; cut calls are cheaper and faster
    assert cut.calls[0].latency_s == pytest.approx(0.5 + 10 / 1000 + 8 / 10)
    assert cut.calls[0].latency_source == "modeled"
    assert cut.cost_usd < enough.cost_usd < full.cost_usd == pytest.approx(0.001)


def test_missing_record_names_model_and_prompt_key(store, cards) -> None:
    res = run(CASCADE, CFG, "never recorded", ReplayBackend(store, cards))
    assert res.error is not None and "'a'" in res.error and "prompt key" in res.error
    with pytest.raises(ReplayMissError):
        ReplayBackend(store, cards).answer(CallRequest("a", user_messages("never recorded")))


class _Slow(Backend):
    """Counts concurrent calls per model and sleeps, to observe limits and timeouts."""

    def __init__(self, delay: float) -> None:
        self.delay, self.active, self.peak = delay, 0, 0

    async def complete(self, request: CallRequest) -> Completion:
        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            await asyncio.sleep(self.delay)
        finally:
            self.active -= 1
        return Completion("A", 1, 1, self.delay, 0.0, "measured")


def test_per_model_concurrency_limit_and_timeout() -> None:
    wf = parse_model(Workflow, CASCADE, "test")
    slow = _Slow(0.02)
    executor = Executor(wf, slow, concurrency=2)
    resolved = resolve(
        wf, Configuration.parse({"knobs": {"checker": "off"}, "nodes": {"answer": {"model": "a"}}})
    )
    results = asyncio.run(executor.run_batch(resolved, [Query(str(i), "x") for i in range(10)]))
    assert all(r.error is None for r in results)
    assert slow.peak == 2
    hung = Executor(wf, _Slow(5.0), timeout_s=0.05)
    res = asyncio.run(hung.run(resolved, Query("q", "x")))
    assert res.error is not None and "timed out" in res.error
    assert isinstance(CallTimeoutError("a", 1.0).retryable, bool) and CallTimeoutError("a", 1.0).retryable
