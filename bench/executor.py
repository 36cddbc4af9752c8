"""Executor throughput on replay: direct replay vs the same replay through litellm.

Targets (2-core machine): ≥ 2,000 replayed calls/s through the executor, and under 10 s to run one
qa-cascade configuration over the whole ARC + Winogrande test split.
"""

from __future__ import annotations

import time

from bench._common import write_result
from flowfront.benchmarks import load_benchmark
from flowfront.runtime import benchmark_queries, execute, load_cards, make_backend, open_store, prepare_data
from flowfront.settings import Settings


def _timed(bench, config, queries, backend, settings) -> tuple[float, int, dict]:
    started = time.perf_counter()
    out = execute(bench, config, queries, backend, settings)
    elapsed = time.perf_counter() - started
    return elapsed, sum(len(r.calls) for r in out.results), out.summary.as_dict()


def main() -> None:
    settings = Settings()
    cards = load_cards(settings)
    bench = load_benchmark("qa-cascade", settings.configs_dir)
    config = bench.default_config
    with open_store(settings) as store:
        data = prepare_data(bench, store, settings)
        queries = benchmark_queries(bench, store, data, "test")
        models = bench.workflow.all_models()
        direct = make_backend("replay", store, cards, settings, models=models)
        _timed(bench, config, queries[:20], direct, settings)  # warm the index and the tokenizer
        runs = [_timed(bench, config, queries, direct, settings) for _ in range(3)]
        split_s, calls, summary = min(runs, key=lambda r: r[0])
        sample = queries[:300]
        via_litellm = make_backend("replay-litellm", store, cards, settings, models=models)
        _timed(bench, config, sample[:10], via_litellm, settings)
        lit_s, lit_calls, _ = _timed(bench, config, sample, via_litellm, settings)
        dir_s, dir_calls, _ = _timed(bench, config, sample, direct, settings)
    direct_rate = calls / split_s
    litellm_rate = lit_calls / lit_s
    write_result("executor", {
        "benchmark": "qa-cascade",
        "config": config.model_dump(mode="json"),
        "split": "test",
        "queries": len(queries),
        "calls": calls,
        "split_seconds": split_s,
        "replay_calls_per_s": direct_rate,
        "replay_via_litellm_calls_per_s": litellm_rate,
        "litellm_overhead_ratio": (dir_calls / dir_s) / litellm_rate,
        "summary": summary,
        "targets": {"calls_per_s>=2000": direct_rate >= 2000, "split_seconds<10": split_s < 10},
    })
    print(
        f"replay: {direct_rate:,.0f} calls/s, split in {split_s:.2f}s; via litellm: {litellm_rate:,.0f} "
        "calls/s"
    )


if __name__ == "__main__":
    main()
