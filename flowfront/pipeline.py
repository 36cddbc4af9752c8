"""``flowfront run``: the main job, end to end on the default built-in benchmarks.

Per benchmark: import the recorded data, profile every node choice on the train split, compile the
frontier on the proxy, validate the proxy against execution on the test split, and execute the
benchmark's reference configuration for comparison. Router training and the full evaluation join
this chain as they land (see the issues); each stage writes its artifact under the workdir.
"""

from __future__ import annotations

import time

from rich.console import Console
from rich.table import Table

from flowfront.settings import Settings

DEFAULT_BENCHMARKS = ("qa-cascade", "model-route")


def _stage(console: Console, timings: dict, name: str, fn, *args, **kwargs):
    started = time.perf_counter()
    console.print(f"  {name} ...")
    out = fn(*args, **kwargs)
    timings[name] = round(time.perf_counter() - started, 2)
    return out


def run_benchmark(settings: Settings, name: str, console: Console) -> dict:
    from compile.jobs import compile_job, profile_job
    from compile.validate import validate_job
    from flowfront.benchmarks import load_benchmark
    from flowfront.runtime import (
        benchmark_queries,
        execute,
        load_cards,
        make_backend,
        open_store,
        prepare_data,
    )

    timings: dict[str, float] = {}
    console.print(f"[bold]{name}[/]")
    bench = load_benchmark(name, settings.configs_dir)
    with open_store(settings) as store:
        data = _stage(console, timings, "import", prepare_data, bench, store, settings)
        queries = benchmark_queries(bench, store, data, "test")
        backend = make_backend("replay", store, load_cards(settings), settings, models=bench.workflow.all_models())
        reference = _stage(console, timings, "reference", execute, bench, bench.default_config, queries, backend, settings)
    _stage(console, timings, "profile", profile_job, settings, name, progress=False)
    _, frontier = _stage(console, timings, "compile", compile_job, settings, name, mode="correlated")
    _, report = _stage(console, timings, "validate", validate_job, settings, name)
    best = max(frontier.candidates, key=lambda c: c.estimates.accuracy)
    return {
        "benchmark": name, "n_test": reference.summary.n, "space": frontier.space_size,
        "frontier": len(frontier.candidates), "reference_accuracy": reference.summary.accuracy,
        "best_estimated_accuracy": best.estimates.accuracy,
        "spearman_accuracy": report["accuracy"]["spearman"], "spearman_latency": report["latency"]["spearman"],
        "frontier_recall": report["frontier_recall"], "timings_s": timings,
    }


def run_main(settings: Settings, benchmarks: tuple[str, ...] = DEFAULT_BENCHMARKS) -> list[dict]:
    console = Console(stderr=True)
    rows = [run_benchmark(settings, name, console) for name in benchmarks]
    table = Table(title="flowfront run (replay; latencies modeled from configs/models)")
    for col in ("benchmark", "test n", "space", "frontier", "reference acc", "Spearman acc", "Spearman lat",
                "frontier recall", "wall (s)"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r["benchmark"], str(r["n_test"]), f"{r['space']:,}", str(r["frontier"]), f"{r['reference_accuracy']:.4f}",
            f"{r['spearman_accuracy']:.3f}", f"{r['spearman_latency']:.3f}", f"{r['frontier_recall']:.2f}",
            f"{sum(r['timings_s'].values()):.1f}",
        )
    Console(width=160).print(table)
    console.print(f"artifacts: {settings.workdir}/<benchmark>/ (profiles.json, frontier.json/png, validation.json/png)")
    return rows
