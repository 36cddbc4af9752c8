"""Evaluate one benchmark (``evaluate``) and write its results next to its other artifacts (``eval_job``).

``harness`` runs strategies, ``summary`` turns runs into the results payload; this module is the
one that uses both, so neither imports the other's caller.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from flowfront.errors import SpecError
from flowfront.eval.harness import Strategy, load_sets, make_context, plan_strategies, run_all, with_hinted
from flowfront.eval.summary import summarise
from flowfront.settings import Settings
from flowfront.spec import Execution

__all__ = ["eval_job", "evaluate"]


def eval_job(settings: Settings, benchmark: object, **kw: Any) -> tuple[Path, dict]:
    """Run :func:`evaluate` (``kw`` passed on) and write
    ``<workdir>/<benchmark>/eval/results.json`` and ``curves.png``; return the JSON's path and the result."""
    from flowfront.eval.report import plot_curves, write_results

    result = evaluate(settings, benchmark, **kw)
    folder = settings.workspace.benchmark(result["benchmark"]).eval_dir
    path = write_results(result, folder)
    plot_curves(result, folder / "curves.png")
    return path, result


def evaluate(
    settings: Settings,
    benchmark: object,
    *,
    strategies: Sequence[str | Strategy] | None = None,
    seeds: Sequence[int] = (0, 1, 2),
    execution: Execution | None = None,
    latency_budgets: Sequence[float] | None = None,
    n_boot: int = 1000,
    progress: bool = True,
) -> dict:
    """Evaluate strategies on the benchmark's test split; the result is the ``results.json`` payload.

    ``benchmark`` is a built-in name, a path or a loaded ``Benchmark`` (passed to
    ``router.train.load_data`` as is). ``strategies`` defaults to every strategy of
    ``router.registry.STRATEGIES``; ``static``, ``best-single`` and ``oracle`` are always added, and
    ``frontier-hinted`` beside ``frontier`` when the data labels tasks.
    Seeded strategies run once per seed, the others once. ``execution`` defaults to the
    frontier's. See docs/eval.md for every field of the result.
    """
    if not seeds:
        raise SpecError("no seeds given", hint="pass at least one seed, e.g. seeds=(0, 1, 2)")
    started = time.perf_counter()
    plan = plan_strategies(strategies)
    data, sets = load_sets(settings, benchmark, any(s.candidates == "sample" for s in plan),
                           any(s.reads_checkpoints for s in plan))
    plan = with_hinted(plan, sets)
    ctx = make_context(data.frontier, execution, latency_budgets)
    ctx.sets = sets
    load_seconds = time.perf_counter() - started
    runs = run_all(plan, ctx, list(seeds), progress)
    result = summarise(data, ctx, plan, runs, seeds=list(seeds), n_boot=n_boot)
    result["settings"] = {"backend": settings.backend, "data_dir": str(settings.data_dir),
                          "workdir": str(settings.workdir), "configs_dir": str(settings.configs_dir)}
    result["artifacts_dir"] = str(settings.workspace.benchmark(data.bench.name).root)
    result["seconds"] = {"load": load_seconds, "total": time.perf_counter() - started}
    return result
