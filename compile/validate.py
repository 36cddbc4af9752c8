"""``flowfront validate``: how well does the proxy predict what execution measures?

Executes an even spread of frontier configurations (by estimated latency) plus a uniform sample of
other configurations on the held-out split, then reports rank correlations (Spearman, Kendall)
between proxy and measured accuracy and latency, the frontier recall (how many points of the
measured frontier of everything executed the proxy frontier holds), and the hypervolume of the
proxy frontier as measured against that of the measured frontier.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson

from flowfront.benchmarks import Benchmark, load_benchmark
from flowfront.compile.artifact import Frontier, Profiles
from flowfront.compile.pareto import hypervolume, pareto_mask
from flowfront.compile.proxy import Proxy
from flowfront.compile.search import sample_configurations
from flowfront.errors import CompileError
from flowfront.runtime import benchmark_backend, benchmark_queries, execute, open_store, prepare_data
from flowfront.settings import Settings
from flowfront.space import Configuration


def _spread(frontier: Frontier, n: int, key: str) -> list[int]:
    order = sorted(
        range(len(frontier.candidates)), key=lambda i: getattr(frontier.candidates[i].estimates, key)
    )
    if len(order) <= n:
        return order
    picks = np.unique(np.round(np.linspace(0, len(order) - 1, n)).astype(int))
    return [order[i] for i in picks]


def _correlations(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    from scipy.stats import kendalltau, spearmanr

    return {"spearman": float(spearmanr(x, y).statistic), "kendall": float(kendalltau(x, y).statistic)}


def validate_job(
    settings: Settings,
    benchmark: str | Benchmark,
    *,
    n_front: int = 12,
    n_sample: int = 24,
    seed: int = 0,
    split: str = "test",
) -> tuple[Path, dict]:
    from flowfront.compile.plots import plot_validation

    bench = load_benchmark(benchmark, settings.configs_dir, own_dir=settings.workspace.own)
    folder = settings.workspace.benchmark(bench.name)
    frontier = Frontier.load(folder.frontier(), expect_workflow_hash=bench.workflow.content_hash)
    profiles = Profiles.load(folder.profiles, expect_workflow_hash=bench.workflow.content_hash)
    proxy = Proxy(bench.workflow, profiles, mode=frontier.proxy_mode, **{
        k: v for k, v in frontier.filters.items() if k in {"models", "max_budget", "knobs"}})
    lat_key = f"latency_{frontier.execution}_s"
    front = [(frontier.candidates[i].config, frontier.candidates[i].estimates.model_dump())
             for i in _spread(frontier, n_front, lat_key)]
    exclude = {Configuration.parse(c.config).key() for c in frontier.candidates}
    points = front + sample_configurations(proxy, n_sample, seed, exclude)
    is_front = np.array([True] * len(front) + [False] * (len(points) - len(front)))
    measured = _measure(bench, settings, [c for c, _ in points], split)
    proxy_vals = {"accuracy": np.array([e["accuracy"] for _, e in points]),
                  "latency": np.array([e[lat_key] for _, e in points])}
    meas = {
        "accuracy": np.array([m["accuracy"] for m in measured]),
        "latency": np.array([m[lat_key] for m in measured]),
    }
    report = _report(bench.name, frontier, points, is_front, proxy_vals, meas, measured, split)
    path = folder.validation
    path.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    plot_validation(proxy_vals, meas, is_front, folder.root / "validation.png",
                    f"{bench.name}: proxy vs measured on {split} ({frontier.proxy_mode} proxy)")
    return path, report


def _measure(bench, settings: Settings, configs: list[dict], split: str) -> list[dict]:
    with open_store(settings) as store:
        queries = benchmark_queries(bench, store, prepare_data(bench, store, settings), split)
        backend = benchmark_backend(bench, store, settings)
        return [
            execute(bench, Configuration.parse(c), queries, backend, settings).summary.as_dict()
            for c in configs
        ]


def _report(name, frontier, points, is_front, proxy_vals, meas, measured, split) -> dict:
    if len(points) < 3:
        raise CompileError("too few configurations to validate", hint="raise --n-sample")
    F = np.stack([meas["accuracy"], meas["latency"]], axis=1)
    measured_front = pareto_mask(F, (True, False))
    recall = float((measured_front & is_front).sum() / max(measured_front.sum(), 1))
    lo, hi = F.min(axis=0), F.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    norm = (F - lo) / span  # accuracy and latency both mapped onto [0, 1] over what was executed
    ref = np.array([0.0, 1.1])  # just below the worst accuracy, just beyond the slowest latency
    hv_proxy = hypervolume(norm[is_front], ref, (True, False))
    hv_measured = hypervolume(norm[measured_front], ref, (True, False))
    return {
        "benchmark": name,
        "split": split,
        "proxy_mode": frontier.proxy_mode,
        "execution": frontier.execution,
        "n_frontier_executed": int(is_front.sum()),
        "n_sampled": int((~is_front).sum()),
        "accuracy": _correlations(proxy_vals["accuracy"], meas["accuracy"]),
        "latency": _correlations(proxy_vals["latency"], meas["latency"]),
        "accuracy_bias": float(np.mean(proxy_vals["accuracy"] - meas["accuracy"])),
        # measured (critical path of the executed calls' latencies) over the proxy's estimate
        "latency_ratio_measured_over_proxy": float(
            np.median(meas["latency"] / np.maximum(proxy_vals["latency"], 1e-9))
        ),
        "frontier_recall": recall,
        "measured_frontier_size": int(measured_front.sum()),
        "hypervolume": {
            "proxy_frontier_measured": hv_proxy,
            "measured_frontier": hv_measured,
            "ratio": hv_proxy / hv_measured if hv_measured > 0 else None,
            "reference_point": ref.tolist(),
            "axes": "accuracy and latency min-max normalised over the executed configurations",
        },
        "points": [
            {"config": c, "proxy": e, "measured": m, "frontier": bool(f)}
            for (c, e), m, f in zip(points, measured, is_front, strict=True)
        ],
    }
