"""Turn the realised outcomes of every (strategy, seed) run into the ``results.json`` metrics.

Intervals: per strategy the per-query values are first averaged over its seeds, then resampled
over queries (percentile bootstrap). One resampling matrix serves every strategy, so differences
between strategies are paired and get their own interval. Seed-to-seed spread is reported
separately (``per_seed``), not folded into the intervals.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from flowfront.eval.harness import Context, Run, Strategy
from flowfront.eval.metrics import (
    HV_REFERENCE,
    Interval,
    bootstrap_ci,
    bootstrap_weights,
    expected_utility,
    matched_ratio,
    monotone_hull,
    normalised_hypervolume,
    reach,
    value_at_budget,
)

__all__ = ["RESULTS_SCHEMA", "jsonable", "summarise"]

RESULTS_SCHEMA = 2  # 2: an Artifact (checksum; workflow and frontier hashes in the provenance)
BOOTSTRAP_SEED = 20240601  # fixed so a re-run reproduces the intervals exactly
CI_LEVEL = 0.95
_LAM_KEYS = ("correct", "latency_s", "cost_usd")
_BUDGET_KEYS = ("correct", "latency_s", "cost_usd", "infeasible", "over_budget")


def jsonable(obj: Any) -> Any:
    """numpy scalars/arrays to Python, NaN and infinities to ``None`` (JSON has no NaN)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return jsonable(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _iv(interval: Interval, i: Any = ()) -> dict[str, float]:
    return {"mean": interval.mean[i], "low": interval.low[i], "high": interval.high[i]}


def _per_query(runs: list[Run], ctx: Context) -> dict[str, np.ndarray]:
    """Per-query values averaged over seeds: ``eu`` (Q,), ``lam.*`` (L, Q), ``budget.*`` (NB, Q)."""
    eu = [expected_utility(r.lam["correct"], r.lam["latency_s"], ctx.lambdas, ctx.scale) for r in runs]
    out = {"eu": np.mean(eu, axis=0)}
    out |= {f"lam.{k}": np.mean([r.lam[k] for r in runs], axis=0) for k in _LAM_KEYS}
    out |= {f"budget.{k}": np.mean([r.budget[k] for r in runs], axis=0) for k in _BUDGET_KEYS}
    return out


def _matched(curve: tuple[np.ndarray, np.ndarray], base: tuple[np.ndarray, np.ndarray]) -> dict[str, Any]:
    """Speed-up (or cost-down) against ``base`` at each accuracy the base's hull reaches."""
    hull_b, hull_s = monotone_hull(*base), monotone_hull(*curve)
    targets = hull_b[1]
    ratio = matched_ratio(hull_b, hull_s, targets)
    finite = ratio[np.isfinite(ratio)]
    return {
        "target_accuracy": targets, "baseline_x": hull_b[0],
        "strategy_x": reach(*hull_s, targets),
        "ratio": ratio,
        "at_baseline_best": ratio[-1] if len(ratio) else np.nan,  # matched to the base's highest accuracy
        "max": finite.max() if finite.size else np.nan,
        "targets_reached": int(np.isfinite(ratio).sum()), "targets": len(targets),
    }


def _curves(runs: list[Run], ctx: Context) -> tuple[dict[str, np.ndarray], list[dict[str, Any]]]:
    """Seed-mean operating points per λ, and per-seed scalars (utility, hypervolume, curve)."""
    per_seed = []
    for r in runs:
        acc, lat, cost = (r.lam[k].mean(axis=1) for k in _LAM_KEYS)
        per_seed.append(
            {
                "seed": r.seed,
                "fit_seconds": r.fit_seconds,
                "design": r.design,
                "expected_utility": expected_utility(
                    r.lam["correct"], r.lam["latency_s"], ctx.lambdas, ctx.scale
                ).mean(),
                "hypervolume_latency": normalised_hypervolume(acc, ctx.scale.normalise_latency(lat)),
                "hypervolume_cost": normalised_hypervolume(acc, ctx.scale.normalise_cost(cost)),
                "accuracy": acc,
                "latency_s": lat,
                "cost_usd": cost,
            }
        )
    mean = {k: np.mean([p[k] for p in per_seed], axis=0) for k in ("accuracy", "latency_s", "cost_usd")}
    return mean, per_seed


def _budgets(pq: dict[str, np.ndarray], ci: dict[str, Interval], curve: dict[str, np.ndarray],
             ctx: Context) -> list[dict[str, Any]]:
    hull_acc = value_at_budget(*monotone_hull(curve["latency_s"], curve["accuracy"]), ctx.budgets)
    return [
        {
            "max_latency_s": b,
            "accuracy": _iv(ci["budget.correct"], i),
            "latency_s": _iv(ci["budget.latency_s"], i),
            "cost_usd": pq["budget.cost_usd"][i].mean(),
            "infeasible_share": pq["budget.infeasible"][i].mean(),
            "over_budget_share": pq["budget.over_budget"][i].mean(),
            "hull_accuracy": hull_acc[i],
        }
        for i, b in enumerate(ctx.budgets)
    ]


def _decision(run: Run) -> dict[str, Any] | None:
    if run.decision_ms is None:
        return None
    d = run.decision_ms
    return {"p50_ms": np.percentile(d, 50), "p90_ms": np.percentile(d, 90), "p99_ms": np.percentile(d, 99),
            "mean_ms": d.mean(), "n_queries": len(d),
            "measures": "predict + select on one feature row per call; embedding excluded"}


def _one(s: Strategy, runs: list[Run], pq: dict[str, dict[str, np.ndarray]], W: np.ndarray,
         ctx: Context, curves: dict[str, dict[str, np.ndarray]]) -> dict[str, Any]:
    mine = pq[s.name]
    ci = {k: bootstrap_ci(v, W, CI_LEVEL) for k, v in mine.items()}
    curve, per_seed = _curves(runs, ctx)
    curves[s.name] = curve
    sweep = [{"lambda": lam, "accuracy": _iv(ci["lam.correct"], i), "latency_s": _iv(ci["lam.latency_s"], i),
              "cost_usd": _iv(ci["lam.cost_usd"], i)} for i, lam in enumerate(ctx.lambdas)]
    hull_l = monotone_hull(curve["latency_s"], curve["accuracy"])
    hull_c = monotone_hull(curve["cost_usd"], curve["accuracy"])
    return {
        "candidates": s.candidates,
        "seeded": s.seeded,
        "fitted_on": "test (upper bound)" if s.fit_on_test else "train",
        "hints": "test task labels" if s.hinted else None,
        "runs": len(runs),
        "lambda_sweep": sweep,
        "expected_utility": _iv(ci["eu"]),
        "curve": curve,
        "hull": {"latency": np.column_stack(hull_l), "cost": np.column_stack(hull_c)},
        "hypervolume": {
            ax: {
                "mean": np.mean([p[f"hypervolume_{ax}"] for p in per_seed]),
                "per_seed": [p[f"hypervolume_{ax}"] for p in per_seed],
            }
            for ax in ("latency", "cost")
        },
        "budgets": _budgets(mine, ci, curve, ctx),
        "fit_seconds": {
            "mean": np.mean([r.fit_seconds for r in runs]),
            "per_seed": [r.fit_seconds for r in runs],
        },
        "wall_seconds": {
            "total": sum(r.wall_seconds for r in runs),
            "per_seed": [r.wall_seconds for r in runs],
        },
        "decision_latency": _decision(runs[0]),
        "ood_fallback_share": runs[0].ood_share,
        "hinted_share": runs[0].hinted_share,
        "switch_share": runs[0].switch_share,
        "checkpoints": runs[0].checkpoints,
        "switch_ceiling": runs[0].switch_ceiling,
        "per_seed": per_seed,
    }


ROUTING_BASELINES = ("full-space", "full-space-factorised", "masrouter-style", "maas-style", "knn", "cluster")


def _comparisons(name: str, pq: dict[str, dict[str, np.ndarray]], W: np.ndarray,
                 curves: dict[str, dict[str, np.ndarray]], oracles: list[str]) -> dict[str, Any]:
    """Paired differences against the references, gaps to each oracle, matched-accuracy ratios."""
    mine = pq[name]
    others = [o for o in pq if o != name]
    diffs = (
        bootstrap_ci(np.stack([mine["eu"] - pq[o]["eu"] for o in others]), W, CI_LEVEL) if others else None
    )
    out: dict[str, Any] = {"expected_utility_minus": {o: _iv(diffs, i) for i, o in enumerate(others)}}
    out["gap_to_oracle"] = {
        o: {
            "expected_utility": _iv(bootstrap_ci(pq[o]["eu"] - mine["eu"], W, CI_LEVEL)),
            "accuracy_at_lambda0": _iv(
                bootstrap_ci(pq[o]["lam.correct"][0] - mine["lam.correct"][0], W, CI_LEVEL)
            ),
        }
        for o in oracles
    }
    c = curves[name]
    # best-single and static always run; the routing baselines are FlowCompile's comparison.
    for ref in ["best-single", "static", *(r for r in ROUTING_BASELINES if r in curves and r != name)]:
        b = curves[ref]
        out[f"speedup_vs_{ref}"] = _matched((c["latency_s"], c["accuracy"]), (b["latency_s"], b["accuracy"]))
        out[f"cost_down_vs_{ref}"] = _matched((c["cost_usd"], c["accuracy"]), (b["cost_usd"], b["accuracy"]))
    return out


def _latency_source(bench) -> str:
    if bench.spec.backend == "litellm":
        return "measured"  # live calls, timed as they ran
    if bench.spec.recording is not None:
        return (
            "recorded"  # wall time of each live call when it was recorded (a cut: its last token's arrival)
        )
    if bench.spec.data.source in ("routerbench", "llmrouter"):
        return "modeled"  # neither dataset records latency: configs/models/*.yaml supplies it
    return "recorded where the data has latency_s, modeled from configs/models/*.yaml otherwise"


def summarise(data, ctx: Context, plan: list[Strategy], runs: dict[str, list[Run]], *, seeds: list[int],
              n_boot: int) -> dict[str, Any]:
    """The full result dict (see docs/eval.md), JSON-ready."""
    test = ctx.sets["frontier"].test
    W = bootstrap_weights(len(test.query_ids), n_boot, BOOTSTRAP_SEED)
    pq = {s.name: _per_query(runs[s.name], ctx) for s in plan}
    curves: dict[str, dict[str, np.ndarray]] = {}
    strategies = {s.name: _one(s, runs[s.name], pq, W, ctx, curves) for s in plan}
    oracles = [s.name for s in plan if s.fit_on_test]
    for s in plan:
        strategies[s.name]["compare"] = _comparisons(s.name, pq, W, curves, oracles)
    sample = ctx.sets.get("sample")
    bench, frontier = data.bench, data.frontier
    return jsonable({
        "schema_version": RESULTS_SCHEMA, "kind": "eval", "benchmark": bench.name,
        "workflow": bench.workflow.name,
        "data_source": bench.spec.data.source, "frontier_hash": frontier.content_hash(),
        "provenance": {"workflow_hash": bench.workflow.content_hash, "data_hash": frontier.content_hash()},
        "proxy_mode": frontier.proxy_mode, "execution": ctx.execution,
        "frontier_execution": frontier.execution,
        "latency_source": ("unavailable (the data records no latency and its models have no cards)"
                           if not np.any(test.latency(ctx.execution)) else _latency_source(bench)),
        "split": {"train_queries": len(data.train.query_ids), "test_queries": len(test.query_ids),
                  "disjoint": True},
        "candidate_sets": {"frontier": len(test.candidate_ids),
                           "sample": len(sample.test.candidate_ids) if sample else None,
                           "sample_seed": 0 if sample else None},
        "scale": dataclasses.asdict(ctx.scale), "lambdas": ctx.lambdas, "latency_budgets_s": ctx.budgets,
        "seeds": seeds, "bootstrap": {"n_boot": n_boot, "level": CI_LEVEL, "seed": BOOTSTRAP_SEED,
                                      "unit": "test query", "paired": True},
        "hypervolume_reference": {"accuracy": HV_REFERENCE[0], "normalised_x": HV_REFERENCE[1],
                                  "latency_s": _denormalise(ctx.scale, "latency", HV_REFERENCE[1]),
                                  "cost_usd": _denormalise(ctx.scale, "cost", HV_REFERENCE[1])},
        "strategies": strategies,
    })


def _denormalise(scale, axis: str, value: float) -> float:
    """Inverse of router.select's normalisation, so the reference is also given in seconds / USD."""
    lo = scale.latency_min if axis == "latency" else scale.cost_min
    unit = float(scale.normalise(np.array([lo + 1.0]), axis)[0])  # normalised size of one second (USD)
    return lo + value / unit
