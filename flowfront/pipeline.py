"""``flowfront run``: the main job, end to end on the default built-in benchmarks.

Today it imports the recorded data and executes each default benchmark's reference
configuration on its held-out split; the compile, train and eval stages join this chain as they
land (see the issues), each writing its artifact under the workdir.
"""

from __future__ import annotations

import time

from rich.console import Console
from rich.table import Table

from flowfront.settings import Settings

DEFAULT_BENCHMARKS = ("qa-cascade", "model-route")


def run_main(settings: Settings, benchmarks: tuple[str, ...] = DEFAULT_BENCHMARKS) -> list[dict]:
    from flowfront.benchmarks import load_benchmark
    from flowfront.runtime import (
        benchmark_queries,
        execute,
        load_cards,
        make_backend,
        open_store,
        prepare_data,
    )

    console = Console(stderr=True)
    rows = []
    cards = load_cards(settings)
    with open_store(settings) as store:
        for name in benchmarks:
            started = time.perf_counter()
            bench = load_benchmark(name, settings.configs_dir)
            console.print(f"[bold]{name}[/]: importing data")
            data = prepare_data(bench, store, settings)
            queries = benchmark_queries(bench, store, data, "test")
            backend = make_backend("replay", store, cards, settings, models=bench.workflow.all_models())
            out = execute(bench, bench.default_config, queries, backend, settings, progress=True)
            rows.append({"benchmark": name, **out.summary.as_dict(), "wall_s": time.perf_counter() - started})
    table = Table(title="flowfront run: reference configuration on the test split (replay)")
    for col in ("benchmark", "n", "accuracy", "latency seq (s)", "latency par (s)", "cost ($/query)", "wall (s)"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r["benchmark"], str(r["n"]), f"{r['accuracy']:.4f}", f"{r['latency_sequential_s']:.3f}",
            f"{r['latency_parallel_s']:.3f}", f"{r['cost_usd']:.6f}", f"{r['wall_s']:.1f}",
        )
    Console().print(table)
    return rows
