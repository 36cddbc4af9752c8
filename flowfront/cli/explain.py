"""``flowfront route --explain``: run the routed query and show where progressive routing re-decided.

The query runs on the benchmark's backend (replay by default: a query outside the recorded data is
refused with the usual one line) with the router folder's checkpoint routers as the run's
checkpoint hook (flowfront.router.redecide), so what it prints is what the service would do.
"""

from __future__ import annotations

import asyncio
from typing import Any

import typer


def explain(
    settings: Any, router: Any, query: str, pref: Any, pick_index: int, pred: Any, as_json: bool
) -> dict[str, Any]:
    from flowfront.benchmarks import load_benchmark
    from flowfront.errors import RoutingError
    from flowfront.executor import Executor, Query
    from flowfront.router.artifact import load_progressive
    from flowfront.router.redecide import Redecisions
    from flowfront.router.select import Scale, frontier_estimates
    from flowfront.runtime import benchmark_backend, open_store, prepare_data
    from flowfront.space import Configuration, resolve

    f = router.frontier
    folder = settings.workspace.benchmark(f.benchmark).router()
    policy = load_progressive(folder, router.learned)
    if policy is None:
        raise RoutingError(
            f"the router for {f.benchmark} was trained without checkpoint routers",
            hint=f"re-run `flowfront train {f.benchmark}` (its workflow must have checkpoints)",
        )
    bench = load_benchmark(f.benchmark, settings.configs_dir, own_dir=settings.workspace.own)
    candidates = [resolve(bench.workflow, Configuration.parse(c.config)) for c in f.candidates]
    ids = [c.id for c in f.candidates]
    _, lat, cost = frontier_estimates(f)
    hook = Redecisions(
        policy,
        bench.workflow,
        candidates,
        ids,
        (pred.accuracy[0], pred.latency_s[0], pred.cost_usd[0]),
        pref,
        Scale.from_estimates(lat, cost),
        f.execution,
        explain=True,
    )
    with open_store(settings) as store:
        prepare_data(bench, store, settings)
        executor = Executor(bench.workflow, benchmark_backend(bench, store, settings))
        result = asyncio.run(executor.run(candidates[pick_index], Query("explain", query), checkpoint=hook))
    if result.error is not None:
        from flowfront.errors import BackendError

        raise BackendError(result.error, model=result.failed_model)
    final = ids[hook.index(result.final)] if result.final is not None else ids[pick_index]
    out = {
        "upfront": ids[pick_index],
        "final": final,
        "answer": result.answer,
        "latency_s": result.latency(f.execution),
        "latency_kind": "modeled from the calls' latencies",
        "cost_usd": result.cost_usd,
        "checkpoints": hook.log,
    }
    if not as_json:
        _print(out)
    return out


def _print(out: dict[str, Any]) -> None:
    typer.echo(f"upfront pick {out['upfront']}; ran:")
    for c in out["checkpoints"]:
        head = (
            f"  at {c['checkpoint']} (spent {c['spent_latency_s']:.3f} s, ${c['spent_cost_usd']:.3g}; "
            f"compatible: {', '.join(c['compatible'])})"
        )
        if not c["used"]:
            why = c["why_not_used"]
            if "cv_gain_over_upfront" in why:
                gain, se = why["cv_gain_over_upfront"], why["cv_se"]
                ceiling = why.get("ceiling_gain_over_upfront", float("nan"))
                reason = (
                    f"its cross-validated gain over the upfront choice was {gain:+.4f} ± {se:.4f} "
                    f"(perfect switching: {ceiling:+.4f})"
                )
            else:
                reason = why.get("reason", "not used")
            typer.echo(f"{head}: kept {c['from']}, checkpoint router not used: {reason}")
        elif c["switched"]:
            est = c["estimates"][c["to"]]
            typer.echo(
                f"{head}: switched {c['from']} -> {c['to']} (estimated accuracy {est['accuracy']:.3f}, "
                f"latency {est['latency_s']:.3f} s, cost ${est['cost_usd']:.3g})"
            )
        else:
            typer.echo(f"{head}: kept {c['from']} (the best estimate among the compatible ones)")
    if not out["checkpoints"]:
        typer.echo("  no checkpoint was reached")
    typer.echo(
        f"answer {out['answer']!r} from {out['final']}: latency {out['latency_s']:.3f} s (modeled), "
        f"cost ${out['cost_usd']:.3g}"
    )


__all__ = ["explain"]
