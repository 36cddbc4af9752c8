"""The ``profile``, ``compile`` and ``validate`` jobs: artifacts in, artifacts out.

Each job reads what the previous stage wrote under ``<workdir>/<benchmark>/`` and writes a new
artifact next to it; ``compile`` never modifies the profiles it reads.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from flowfront.artifacts import Provenance
from flowfront.benchmarks import Benchmark, load_benchmark
from flowfront.compile.artifact import Candidate, Estimates, Frontier, Profiles
from flowfront.errors import CompileError
from flowfront.runtime import (
    backend_name,
    benchmark_queries,
    load_cards,
    make_backend,
    open_store,
    prepare_data,
)
from flowfront.settings import Settings
from flowfront.space import Configuration
from flowfront.spec import Execution

if TYPE_CHECKING:
    from flowfront.compile.proxy import Proxy


def artifact_dir(settings: Settings, bench: Benchmark) -> Path:
    return settings.workspace.benchmark(bench.name).root


def profile_job(
    settings: Settings, benchmark: str | Benchmark, *, max_queries: int | None = None, seed: int = 0,
    reference: Configuration | None = None, backend: str | None = None, progress: bool = True,
    api_base: str | None = None, judge: bool = False,
) -> Path:
    from flowfront.compile.profile import Judge, run_profile

    bench = load_benchmark(benchmark, settings.configs_dir, own_dir=settings.workspace.own)
    with open_store(settings) as store:
        name = backend or backend_name(bench, settings)
        data = prepare_data(bench, store, settings, live=name == "litellm")
        queries = benchmark_queries(bench, store, data, "train")
        be = make_backend(name, store, load_cards(settings), settings, models=bench.workflow.all_models(),
                          api_base=api_base)
        profiles = run_profile(
            bench, be, queries, reference=reference or bench.default_config, data_source=data.source,
            data_hash=str(data.summary.get("data_hash", data.source)), max_queries=max_queries, seed=seed,
            concurrency=settings.default_concurrency, show_progress=progress,
            judge=Judge.load(settings.configs_dir / "judge.yaml") if judge else None,
        )
    return profiles.save(settings.workspace.benchmark(bench.name).profiles)


def compile_frontier(
    bench: Benchmark, profiles: Profiles, *, objective: str = "latency", execution: Execution = "parallel",
    mode: str = "correlated", models: list[str] | None = None, max_budget: int | None = None,
    knobs: dict[str, list[Any]] | None = None, seed: int = 0, near_front: float | None = None,
    max_candidates: int | None = None,
) -> tuple[Frontier, Any]:
    """Search the design space on the proxy and return a new :class:`Frontier` (and the search's
    sample of evaluated points, for plots). Pure: reads nothing from disk, leaves ``profiles`` as
    they are. ``near_front`` > 0 adds configurations within that much accuracy of the front at
    their most favourable trade-off (``compile.search.near_front``), fewest regret first, while
    the frontier has fewer than ``max_candidates``; 0 keeps the strict Pareto front. Both default
    to ``compile.search.NEAR_FRONT`` / ``MAX_CANDIDATES``: the one default every entry point uses.

    >>> # frontier, _ = compile_frontier(load_benchmark("qa-cascade"), profiles, near_front=0.2)
    """
    from flowfront.compile.proxy import Proxy
    from flowfront.compile.search import MAX_CANDIDATES, NEAR_FRONT, search
    from flowfront.compile.search import near_front as widen

    near_front = NEAR_FRONT if near_front is None else near_front
    max_candidates = MAX_CANDIDATES if max_candidates is None else max_candidates

    if near_front < 0 or max_candidates < 1:
        raise CompileError(f"near_front={near_front} and max_candidates={max_candidates} are out of range",
                           hint="use near_front >= 0 (accuracy points, e.g. 0.05) and max_candidates >= 1")
    _check_models(bench, models)
    proxy = Proxy(bench.workflow, profiles, mode=mode, models=models, max_budget=max_budget, knobs=knobs)
    result = search(proxy, objective=objective, execution=execution, seed=seed)
    if near_front > 0:
        extra = widen(proxy, result.points, epsilon=near_front, max_size=max_candidates, objective=objective,
                      execution=execution, seed=seed)
        result.points = sorted(
            result.points + extra,
            key=lambda pt: (pt.estimates["latency_sequential_s"], -pt.estimates["accuracy"]),
        )
        result.method += f"+near-front({len(extra)})" if extra else ""
    points = _without_twins(proxy, result.points)
    candidates = [
        Candidate(
            id=f"c{i}", config=proxy.config(pt.structure, pt.digits), estimates=Estimates(**pt.estimates)
        )
        for i, pt in enumerate(points)
    ]
    frontier = Frontier(
        workflow=bench.workflow.name,
        provenance=Provenance(workflow_hash=bench.workflow.content_hash, data_hash=profiles.content_hash()),
        benchmark=bench.name, objective=objective, execution=execution, proxy_mode=mode, method=result.method,
        filters={"models": models, "max_budget": max_budget, "knobs": knobs, "near_front": near_front,
                 "max_candidates": max_candidates}, space_size=result.space_size,
        n_evaluated=result.n_evaluated, search_seconds=result.seconds, candidates=candidates,
    )
    return frontier, result.sample


def _without_twins(proxy: Proxy, points: list) -> list:
    """Drop configurations that behave like a cheaper one: the same likely calls (a check by the
    answering model is the answer's own call; an escalation expected on fewer than two profiled
    queries is not a likely call) and estimates within what the profiles can tell apart (one
    profiled query of accuracy, 2% of latency). Of each such group the cheapest stays (ties: the
    fewest slots, then the first)."""
    resolution = 1.0 / max(1, proxy.profiles.n_queries)
    order = sorted(range(len(points)), key=lambda i: (points[i].estimates["cost_usd"],
                                                      len(points[i].structure.slots), i))
    kept: list[tuple[tuple, dict]] = []
    chosen = set()
    for i in order:
        pt = points[i]
        calls, e = proxy.likely_calls(pt.structure, pt.digits), pt.estimates
        if any(calls == c and _indistinct(e, k, resolution) for c, k in kept):
            continue
        kept.append((calls, e))
        chosen.add(i)
    return [pt for i, pt in enumerate(points) if i in chosen]


def _indistinct(a: dict, b: dict, resolution: float) -> bool:
    lat = ("latency_sequential_s", "latency_parallel_s")
    return (abs(a["accuracy"] - b["accuracy"]) <= resolution + 1e-12
            and all(abs(a[k] - b[k]) <= 0.02 * max(abs(a[k]), abs(b[k])) + 1e-12 for k in lat))


def frontier_name(
    *,
    objective: str = "latency",
    models: list[str] | None = None,
    max_budget: int | None = None,
    knobs: dict | None = None,
    near_front: float | None = None,
    max_candidates: int | None = None,
) -> str:
    """``frontier`` for the default search (the one `run`, `train` and `serve` use); a compile with
    other filters or widening writes beside it, never over it."""
    from flowfront.compile.search import MAX_CANDIDATES, NEAR_FRONT

    filters = {"objective": objective, "models": models, "max_budget": max_budget, "knobs": knobs,
               "near_front": NEAR_FRONT if near_front is None else near_front,
               "max_candidates": MAX_CANDIDATES if max_candidates is None else max_candidates}
    if filters == {"objective": "latency", "models": None, "max_budget": None, "knobs": None,
                   "near_front": NEAR_FRONT, "max_candidates": MAX_CANDIDATES}:
        return "frontier"
    digest = hashlib.sha256(orjson.dumps(filters, option=orjson.OPT_SORT_KEYS)).hexdigest()[:8]
    return f"frontier-{digest}"


def compile_job(
    settings: Settings,
    benchmark: str | Benchmark,
    *,
    objective: str = "latency",
    execution: Execution = "parallel",
    mode: str = "correlated",
    models: list[str] | None = None,
    max_budget: int | None = None,
    knobs: dict[str, list[Any]] | None = None,
    seed: int = 0,
    out_name: str = "frontier",
    near_front: float | None = None,
    max_candidates: int | None = None,
) -> tuple[Path, Frontier]:
    """Load the profiles, compile (:func:`compile_frontier`), write ``<out_name>.json`` + ``.png``."""
    from flowfront.compile.plots import plot_frontier

    bench = load_benchmark(benchmark, settings.configs_dir, own_dir=settings.workspace.own)
    folder = artifact_dir(settings, bench)
    profiles = Profiles.load(
        settings.workspace.benchmark(bench.name).profiles, expect_workflow_hash=bench.workflow.content_hash
    )
    frontier, sample = compile_frontier(bench, profiles, objective=objective, execution=execution, mode=mode,
                                        models=models, max_budget=max_budget, knobs=knobs, seed=seed,
                                        near_front=near_front, max_candidates=max_candidates)
    name = out_name
    path = frontier.save(folder / f"{name}.json")
    x_key = "cost_usd" if objective == "cost" else f"latency_{execution}_s"
    plot_frontier(
        sample,
        [c.estimates.model_dump() for c in frontier.candidates],
        x_key,
        folder / f"{name}.png",
        f"{bench.name}: {len(frontier.candidates)} of {frontier.space_size:,} configurations ({mode} proxy)",
    )
    return path, frontier


def _check_models(bench: Benchmark, models: list[str] | None) -> None:
    if models is None:
        return
    known = set(bench.workflow.all_models())
    unknown = [m for m in models if m not in known]
    if unknown:
        raise CompileError(
            f"--models names unknown model {unknown[0]!r}", hint=f"models of {bench.name}: {sorted(known)}"
        )
