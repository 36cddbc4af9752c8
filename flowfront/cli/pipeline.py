"""``flowfront run``: the main job, compile-then-route end to end.

Per benchmark: import the recorded data, execute the benchmark's reference configuration, profile
every node choice on the train split, compile the frontier on the proxy (widened by
``compile.search.NEAR_FRONT`` so a per-query router has candidates to choose among), validate the proxy
against execution on the test split, train the frontier router, and evaluate every strategy on the
held-out test split. Each stage writes its artifact under ``<workdir>/<benchmark>/``; the run ends
with one report over all benchmarks and the wall time of every stage.
"""

from __future__ import annotations

import time
from pathlib import Path

import orjson
from rich.console import Console
from rich.table import Table

from flowfront.benchmarks import Benchmark
from flowfront.settings import Settings

DEFAULT_BENCHMARKS = ("qa-cascade", "model-route", "live-math", "live-code")


class _Stages:
    """Runs named stages and keeps their wall times, in order."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.seconds: dict[str, float] = {}

    def run(self, name: str, fn, *args, **kwargs):
        started = time.perf_counter()
        self.console.print(f"  {name} ...")
        out = fn(*args, **kwargs)
        self.seconds[name] = round(time.perf_counter() - started, 2)
        self.console.print(f"  {name} done in {self.seconds[name]:.1f}s")
        return out


WEAK_PROXY = 0.8  # below this rank correlation, the frontier's order of candidates is not to be trusted


def _warn_on_weak_proxy(console: Console, name: str, validation: dict) -> list[str]:
    """One warning per objective whose proxy ranks the candidates unlike the measurement."""
    warnings = []
    for axis in ("accuracy", "latency"):
        rho = (validation.get(axis) or {}).get("spearman")
        if rho is not None and rho == rho and rho < WEAK_PROXY:  # NaN: nothing measured to compare
            warnings.append(
                f"{name}: the proxy's {axis} estimates rank candidates with Spearman {rho:.3f} "
                f"against the measurement (below {WEAK_PROXY:.2f}); treat the frontier's {axis} figures "
                "as rough (validation.png shows where)"
            )
    for line in warnings:
        console.print(f"  [yellow]warning:[/] {line}")
    return warnings


def _reference(settings: Settings, bench: Benchmark):
    from flowfront.runtime import benchmark_backend, benchmark_queries, execute, open_store, prepare_data

    with open_store(settings) as store:
        data = prepare_data(bench, store, settings)
        queries = benchmark_queries(bench, store, data, "test")
        backend = benchmark_backend(bench, store, settings)
        return execute(bench, bench.default_config, queries, backend, settings)


def run_benchmark(settings: Settings, bench: Benchmark, console: Console, *, seeds: int = 3,
                  stages: _Stages | None = None, strategies: tuple[str, ...] | None = None) -> dict:
    """Every stage of the chain on one benchmark; returns its summary row (eval results included)."""
    from flowfront.compile.jobs import compile_job, profile_job
    from flowfront.compile.validate import validate_job
    from flowfront.eval.jobs import eval_job
    from flowfront.router.train import train_job

    stages = stages or _Stages(console)
    console.print(f"[bold]{bench.name}[/] ({bench.spec.description})")
    reference = stages.run("import + reference", _reference, settings, bench)
    stages.run("profile", profile_job, settings, bench, progress=True)
    objective = _objective(settings, bench)
    if objective != "latency":
        what = ("accuracy x latency x cost" if objective == "both" else
                "the data records no latency and its models have no cards: cost only, latency unavailable")
        console.print(f"  objective: {objective} ({what})")
    _, frontier = stages.run("compile", compile_job, settings, bench, mode="correlated", objective=objective)
    _, validation = stages.run("validate", validate_job, settings, bench)
    _warn_on_weak_proxy(console, bench.name, validation)
    row = {
        "benchmark": bench.name,
        "n_test": reference.summary.n,
        "space": frontier.space_size,
        "frontier": len(frontier.candidates),
        "reference_accuracy": reference.summary.accuracy,
        "spearman_accuracy": validation["accuracy"]["spearman"],
        "spearman_latency": validation["latency"]["spearman"],
        "frontier_recall": validation["frontier_recall"],
        "results": None,
        "timings_s": stages.seconds,
    }
    n_train = _train_size(settings, bench)
    if n_train < MIN_TRAIN_QUERIES:  # e.g. a quick live run with --limit: compile and validate still ran
        console.print(
            f"  [yellow]router not trained:[/] {n_train} train queries, fewer than the {MIN_TRAIN_QUERIES} "
            "a router needs to fit and validate (raise --limit)"
        )
        return row
    _, trained = stages.run("train", train_job, settings, bench, "frontier")
    results_path, results = stages.run("eval", eval_job, settings, bench, seeds=tuple(range(seeds)),
                                       strategies=strategies)
    return {
        **row,
        "train_seconds": trained["total_seconds"],
        "results_path": str(results_path),
        "results": results,
    }


def _objective(settings: Settings, bench: Benchmark) -> str:
    """What an outcome table can be compiled for: latency needs recorded ``latency_s`` or a card for
    every model; with cost too the frontier is 3-D. Built-in benchmarks keep latency."""
    if bench.spec.data.source != "outcomes":
        return "latency"
    from flowfront.runtime import load_cards, open_store, prepare_data

    cards = load_cards(settings)
    carded = all(m in cards for m in bench.workflow.all_models())
    with open_store(settings) as store:
        columns = set(prepare_data(bench, store, settings).summary.get("complete_columns", ()))
    has_latency = "latency_s" in columns or carded
    has_cost = "cost_usd" in columns or carded
    if has_latency:
        return "both" if has_cost else "latency"
    return "cost" if has_cost else "latency"


MIN_TRAIN_QUERIES = 19  # train fits on 80% first (its held-out fold), and router.model needs 15 for its folds


def _train_size(settings: Settings, bench: Benchmark) -> int:
    from flowfront.runtime import benchmark_queries, open_store, prepare_data

    with open_store(settings) as store:
        return len(benchmark_queries(bench, store, prepare_data(bench, store, settings), "train"))


def _benchmarks(settings: Settings, names: tuple[str, ...], outcomes: Path | None, stages: _Stages,
                name: str | None = None) -> list[Benchmark]:
    from flowfront.benchmarks import load_benchmark
    from flowfront.runtime import load_outcomes_benchmark

    if outcomes is not None:
        return [
            stages.run(
                "import outcome table", load_outcomes_benchmark, settings, outcomes, "model-route", name
            )
        ]
    return [load_benchmark(name, settings.configs_dir, own_dir=settings.workspace.own) for name in names]


def run_main(settings: Settings, names: tuple[str, ...] = DEFAULT_BENCHMARKS, *,
             outcomes: Path | None = None, seeds: int = 3, name: str | None = None,
             strategies: tuple[str, ...] | None = None) -> list[dict]:
    """The chain on each benchmark (or on one outcome table), then the report and the summary table."""
    console = Console(stderr=True)
    started = time.perf_counter()
    setup = _Stages(console)
    rows = []
    for bench in _benchmarks(settings, names, outcomes, setup, name):
        rows.append(run_benchmark(settings, bench, console, seeds=seeds, stages=_Stages(console),
                                  strategies=strategies))
    from flowfront.eval.report import refresh_report

    report_started = time.perf_counter()
    report = refresh_report(settings.workdir, first=[r["benchmark"] for r in rows])
    timings = {"setup_s": setup.seconds, "benchmarks": {r["benchmark"]: r["timings_s"] for r in rows},
               "report_s": round(time.perf_counter() - report_started, 2),
               "total_s": round(time.perf_counter() - started, 2)}
    settings.workspace.timings.write_bytes(orjson.dumps(timings, option=orjson.OPT_INDENT_2))
    _print_summary(rows)
    console.print(
        f"report: {report}\nartifacts: {settings.workdir}/<benchmark>/ "
        f"(profiles, frontier, validation, router, eval); stage times: {settings.workspace.timings}"
    )
    return rows


def _print_summary(rows: list[dict]) -> None:
    from flowfront.eval.report import headline

    sources = sorted({r["results"]["latency_source"].split(" ")[0] for r in rows if r["results"] is not None})
    table = Table(title=f"flowfront run (latency: {', '.join(sources)}; see report.md)")
    columns = ("benchmark", "test n", "space", "frontier", "Spearman acc", "router EU [95% CI]", "static EU",
               "full-space EU", "router − static [95% CI]", "wall (s)")
    for col in columns:
        table.add_column(col)
    for r in rows:
        h = headline(r["results"]) if r["results"] is not None else dict.fromkeys(
            ("router_eu", "static_eu", "full_space_eu", "router_minus_static"), "not trained")
        table.add_row(
            r["benchmark"],
            str(r["n_test"]),
            f"{r['space']:,}",
            str(r["frontier"]),
            f"{r['spearman_accuracy']:.3f}",
            h["router_eu"],
            h["static_eu"],
            h["full_space_eu"],
            h["router_minus_static"],
            f"{sum(r['timings_s'].values()):.0f}",
        )
    Console(width=200).print(table)
