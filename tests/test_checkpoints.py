"""Checkpoints and switching in the executor, on replayed data of the three workflow families.

A run that switches at a checkpoint must be indistinguishable from a run of the configuration it
switched to (answer, modeled latency both ways, cost, calls), and the executor's compatibility
walk must agree with what each configuration's own run shows: compatible exactly when it reached
the same checkpoint having made the same calls.
"""

from __future__ import annotations

import asyncio
import random

import pytest

from flowfront.benchmarks import load_benchmark
from flowfront.errors import SpecError
from flowfront.executor import Executor
from flowfront.runtime import benchmark_backend, benchmark_queries, open_store, prepare_data
from flowfront.space import Configuration, all_configurations, resolve
from flowfront.spec import Workflow, parse_model
from tests.helpers import CONFIGS

_MODELS = ("mistralai/mixtral-8x7b-chat", "gpt-3.5-turbo-1106", "zero-one-ai/Yi-34B-Chat")


def _configs(bench) -> list[Configuration]:
    if bench.name == "qa-cascade":  # a corner of a large space where answer, check and escalate vary
        out = [
            Configuration.parse({"knobs": {"checker": "off"}, "nodes": {"answer": {"model": m}}})
            for m in _MODELS[:2]
        ]
        for a in _MODELS[:2]:
            for c in _MODELS[::2]:
                for e in ("gpt-4-1106-preview", "mistralai/mistral-7b-chat"):
                    nodes = {"answer": {"model": a}, "check": {"model": c}, "escalate": {"model": e}}
                    out.append(Configuration.parse({"knobs": {"checker": "on"}, "nodes": nodes}))
        return out
    every = all_configurations(bench.workflow)
    return random.Random(0).sample(every, 12)


@pytest.mark.parametrize(
    "name", ["qa-cascade", "live-math", pytest.param("live-code", marks=pytest.mark.slow)]
)
def test_a_switched_run_is_the_run_it_switched_to(name: str, imported_settings) -> None:
    settings = imported_settings
    bench = load_benchmark(name, settings.configs_dir)
    wf = bench.workflow
    with open_store(settings) as store:
        queries = benchmark_queries(bench, store, prepare_data(bench, store, settings), "test")[:6]
        executor = Executor(wf, benchmark_backend(bench, store, settings))
        resolved = [resolve(wf, c) for c in _configs(bench)]
        asyncio.run(_check(executor, resolved, queries))


async def _check(executor: Executor, resolved: list, queries: list) -> None:
    switches = walks = 0
    for q in queries:
        # Each configuration's own run: the calls made at each checkpoint it reached.
        own: list[dict[str, frozenset[str]]] = []
        for r in resolved:
            seen: dict[str, frozenset[str]] = {}

            async def note(point, seen=seen) -> None:
                seen[point.id] = point.keys

            await executor.run(r, q, checkpoint=note)
            own.append(seen)
        for start in resolved:

            async def hook(point, own=own):
                nonlocal walks
                walked = [await point.compatible(r) for r in resolved]
                shown = [own[j].get(point.id) == point.keys for j in range(len(resolved))]
                assert walked == shown, (point.id, walked, shown)
                walks += len(resolved)
                others = [j for j, ok in enumerate(walked) if ok and resolved[j] is not point.resolved]
                return resolved[others[-1]] if others else None

            run = await executor.run(start, q, checkpoint=hook)
            assert run.error is None
            if not run.switches:
                continue
            switches += 1
            assert run.switches[0].before is start and run.final is run.switches[-1].after
            plain = await executor.run(run.final, q)
            assert (run.answer, len(run.calls)) == (plain.answer, len(plain.calls))
            assert run.cost_usd == pytest.approx(plain.cost_usd, abs=1e-12)
            assert run.latency_sequential_s == pytest.approx(plain.latency_sequential_s, abs=1e-9)
            assert run.latency_parallel_s == pytest.approx(plain.latency_parallel_s, abs=1e-9)
    assert switches > 0 and walks > 0


def test_checkpoints_are_derived_declared_or_refused() -> None:
    from flowfront.spec import load_workflow

    configs = CONFIGS
    assert load_workflow(configs / "workflows" / "qa-cascade.yaml").checkpoint_nodes() == ("agree",)
    assert load_workflow(configs / "workflows" / "live-math.yaml").checkpoint_nodes() == ("current", "verify")
    assert load_workflow(configs / "workflows" / "qa-vote.yaml").checkpoint_nodes() == ()
    raw = load_workflow(configs / "workflows" / "qa-cascade.yaml").model_dump(by_alias=True)
    with pytest.raises(SpecError, match="parallel"):
        parse_model(Workflow, {**raw, "checkpoints": ["answer"]}, "w.yaml")
    with pytest.raises(SpecError, match="unknown node"):
        parse_model(Workflow, {**raw, "checkpoints": ["nope"]}, "w.yaml")
    declared = parse_model(Workflow, {**raw, "checkpoints": []}, "w.yaml")
    assert declared.checkpoint_nodes() == ()
    assert declared.content_hash == load_workflow(configs / "workflows" / "qa-cascade.yaml").content_hash


def test_an_answer_is_not_streamed_from_a_call_a_switch_could_replace(imported_settings) -> None:
    """model-route's one raw call streams; declared a checkpoint, it does not stream under a hook
    (a switch after it could change the answer), and still streams without one."""
    settings = imported_settings
    bench = load_benchmark("model-route", settings.configs_dir)
    raw = bench.workflow.model_dump(by_alias=True)
    wf = parse_model(Workflow, {**raw, "checkpoints": ["answer"]}, "model-route.yaml")
    opened: list[str] = []

    class Sink:
        def opened(self, node: str, model: str):
            opened.append(node)
            return lambda text: None

    async def never(point) -> None:
        return None

    with open_store(settings) as store:
        q = benchmark_queries(bench, store, prepare_data(bench, store, settings), "test")[0]
        executor = Executor(wf, benchmark_backend(bench, store, settings))
        resolved = resolve(wf, bench.default_config)
        hooked = asyncio.run(executor.run(resolved, q, stream=Sink(), checkpoint=never))
        assert opened == [] and hooked.error is None
        plain = asyncio.run(executor.run(resolved, q, stream=Sink()))
    assert opened == ["answer"] and plain.answer == hooked.answer
