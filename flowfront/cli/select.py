"""``flowfront frontier`` and ``flowfront select``: the compiled frontier and the choice for a preference.

``select`` uses the same static selection the service applies (``router.select.select_static``
over the proxy's estimates), so the CLI and the service agree for a given preference.
"""

from __future__ import annotations

from typing import Annotated

import typer

from flowfront.cli._common import DataDir, Workdir, echo_json, make_settings
from flowfront.spec import Execution


def _frontier(benchmark: str, workdir):
    from flowfront.benchmarks import load_benchmark
    from flowfront.compile.artifact import Frontier

    settings = make_settings(None, workdir)
    bench = load_benchmark(benchmark, settings.configs_dir, own_dir=settings.workspace.own)
    path = settings.workspace.benchmark(bench.name).frontier()
    return Frontier.load(path, expect_workflow_hash=bench.workflow.content_hash)


def _row(c, execution: Execution) -> dict:
    e = c.estimates
    return {"id": c.id, "accuracy": round(e.accuracy, 4), "latency_s": round(e.latency(execution), 4),
            "cost_usd": e.cost_usd, "config": c.config}


def frontier(
    benchmark: Annotated[str, typer.Argument(help="benchmark name or YAML path (after `flowfront compile`)")],
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    workdir: Workdir = None,
) -> None:
    """Print the compiled frontier: each candidate's estimates and configuration."""
    f = _frontier(benchmark, workdir)
    rows = [_row(c, f.execution) for c in f.candidates]
    if as_json:
        echo_json({"benchmark": f.benchmark, "execution": f.execution, "candidates": rows})
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{f.benchmark}: {len(rows)} candidates of {f.space_size:,} ({f.execution} latency, "
                  "proxy estimates)")
    for col in ("id", "accuracy", "latency (s)", "cost ($)", "configuration"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r["id"],
            f"{r['accuracy']:.3f}",
            f"{r['latency_s']:.3f}",
            f"{r['cost_usd']:.3g}",
            _short(r["config"]),
        )
    Console(width=220).print(table)


def _short(config: dict) -> str:
    nodes = ", ".join(f"{n}={s['model'] if isinstance(s, dict) else '[...]'}"
                      + (f"@{s['budget']}" if isinstance(s, dict) and s.get("budget") else "")
                      for n, s in config.get("nodes", {}).items())
    knobs = ", ".join(f"{k}={v}" for k, v in config.get("knobs", {}).items())
    return "; ".join(p for p in (nodes, knobs) if p)


def select(
    benchmark: Annotated[str, typer.Argument(help="benchmark name or YAML path (after `flowfront compile`)")],
    lambda_: Annotated[
        float | None, typer.Option("--lambda", min=0.0, help="weight of the objective vs accuracy")
    ] = None,
    objective: Annotated[str, typer.Option(help="latency | cost")] = "latency",
    max_latency_s: Annotated[float | None, typer.Option(min=0.0, help="hard latency limit (s)")] = None,
    max_cost_usd: Annotated[
        float | None, typer.Option(min=0.0, help="hard cost limit (USD per query)")
    ] = None,
    min_accuracy: Annotated[float | None, typer.Option(min=0.0, max=1.0, help="hard accuracy floor")] = None,
    on_infeasible: Annotated[str, typer.Option(help="error | nearest")] = "error",
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    workdir: Workdir = None,
) -> None:
    """The configuration static selection picks for a preference, its estimates and the runner-up."""
    from flowfront.errors import SpecError
    from flowfront.router.select import Preference, select_static

    if objective not in ("latency", "cost") or on_infeasible not in ("error", "nearest"):
        raise SpecError("--objective takes latency or cost; --on-infeasible takes error or nearest")
    pref = Preference.model_validate(
        {
            "lambda": lambda_,
            "objective": objective,
            "max_latency_s": max_latency_s,
            "max_cost_usd": max_cost_usd,
            "min_accuracy": min_accuracy,
            "on_infeasible": on_infeasible,
        }
    )
    f = _frontier(benchmark, workdir)
    index, runner, feasible = select_static(f, pref)
    chosen = _row(f.candidates[index], f.execution)
    out = {
        "benchmark": f.benchmark,
        "preference": pref.model_dump(by_alias=True),
        "feasible": feasible,
        "chosen": chosen,
        "runner_up": _row(f.candidates[runner], f.execution) if runner is not None else None,
    }
    if as_json:
        echo_json(out)
        return
    typer.echo(
        f"{chosen['id']}: accuracy {chosen['accuracy']:.3f}, latency {chosen['latency_s']:.3f} s, "
        f"cost ${chosen['cost_usd']:.3g} (proxy "
        f"estimates{'' if feasible else '; nearest: no candidate meets the limits'})"
    )
    echo_json(chosen["config"])
    if out["runner_up"]:
        r = out["runner_up"]
        typer.echo(
            f"runner-up {r['id']}: accuracy {r['accuracy']:.3f}, latency {r['latency_s']:.3f} s, cost "
            f"${r['cost_usd']:.3g}"
        )


