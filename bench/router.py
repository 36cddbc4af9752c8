"""Router decision latency and training time.

Decision: embedding + prediction over every frontier candidate + selection, one request at a
time, over ~300 real queries (llmrouter and RouterBench; about half are past 256 tokens). Paths,
all in this one run and taking turns in blocks (so load from other processes falls on all alike):

* ``plain``: sentence-transformers on CPU at 256 tokens, the baseline the issue names;
* ``onnx-int8-256``: the int8 ONNX export at 256 tokens;
* ``onnx-int8-128``: the int8 export on the 128-token tail (the default before ``static``);
* ``static-128``: the router's default features (static token vectors, the 128-token tail);
* ``cached``: the default features from the in-process LRU (a repeated query).

The router is fitted on the default features; the other paths feed it their own vectors of the
same width, which times them exactly but routes them less well (timing only).

Ratios are against ``plain``; batched throughput (64 queries per call) is reported for each
uncached path. Target on this 2-core machine: p50 <= 15 ms, p99 <= 50 ms per single request.

Training: ``flowfront train model-route`` (frontier strategy) in a scratch copy of the work
folder, cold (empty embedding cache and no cached outcome matrix; the ONNX export, built once
per machine, is kept) and then warm. The load average before and after is recorded, because the
machine is shared.

    python -m bench router      # needs `flowfront run` (or profile + compile of both benchmarks)
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bench._common import write_result
from bench.router_checkpoint import measure_checkpoint_decisions
from bench.router_embed import load_queries, token_lengths
from flowfront.router.features import Embedder, FeatureConfig, featurize
from flowfront.router.select import Preference
from flowfront.router.train import load_data, make_router
from flowfront.settings import Settings, prepare_environment

BATCH = 64
PATHS = {
    "plain": FeatureConfig(variant="torch", max_seq_length=256),
    "onnx-int8-256": FeatureConfig(variant="onnx-int8", max_seq_length=256),
    "onnx-int8-128": FeatureConfig(variant="onnx-int8"),
    "static-128": FeatureConfig(),
}


def _summary(ms: np.ndarray) -> dict[str, float]:
    return {
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "mean_ms": float(ms.mean()),
    }


def _decisions(router, scale, preference: Preference, export_dir: Path) -> dict[str, Callable]:
    """One callable per path: texts -> chosen candidate indices (embedding + predict + select)."""
    def decide(embedder: Embedder, config: FeatureConfig) -> Callable:
        return lambda texts: router.select(featurize(texts, config, embedder), preference, scale).index

    paths = {
        name: decide(Embedder(c, None, lru_size=0, export_dir=export_dir), c) for name, c in PATHS.items()
    }
    lru = Embedder(FeatureConfig(), None, export_dir=export_dir)
    paths["cached"] = decide(lru, FeatureConfig())
    return paths


def measure_decisions(settings: Settings, export_dir: Path) -> dict:
    data = load_data(settings, "qa-cascade", "frontier")
    router = make_router("frontier", execution=data.frontier.execution).fit(data.X_train, data.train)
    preference = Preference(lambda_=float(np.median(data.lambdas)))
    queries = load_queries(settings.require_data_dir())
    paths = _decisions(router, data.scale, preference, export_dir)
    paths["cached"](queries)  # every query is now in the LRU
    times = _time_single(paths, queries)
    X = data.X_test[:1]
    only = np.array([_timed_ms(lambda: router.select(X, preference, data.scale)) for _ in range(300)])
    burned, burn_load = _under_cpu_burner(lambda: router.select(X, preference, data.scale))
    sample = queries[: 2 * BATCH]
    qps = {name: _throughput(paths[name], sample) for name in PATHS}
    single = {name: _summary(ms) for name, ms in times.items()}
    base = single["plain"]
    return {
        "benchmark": "qa-cascade",
        "candidates": len(data.train.candidate_ids),
        "design": router.design_,
        "queries": len(queries),
        "share_past_256_tokens": float((token_lengths(queries) >= 256).mean()),
        "single_query": single,
        "predict_and_select_only": _summary(only),
        "predict_and_select_under_cpu_burner": {
            **_summary(burned),
            "burners": BURNERS,
            "load_1m_during": burn_load,
            "p50_ratio_to_unloaded": float(np.percentile(burned, 50) / np.percentile(only, 50)),
            "target_p50<=1ms": bool(np.percentile(burned, 50) <= 1.0),
        },
        "batched_queries_per_s": qps,
        "speedup_vs_plain": {
            n: {k: base[k] / s[k] for k in ("p50_ms", "p99_ms")} for n, s in single.items() if n != "plain"
        },
        "throughput_ratio_vs_plain": {n: q / qps["plain"] for n, q in qps.items()},
        "targets_default_static_128": {
            "p50<=15ms": single["static-128"]["p50_ms"] <= 15,
            "p99<=50ms": single["static-128"]["p99_ms"] <= 50,
        },
    }


BURNERS = 2  # one busy process per core of this machine, besides the timed one


def _burn(stop) -> None:
    x = 0
    while not stop.is_set():
        x = (x * 31 + 7) % 1_000_003  # pure-Python spin: holds a core, no I/O


def _under_cpu_burner(fn: Callable, n: int = 300) -> tuple[np.ndarray, float]:
    """Milliseconds per ``fn()`` while BURNERS processes spin on the cores; and the load then."""
    import multiprocessing as mp

    stop = mp.Event()
    procs = [mp.Process(target=_burn, args=(stop,), daemon=True) for _ in range(BURNERS)]
    for proc in procs:
        proc.start()
    try:
        time.sleep(5.0)  # let the 1-minute load average start to show them
        times = np.array([_timed_ms(fn) for _ in range(n)])
        return times, round(os.getloadavg()[0], 2)
    finally:
        stop.set()
        for proc in procs:
            proc.join(timeout=5)


def _time_single(paths: dict[str, Callable], queries: list[str], blocks: int = 6) -> dict[str, np.ndarray]:
    """Milliseconds per one-query decision for each path; paths take turns per block of queries,
    in a rotating order, so load from other processes falls on all of them alike."""
    for fn in paths.values():  # warm-up: lazy loads, allocator, first-run graph optimisation
        for q in queries[:3]:
            fn([q])
    times = {name: np.empty(len(queries)) for name in paths}
    names = list(paths)
    for b, block in enumerate(np.array_split(np.arange(len(queries)), blocks)):
        for name in names[b % len(names) :] + names[: b % len(names)]:
            for i in block:
                times[name][i] = _timed_ms(lambda f=paths[name], q=queries[i]: f([q]))
    return times


def _timed_ms(fn: Callable) -> float:
    started = time.perf_counter()
    fn()
    return (time.perf_counter() - started) * 1e3


def _throughput(decide: Callable, texts: list[str]) -> float:
    started = time.perf_counter()
    for i in range(0, len(texts), BATCH):
        decide(texts[i : i + BATCH])
    return len(texts) / (time.perf_counter() - started)


def measure_training(settings: Settings, scratch: Path) -> dict:
    """Seconds of `train` on model-route, cold then warm, in a scratch copy of the work folder."""
    from flowfront.router.train import train_job

    work = scratch / "work"
    (work / "model-route").mkdir(parents=True)
    for name in ("profiles.json", "frontier.json"):
        shutil.copy(settings.workdir / "model-route" / name, work / "model-route" / name)
    for suffix in ("", "-wal", "-shm"):
        src = Path(str(settings.store_path) + suffix)
        if src.exists():
            shutil.copy(src, work / src.name)
    onnx = settings.workdir / "embeddings" / "onnx"
    if onnx.is_dir():  # the export is per machine, not per training run
        shutil.copytree(onnx, work / "embeddings" / "onnx", ignore=shutil.ignore_patterns(".export.lock"))
    local = settings.model_copy(update={"workdir": work})
    out = {}
    for label in ("cold", "warm"):
        started = time.perf_counter()
        _, metrics = train_job(local, "model-route", "frontier")
        out[f"train_model_route_{label}_s"] = time.perf_counter() - started
        out[f"fit_{label}_s"] = metrics["fit_seconds"]
    out |= {"train_queries": metrics["train_queries"], "candidates": metrics["candidates"],
            "targets": {"cold<=300s": out["train_model_route_cold_s"] <= 300,
                        "warm<=60s": out["train_model_route_warm_s"] <= 60}}
    return out


def main() -> None:
    prepare_environment()
    settings = Settings()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="flowfront-bench-router-") as tmp:
        decisions = measure_decisions(settings, settings.workdir / "embeddings" / "onnx")
        training = measure_training(settings, Path(tmp))
    checkpoint = measure_checkpoint_decisions(settings)
    write_result("router", {**decisions, "training": training, "checkpoint_decision": checkpoint,
                            "loadavg_1_5_15_before_after": [load_before, os.getloadavg()]})
    for name, s in decisions["single_query"].items():
        qps = decisions["batched_queries_per_s"].get(name)
        print(
            f"{name:14s} p50 {s['p50_ms']:6.1f}  p99 {s['p99_ms']:6.1f} ms"
            + (f"  {qps:6.1f} q/s batched" if qps else "")
        )
    print(
        f"predict+select only p50 {decisions['predict_and_select_only']['p50_ms']:.2f} ms "
        f"({decisions['predict_and_select_under_cpu_burner']['p50_ms']:.2f} ms under {BURNERS} CPU burners); "
        f"train model-route cold {training['train_model_route_cold_s']:.0f}s, warm "
        f"{training['train_model_route_warm_s']:.0f}s"
    )


if __name__ == "__main__":
    main()
