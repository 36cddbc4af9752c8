"""No frontier candidate is tied with another on accuracy and latency yet dearer (a property over the
built-in benchmarks), and the strict Pareto front holds no dominated candidate."""

from __future__ import annotations

import itertools

import pytest

from flowfront.benchmarks import load_benchmark
from flowfront.compile.artifact import Profiles
from flowfront.compile.jobs import compile_frontier


@pytest.fixture(scope="module")
def profiled(compiled_settings, tmp_path_factory):
    """The session's qa-cascade and code-budget profiles, and model-route profiled here (only these
    tests need it, so it is not built for every fast run)."""
    from flowfront.compile.jobs import profile_job
    from tests.helpers import writable_copy

    settings = writable_copy(compiled_settings, tmp_path_factory.mktemp("twins"), "qa-cascade", "code-budget")
    profile_job(settings, "model-route", progress=False)
    return settings


@pytest.mark.parametrize(
    "name", ["qa-cascade", pytest.param("model-route", marks=pytest.mark.slow), "code-budget"]
)
@pytest.mark.parametrize("near_front", [0.0, 0.2])
def test_no_candidate_is_a_dearer_twin(request, name: str, near_front: float) -> None:
    settings = request.getfixturevalue("profiled" if name == "model-route" else "compiled_settings")
    bench = load_benchmark(name, settings.configs_dir)
    profiles = Profiles.load(settings.workspace.benchmark(name).profiles)
    frontier, _ = compile_frontier(bench, profiles, mode="correlated", near_front=near_front)
    est = [c.estimates for c in frontier.candidates]
    for a, b in itertools.permutations(est, 2):
        same = (a.accuracy, a.latency_sequential_s, a.latency_parallel_s) == (
            b.accuracy,
            b.latency_sequential_s,
            b.latency_parallel_s,
        )
        assert not (same and a.cost_usd > b.cost_usd), (a, b)
    if near_front == 0.0:  # the strict front: nothing dominated on accuracy x latency
        for a, b in itertools.permutations(est, 2):
            dominated = (b.accuracy >= a.accuracy and b.latency_parallel_s <= a.latency_parallel_s
                         and (b.accuracy > a.accuracy or b.latency_parallel_s < a.latency_parallel_s))
            assert not dominated, (a, b)


def test_no_two_candidates_realise_the_same_run(compiled_settings) -> None:
    """Executed on the test split (replay), no two qa-cascade candidates give the same answers at
    the same latency: a check by the answering model is the answer's call, so it is the answer
    alone and the twin filter removes it, rather than a candidate that realises another's run at
    up to twice its cost."""
    import numpy as np

    from flowfront.compile.artifact import Frontier
    from flowfront.runtime import (
        benchmark_queries,
        execute,
        load_cards,
        make_backend,
        open_store,
        prepare_data,
    )
    from flowfront.space import Configuration

    settings = compiled_settings
    bench = load_benchmark("qa-cascade", settings.configs_dir)
    frontier = Frontier.load(settings.workspace.benchmark("qa-cascade").frontier())
    with open_store(settings) as store:
        queries = benchmark_queries(bench, store, prepare_data(bench, store, settings), "test")
        backend = make_backend(
            "replay", store, load_cards(settings), settings, models=bench.workflow.all_models()
        )
        runs = {c.id: execute(bench, Configuration.parse(c.config), queries, backend, settings)
                for c in frontier.candidates}
    realised = {
        cid: (
            tuple(np.round(out.scores, 9)),
            round(sum(r.latency_parallel_s for r in out.results), 6),
            sum(r.cost_usd for r in out.results),
        )
        for cid, out in runs.items()
    }
    for (a, ra), (b, rb) in itertools.combinations(realised.items(), 2):
        assert ra[:2] != rb[:2], f"{a} and {b} realise the same run (costs {ra[2]:.4f} and {rb[2]:.4f})"