def route(
    benchmark: Annotated[str, typer.Argument(help="benchmark name or YAML path (after `flowfront train`)")],
    query: Annotated[str, typer.Argument(help="the query to route")],
    lambda_: Annotated[float | None, typer.Option("--lambda", min=0.0,
                                                  help="weight of the objective vs accuracy")] = None,
    objective: Annotated[str, typer.Option(help="latency | cost")] = "latency",
    max_latency_s: Annotated[float | None, typer.Option(min=0.0, help="hard latency limit (s)")] = None,
    task: Annotated[str | None, typer.Option(help="the query's task, if known (a task the router was "
                                                  "trained on is used as its group)")] = None,
    explain: Annotated[bool, typer.Option("--explain", help="also run the query (replay) and show where the "
                                                            "checkpoint routers re-decided and why")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    data_dir: DataDir = None,
    workdir: Workdir = None,
) -> None:
    """The trained router's per-candidate predictions for one query, and its pick."""
    from flowfront import TrainedRouter
    from flowfront.router.select import Preference

    f = _frontier(benchmark, workdir)
    settings = make_settings(data_dir, workdir)
    router = TrainedRouter.load(settings.workspace.benchmark(f.benchmark).router(), f)
    pref = Preference.model_validate({"lambda": lambda_, "objective": objective,
                                      "max_latency_s": max_latency_s, "on_infeasible": "nearest"})
    tasks = None if task is None else [task]
    pred = router.predict([query], tasks)
    pick = router.route([query], pref, tasks)[0]
    hint = None if task is None else {"task": task, "used": bool(pred.n_hinted),
                                      "known": list(router.known_tasks)}
    rows = [{"id": c.id, "accuracy": round(float(pred.accuracy[0, i]), 4),
             "latency_s": round(float(pred.latency_s[0, i]), 4), "cost_usd": float(pred.cost_usd[0, i])}
            for i, c in enumerate(f.candidates)]
    fell_back = bool(pred.fallback is not None and pred.fallback[0])
    ran = None
    if explain:
        from flowfront.cli.explain import explain as explain_run

        ran = explain_run(settings, router, query, pref, f.candidates.index(pick), pred, as_json)
    if as_json:
        echo_json({"benchmark": f.benchmark, "pick": pick.id, "fallback": fell_back, "hint": hint,
                   "predictions": rows, "config": pick.config, **({"explain": ran} if ran else {})})
        return
    if ran is not None:
        return
    for r in sorted(rows, key=lambda r: -r["accuracy"]):
        mark = "  <- pick" if r["id"] == pick.id else ""
        typer.echo(f"{r['id']:>5}  accuracy {r['accuracy']:.3f}  latency {r['latency_s']:.3f} s  "
                   f"cost ${r['cost_usd']:.3g}{mark}")
    if fell_back:
        means = "the task's train means" if hint is not None and hint["used"] else "the router's train means"
        typer.echo(f"(far from every training query: {means} were used)")
    if hint is not None and not hint["used"]:
        known = ", ".join(hint["known"]) or "none: it was trained without task labels"
        typer.echo(f"(task {task!r} is not one the router was trained on ({known}); predicted from the text)")
    echo_json(pick.config)
