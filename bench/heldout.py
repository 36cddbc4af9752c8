"""The router on tasks it never saw: whole tasks held out of training (issue #14).

For each task of a benchmark's test split, every strategy is fitted on the train queries of the
*other* tasks only and evaluated on that task's test queries (leave one task out). Reported per
task and pooled over all held-out queries: accuracy at λ = 0 (the most accurate choice each
strategy makes) of the frontier router, best single, static selection, the cluster router and
the per-query oracle, plus expected utility over the λ sweep and how many held-out queries the
router's out-of-distribution check sent to its fallback.

What is and is not held out: the frontier was compiled from profiles over the whole train split,
so the candidate set itself has seen every task; the router, best single, static (train means)
and the cluster router are refitted without the held-out task. That is the deployment case this
measures: a fixed frontier meets a new kind of query. Needs `flowfront run` (or profile +
compile) in the work folder; no test outcome is used to fit anything but the oracle.

    python -m bench heldout
"""

from __future__ import annotations

import os

import numpy as np
from rich.progress import track

from bench._common import write_result
from flowfront.eval.harness import CandidateSet, make_context, run_strategy, strategy_from_name
from flowfront.eval.metrics import expected_utility
from flowfront.router.train import load_data
from flowfront.settings import Settings, prepare_environment

BENCHMARKS = ("model-route", "qa-cascade")
COMPARED = ("frontier", "best-single", "static", "cluster", "oracle")
MIN_TEST = 20  # a held-out task with fewer test queries says nothing on its own (it still counts pooled)


def _fold(data, task: str) -> CandidateSet:
    train_tasks, test_tasks = np.asarray(data.train.tasks), np.asarray(data.test.tasks)
    fit, held = np.flatnonzero(train_tasks != task), np.flatnonzero(test_tasks == task)
    return CandidateSet(data.test.rows(held), data.X_test[held], data.train.rows(fit), data.X_train[fit])


def _scores(run, ctx) -> dict[str, np.ndarray]:
    """Per held-out query: correct at λ = 0 and utility over the sweep."""
    eu = expected_utility(run.lam["correct"], run.lam["latency_s"], ctx.lambdas, ctx.scale)
    return {"accuracy_at_lambda0": run.lam["correct"][0], "expected_utility": eu}


def _benchmark(settings: Settings, name: str) -> dict:
    data = load_data(settings, name, "frontier")
    if data.train.tasks is None or data.test.tasks is None:
        return {"skipped": "the data labels no tasks"}
    tasks = sorted(set(data.test.tasks))
    per_task, pooled = {}, {s: {"accuracy_at_lambda0": [], "expected_utility": []} for s in COMPARED}
    ood = []
    for task in track(tasks, description=f"{name}: leave one task out"):
        ctx = make_context(data.frontier, None, None)
        ctx.sets = {"frontier": _fold(data, task)}
        ctx.sets["all"] = ctx.sets["frontier"]
        scores = {}
        for s in COMPARED:
            run = run_strategy(strategy_from_name(s), 0, ctx, time_decisions=False)
            scores[s] = _scores(run, ctx)
            for key, values in scores[s].items():
                pooled[s][key].append(values)
            if s == "frontier":
                ood.append(run.ood_share * len(ctx.sets["frontier"].test.query_ids))
        n = len(ctx.sets["frontier"].test.query_ids)
        per_task[task] = {
            "test_queries": n,
            "train_queries_without_it": len(ctx.sets["frontier"].train.query_ids),
            "in_train": task in set(data.train.tasks),
            **{s: {k: float(v.mean()) for k, v in scores[s].items()} for s in COMPARED},
            "too_few_to_read_alone": n < MIN_TEST,
        }
    summary = {s: {k: float(np.concatenate(v).mean()) for k, v in pooled[s].items()} for s in COMPARED}
    router, best = summary["frontier"]["accuracy_at_lambda0"], summary["best-single"]["accuracy_at_lambda0"]
    oracle = summary["oracle"]["accuracy_at_lambda0"]
    return {"tasks": tasks, "pooled": summary, "per_task": per_task,
            "held_out_queries": int(sum(t["test_queries"] for t in per_task.values())),
            "router_ood_fallback_share": float(sum(ood) / sum(t["test_queries"] for t in per_task.values())),
            "router_minus_best_single_accuracy_at_lambda0": router - best,
            "router_share_of_oracle_gap_closed": (router - best) / (oracle - best) if oracle > best else None}


def main() -> None:
    prepare_environment()
    settings = Settings()
    load = os.getloadavg()
    results = {name: _benchmark(settings, name) for name in BENCHMARKS}
    write_result(
        "heldout",
        {
            "what": "leave one task out: fitted on the other tasks' train queries, evaluated on the task's "
                    "test queries",
            "frontier": "compiled on the whole train split (every task); only the strategies are refitted",
            "seed": 0,
            "strategies": list(COMPARED),
            "load_average_at_start": load,
            "load_average_at_end": os.getloadavg(),
            "benchmarks": results,
        },
    )


if __name__ == "__main__":
    main()
