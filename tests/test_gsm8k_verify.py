"""gsm8k-verify (solve -> verify -> refine) on the litellm backend against `replay-serve`.

The test records its own small fixture: a scripted provider answers the workflow's calls once (a
wrong first solution on one question, so the verify/refine loop matters), the calls become
traces in a fresh store, and replay-serve answers the real run over loopback HTTP.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest

from flowfront.backends.base import Backend, CallRequest, Completion
from flowfront.benchmarks import load_benchmark
from flowfront.executor import Executor
from flowfront.runtime import benchmark_queries, open_store, prepare_data
from flowfront.space import resolve
from flowfront.store import Trace, call_key, connect, prompt_key
from tests.helpers import cli_env, flowfront, replay_server

# the slow tier: it starts subprocesses or servers (make test-fast leaves it out)
pytestmark = pytest.mark.slow

N = 4
WRONG_FIRST = 1  # index of the question whose first solution is wrong


class ScriptedProvider(Backend):
    """Solves from the reference answers; records every request it answers."""

    def __init__(self, answers: dict[str, str], wrong: str) -> None:
        self.answers, self.wrong, self.seen = answers, wrong, []

    async def complete(self, request: CallRequest) -> Completion:
        problem = next(p for p in self.answers if p in request.messages[-1]["content"])
        truth = self.answers[problem]
        last = request.messages[-1]["content"]
        if last.startswith("Problem:") and "Check every step" in last:
            ok = f"#### {truth}" in last
            text = (
                f"Step by step it {'holds' if ok else 'fails'}.\nVERDICT: {'CORRECT' if ok else 'INCORRECT'}"
            )
        elif last.startswith("Problem:"):
            text = f"Recomputing carefully.\n#### {truth}"
        else:
            text = f"Working it out.\n#### {int(truth) + 1 if problem == self.wrong else truth}"
        self.seen.append((request, text))
        return Completion(text, 50, 10, 0.1, 0.0, "measured")


@pytest.fixture
def recorded(settings, tmp_path: Path):
    bench = load_benchmark("gsm8k-verify", settings.configs_dir)
    with open_store(settings) as store:
        queries = benchmark_queries(bench, store, prepare_data(bench, store, settings), "test")[:N]
    provider = ScriptedProvider({q.text: q.reference for q in queries}, queries[WRONG_FIRST].text)
    for rounds in (0, 1):
        config = bench.default_config.model_copy(update={"knobs": {"rounds": rounds}})
        executor = Executor(bench.workflow, provider)
        asyncio.run(executor.run_batch(resolve(bench.workflow, config), queries))
    fixture = tmp_path / "fixture"
    with connect(fixture / "traces.sqlite") as store:
        store.put_many(
            Trace(
                key=call_key(r.model, None, r.messages, r.sampling),
                prompt_key=prompt_key(r.model, r.messages, r.sampling),
                model=r.model,
                budget=None,
                request={"messages": list(r.messages)},
                response=text,
                prompt_tokens=50,
                completion_tokens=10,
                latency_s=0.1,
                cost_usd=1e-4,
                source="fixture",
            )
            for r, text in provider.seen
        )
    return fixture


@pytest.mark.parametrize(("rounds", "accuracy"), [(0, (N - 1) / N), (1, 1.0)])
def test_verify_refine_loop_over_http(settings, recorded: Path, rounds: int, accuracy: float) -> None:
    config = {
        "knobs": {"rounds": rounds},
        "nodes": {"solve": {"model": "openai/gpt-4o-mini", "budget": 1024},
                  "verify": {"model": "openai/gpt-4o-mini", "budget": 256},
                  "refine": {"model": "openai/gpt-4o", "budget": 1024}},
    }
    with replay_server(recorded) as url:
        proc = flowfront(
            "exec", "gsm8k-verify", "--api-base", f"{url}/v1", "--limit", str(N), "--json",
            "--config", orjson.dumps(config).decode(), "--workdir", str(settings.workdir), env=cli_env(),
        )
    assert proc.returncode == 0, proc.stderr
    out = orjson.loads(proc.stdout)
    assert out["n"] == N
    assert out["accuracy"] == pytest.approx(accuracy)
