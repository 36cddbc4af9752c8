"""Profiling on a live path: calls carry no recorded grade, so the LLM judge of configs/judge.yaml
decides, through the same backend (a scripted provider standing in for a real one)."""

from __future__ import annotations

import re

import pytest

from flowfront.backends.base import Backend, CallRequest, Completion
from flowfront.benchmarks import load_benchmark
from flowfront.compile.profile import Judge, run_profile
from flowfront.parsers import extract_number
from flowfront.runtime import benchmark_queries, open_store, prepare_data
from flowfront.space import Configuration


class Scripted(Backend):
    """gpt-4o solves everything; gpt-4o-mini misses every other problem; the judge compares numbers."""

    def __init__(self, answers: dict[str, str]) -> None:
        self.answers, self.judged = answers, 0

    async def complete(self, request: CallRequest) -> Completion:
        last = request.messages[-1]["content"]
        if "Reference output:" in last:
            self.judged += 1
            ref = re.search(r"Reference output:\n(.*)\n", last).group(1).strip()
            cand = re.findall(r"#### (\S+)", last.split("Candidate output:")[1])
            return self._done("YES" if cand and extract_number(cand[-1]) == extract_number(ref) else "NO")
        problem = next(p for p in self.answers if p in last)
        truth = self.answers[problem]
        index = list(self.answers).index(problem)
        if "Check every step" in last:
            doubtful = request.model == "openai/gpt-4o-mini" and index % 3 == 0  # so refine runs too
            return self._done(
                "VERDICT: CORRECT" if f"#### {truth}" in last and not doubtful else "VERDICT: INCORRECT"
            )
        wrong = request.model == "openai/gpt-4o-mini" and index % 2 == 1 and not last.startswith("Problem:")
        return self._done(f"Working.\n#### {int(extract_number(truth)) + 1 if wrong else truth}")

    @staticmethod
    def _done(text: str) -> Completion:
        return Completion(text, 40, 8, 0.2, 1e-5, "measured")


def test_judge_grades_live_calls(settings) -> None:
    bench = load_benchmark("gsm8k-verify", settings.configs_dir)
    with open_store(settings) as store:
        queries = benchmark_queries(bench, store, prepare_data(bench, store, settings), "train")[:8]
    provider = Scripted({q.text: q.reference for q in queries})
    reference = Configuration.parse(
        {
            "knobs": {"rounds": 1},
            "nodes": {
                "solve": {"model": "openai/gpt-4o", "budget": 1024},
                "verify": {"model": "openai/gpt-4o-mini", "budget": 256},
                "refine": {"model": "openai/gpt-4o", "budget": 1024},
            },
        }
    )
    profiles = run_profile(bench, provider, queries, reference=reference, data_source="q", data_hash="q",
                           judge=Judge.load(settings.configs_dir / "judge.yaml"))
    assert provider.judged > 0
    solve = {(c.model, c.budget): c.accuracy for c in profiles.nodes["solve"].choices}
    assert solve[("openai/gpt-4o", 1024)] == 1.0
    assert solve[("openai/gpt-4o-mini", 1024)] == pytest.approx(0.5)
