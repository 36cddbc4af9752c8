"""Router decision latency: embedding + prediction over every candidate + selection, per query.

Single requests over real queries (up to 256 tokens), for the plain sentence-transformers path and
the int8 ONNX path the router uses, cold (not cached) and warm (cache hit); batched throughput too.
Target on this 2-core machine: p50 ≤ 15 ms and p99 ≤ 50 ms per single request.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from bench._common import write_result
from compile.select import Preference
from flowfront.settings import Settings
from router.features import Embedder, FeatureConfig, featurize
from router.train import load_data, make_router


def _timed(fn, items) -> np.ndarray:
    out = []
    for item in items:
        started = time.perf_counter()
        fn(item)
        out.append((time.perf_counter() - started) * 1000)
    return np.array(out)


def _summary(ms: np.ndarray) -> dict:
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)), "mean_ms": float(ms.mean())}


def main() -> None:
    settings = Settings()
    data = load_data(settings, "qa-cascade", "frontier")  # needs `flowfront run` (profile + compile) first
    router = make_router("frontier", execution=data.frontier.execution).fit(data.X_train, data.train)
    pref = Preference(lambda_=float(data.lambdas[len(data.lambdas) // 2]))
    texts = data.test.texts[:200]
    results = {}
    for label, config in (("plain", FeatureConfig(variant="torch")), ("onnx-int8", FeatureConfig())):
        cold = Embedder(config, cache_dir=None)
        cold.encode(texts[:2])  # load the model outside the timing
        warm = Embedder(config, cache_dir=Path(settings.workdir) / "embeddings")

        def decide(text: str, embedder=cold, config=config) -> None:
            router.select(featurize([text], config, embedder), pref, data.scale)

        results[label] = {"cold": _summary(_timed(decide, texts))}
        if label == "onnx-int8":
            for t in texts:
                warm.encode([t])
            results[label]["cached"] = _summary(_timed(lambda t, w=warm: decide(t, w), texts))
            started = time.perf_counter()
            X = featurize(texts, config, cold)
            router.select(X, pref, data.scale)
            results[label]["batched_queries_per_s"] = len(texts) / (time.perf_counter() - started)
    X1 = data.X_test[:1]
    predict_only = _summary(_timed(lambda _: router.select(X1, pref, data.scale), range(200)))
    best = results["onnx-int8"]["cold"]
    write_result("router", {
        "benchmark": "qa-cascade", "candidates": len(data.train.candidate_ids), "queries": len(texts),
        "paths": results, "predict_and_select_only": predict_only,
        "speedup_p50_vs_plain": results["plain"]["cold"]["p50_ms"] / best["p50_ms"],
        "targets": {"p50<=15ms": best["p50_ms"] <= 15, "p99<=50ms": best["p99_ms"] <= 50},
    })
    print(f"decision p50/p99: plain {results['plain']['cold']['p50_ms']:.1f}/{results['plain']['cold']['p99_ms']:.1f} ms, "
          f"int8 {best['p50_ms']:.1f}/{best['p99_ms']:.1f} ms, cached "
          f"{results['onnx-int8']['cached']['p50_ms']:.1f} ms; predict+select only {predict_only['p50_ms']:.2f} ms")


if __name__ == "__main__":
    main()
