"""Why the router's margins are what they are, measured on the train splits only.

Three analyses per built-in benchmark, none of which looks at a test outcome:

* ``groups``: task labels vs k-means clusters as the router's groups, by cross-validated expected
  utility over the lambda sweep (3 folds of 80/20 of the train split);
* ``learning_curve``: the frontier router, static selection and kNN fitted on 25%, 50% and 100%
  of 80% of the train split, scored on the fixed remaining 20% (3 seeds);
* ``knn_blend``: choosing by α·(router's accuracy estimate) + (1 − α)·(kNN's), α in 0..1, on the
  same held-out 20% (3 seeds): does kNN know something the router misses?
* ``task_mix``: the share of each task in the train and the test split (query counts only).

Needs `flowfront run` (or profile + compile of both benchmarks) in the work folder.

    python -m bench router_analysis
"""

from __future__ import annotations

import dataclasses
from collections import Counter

import numpy as np
from rich.progress import track

from bench._common import write_result
from flowfront.router.model import LightGBMRouter
from flowfront.router.train import TrainingData, expected_utility, load_data, make_router
from flowfront.settings import Settings, prepare_environment

BENCHMARKS = ("qa-cascade", "model-route")
SEEDS = (0, 1, 2)
FRACTIONS = (0.25, 0.5, 1.0)
ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0)


def _utility(router, data: TrainingData, rows: np.ndarray) -> float:
    ex = data.frontier.execution
    return float(
        expected_utility(
            router, data.X_train[rows], data.train.rows(rows), data.scale, data.lambdas, ex
        ).mean()
    )


def _split(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(held-out 20%, the rest in a seeded order)."""
    order = np.random.default_rng(200 + seed).permutation(n)
    return np.sort(order[: n // 5]), order[n // 5 :]


def groups(data: TrainingData) -> dict[str, list[float]]:
    tasks = np.asarray(data.train.tasks if data.train.tasks is not None else [])
    out: dict[str, list[float]] = {"k-means": [], "task labels": []}
    if len(set(tasks.tolist())) < 2:
        return out
    for seed in SEEDS:
        held, rest = _split(len(tasks), seed)
        fit = np.sort(rest)
        for name, labels in (("k-means", None), ("task labels", tasks[fit])):
            Y = data.train.rows(fit)
            Y = Y if labels is not None else dataclasses.replace(Y, tasks=None)
            router = LightGBMRouter(seed=seed, execution=data.frontier.execution).fit(data.X_train[fit], Y)
            out[name].append(_utility(router, data, held))
    return out


def learning_curve(data: TrainingData) -> dict[str, dict[str, list[float]]]:
    out: dict[str, dict[str, list[float]]] = {}
    for seed in SEEDS:
        held, rest = _split(len(data.train.query_ids), seed)
        for frac in FRACTIONS:
            fit = np.sort(rest[: int(frac * len(rest))])
            for strategy in ("frontier", "static", "knn"):
                router = make_router(strategy, seed=seed, execution=data.frontier.execution)
                router.fit(data.X_train[fit], data.train.rows(fit))
                out.setdefault(f"{frac:.2f}", {}).setdefault(strategy, []).append(
                    _utility(router, data, held)
                )
    return out


def knn_blend(data: TrainingData) -> dict[str, list[float]]:
    from flowfront.router.select import Preference, select

    ex = data.frontier.execution
    out: dict[str, list[float]] = {}
    for seed in SEEDS:
        held, rest = _split(len(data.train.query_ids), seed)
        fit = np.sort(rest)
        pred = {name: make_router(name, seed=seed, execution=ex).fit(data.X_train[fit], data.train.rows(fit))
                .predict(data.X_train[held]) for name in ("frontier", "knn")}
        Y, rows = data.train.rows(held), np.arange(len(held))
        norm_latency = data.scale.normalise_latency(Y.latency(ex))
        for alpha in ALPHAS:
            acc = alpha * pred["frontier"].accuracy + (1 - alpha) * pred["knn"].accuracy
            utility = np.mean([
                np.mean(Y.correct[rows, idx] - lam * norm_latency[rows, idx])
                for lam in data.lambdas
                for idx in [select(acc, pred["frontier"].latency_s, pred["frontier"].cost_usd,
                                   Preference(lambda_=float(lam)), data.scale).index]])
            out.setdefault(f"{alpha:.2f}", []).append(float(utility))
    return out


def task_mix(settings: Settings, name: str) -> dict[str, dict[str, float]]:
    from flowfront.benchmarks import load_benchmark
    from flowfront.runtime import benchmark_queries, open_store, prepare_data

    bench = load_benchmark(name, settings.configs_dir)
    mix = {}
    with open_store(settings) as store:
        prepared = prepare_data(bench, store, settings)
        for split in ("train", "test"):
            counts = Counter(q.task for q in benchmark_queries(bench, store, prepared, split))
            total = sum(counts.values())
            mix[split] = {
                task: round(n / total, 4) for task, n in sorted(counts.items(), key=lambda kv: str(kv[0]))
            }
    return mix


def main() -> None:
    prepare_environment()
    settings = Settings()
    result = {}
    for name in track(BENCHMARKS, description="router analysis"):
        data = load_data(settings, name, "frontier", include_test=False)
        curve = learning_curve(data)
        result[name] = {
            "train_queries": len(data.train.query_ids),
            "groups_cv_utility": groups(data),
            "learning_curve_utility": curve,
            "frontier_minus_static": {
                f: float(np.mean(v["frontier"]) - np.mean(v["static"])) for f, v in curve.items()
            },
            "knn_blend_utility": knn_blend(data),
            "task_mix": task_mix(settings, name),
        }
        print(name, {f: round(d, 4) for f, d in result[name]["frontier_minus_static"].items()}, flush=True)
    write_result("router_analysis", {
        "what": "train-split-only analyses of the frontier router: groups, learning curve, task mix",
        "seeds": list(SEEDS), "fractions": list(FRACTIONS), "benchmarks": result,
    })


if __name__ == "__main__":
    main()
