"""The ``profile``, ``compile`` and ``validate`` jobs: artifacts in, artifacts out.

Each job reads what the previous stage wrote under ``<workdir>/<benchmark>/`` and writes a new
artifact next to it; ``compile`` never modifies the profiles it reads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from compile.artifact import Candidate, Estimates, Frontier, Profiles, load, package_versions, save
from flowfront.benchmarks import Benchmark, load_benchmark
from flowfront.errors import CompileError
from flowfront.runtime import benchmark_queries, load_cards, make_backend, open_store, prepare_data
from flowfront.settings import Settings
from flowfront.space import Configuration


def artifact_dir(settings: Settings, bench: Benchmark) -> Path:
    return settings.workdir / bench.name


def profile_job(
    settings: Settings, benchmark: str | Benchmark, *, max_queries: int | None = None, seed: int = 0,
    reference: Configuration | None = None, backend: str | None = None, progress: bool = True,
    api_base: str | None = None, judge: bool = False,
) -> Path:
    from compile.profile import Judge, run_profile

    bench = load_benchmark(benchmark, settings.configs_dir)
    with open_store(settings) as store:
        data = prepare_data(bench, store, settings)
        queries = benchmark_queries(bench, store, data, "train")
        name = backend or ("litellm" if bench.spec.backend == "litellm" else settings.backend)
        be = make_backend(name, store, load_cards(settings), settings, models=bench.workflow.all_models(),
                          api_base=api_base)
        profiles = run_profile(
            bench, be, queries, reference=reference or bench.default_config, data_source=data.source,
            data_hash=str(data.summary.get("data_hash", data.source)), max_queries=max_queries, seed=seed,
            concurrency=settings.default_concurrency, show_progress=progress,
            judge=Judge.load(settings.configs_dir / "judge.yaml") if judge else None,
        )
    return save(profiles, artifact_dir(settings, bench) / "profiles.json")


def compile_job(
    settings: Settings, benchmark: str | Benchmark, *, objective: str = "latency", execution: str = "parallel",
    mode: str = "correlated", models: list[str] | None = None, max_budget: int | None = None,
    knobs: dict[str, list[Any]] | None = None, seed: int = 0, out_name: str = "frontier",
    near_front: float = 0.0, max_candidates: int = 24,
) -> tuple[Path, Frontier]:
    """Search the proxy frontier and write it. ``near_front`` > 0 adds configurations within that
    much accuracy of the front at their most favourable trade-off (``compile.search.near_front``),
    fewest regret first, while the frontier has fewer than ``max_candidates``; train CV chose
    ``compile.search.NEAR_FRONT`` for routing (docs/router.md). 0 keeps the strict Pareto front."""
    from compile.plots import plot_frontier
    from compile.proxy import Proxy
    from compile.search import near_front as widen
    from compile.search import search

    if near_front < 0 or max_candidates < 1:
        raise CompileError(f"near_front={near_front} and max_candidates={max_candidates} are out of range",
                           hint="use near_front >= 0 (accuracy points, e.g. 0.05) and max_candidates >= 1")
    bench = load_benchmark(benchmark, settings.configs_dir)
    folder = artifact_dir(settings, bench)
    profiles = load(Profiles, folder / "profiles.json", expect_workflow_hash=bench.workflow.content_hash)
    _check_models(bench, models)
    proxy = Proxy(bench.workflow, profiles, mode=mode, models=models, max_budget=max_budget, knobs=knobs)
    result = search(proxy, objective=objective, execution=execution, seed=seed)
    if near_front > 0:
        extra = widen(proxy, result.points, epsilon=near_front, max_size=max_candidates, objective=objective,
                      execution=execution, seed=seed)
        result.points = sorted(result.points + extra,
                               key=lambda pt: (pt.estimates["latency_sequential_s"], -pt.estimates["accuracy"]))
        result.method += f"+near-front({len(extra)})" if extra else ""
    candidates = [
        Candidate(id=f"c{i}", config=proxy.config(pt.structure, pt.digits), estimates=Estimates(**pt.estimates))
        for i, pt in enumerate(result.points)
    ]
    frontier = Frontier(
        workflow=bench.workflow.name, workflow_hash=bench.workflow.content_hash, profiles_hash=profiles.content_hash(),
        benchmark=bench.name, objective=objective, execution=execution, proxy_mode=mode, method=result.method,
        filters={"models": models, "max_budget": max_budget, "knobs": knobs, "near_front": near_front,
                 "max_candidates": max_candidates}, space_size=result.space_size,
        n_evaluated=result.n_evaluated, search_seconds=result.seconds, candidates=candidates,
        packages=package_versions(),
    )
    path = save(frontier, folder / f"{out_name}.json")
    x_key = "cost_usd" if objective == "cost" else f"latency_{execution}_s"
    plot_frontier(result.sample, [c.estimates.model_dump() for c in candidates], x_key, folder / f"{out_name}.png",
                  f"{bench.name}: {len(candidates)} of {result.space_size:,} configurations ({mode} proxy)")
    return path, frontier


def _check_models(bench: Benchmark, models: list[str] | None) -> None:
    if models is None:
        return
    known = set(bench.workflow.all_models())
    unknown = [m for m in models if m not in known]
    if unknown:
        raise CompileError(f"--models names unknown model {unknown[0]!r}", hint=f"models of {bench.name}: {sorted(known)}")
