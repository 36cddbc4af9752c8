"""Router embedding latency: plain sentence-transformers vs the torch / ONNX / int8 variants and caches.

Target (2-core machine): the whole per-query routing decision at p50 <= 15 ms and p99 <= 50 ms for
queries up to 256 tokens; the embedding is most of it. Every path is timed in the same run, one
query at a time, in blocks that take turns (so load from other processes hits all paths alike), and reported
as ratios against plain ``SentenceTransformer.encode([q])``, every path at 256 tokens. Latency is
also split by length: queries cut at the 256-token cap cost several times a typical one. The
router's default (the 128-token tail) is timed with the whole decision in ``bench/router.py``.

    python -m bench.router_embed
"""

from __future__ import annotations

import ast
import csv
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bench._common import write_result
from flowfront.router.features import Embedder, FeatureConfig, resolve_embedding_model
from flowfront.settings import Settings, prepare_environment

MAX_TOKENS = 256
N_PER_SOURCE = 135  # random llmrouter queries and random routerbench prompts each
N_LONGEST = 30  # plus the longest of both, which set p99
N_THROUGHPUT = 128  # two batches
BATCH = 64
VARIANTS = ("torch", "onnx", "onnx-int8")
EncodeFn = Callable[[list[str]], np.ndarray]


def _routerbench_prompts(folder: Path) -> list[str]:
    csv.field_size_limit(1 << 30)
    prompts = []
    for name in ("arc_challenge_test", "winogrande_test", "mbpp_test"):
        with (folder / f"{name}.csv").open(newline="") as handle:
            for row in csv.DictReader(handle):
                parts = ast.literal_eval(row["prompt"])  # a Python-literal list of strings
                prompts.append("\n".join(parts) if isinstance(parts, list) else str(parts))
    return prompts


def load_queries(data_dir: Path, seed: int = 0) -> list[str]:
    """~300 distinct real queries: the longest of both sources plus a random sample of each, shuffled."""
    with (data_dir / "llmrouter" / "queries_test.jsonl").open() as handle:
        llmrouter = sorted({json.loads(line)["query"] for line in handle})
    routerbench = sorted(set(_routerbench_prompts(data_dir / "routerbench")))
    rng = np.random.default_rng(seed)
    longest = sorted(llmrouter + routerbench, key=len)[-N_LONGEST:]
    picked = set(longest)
    for pool in (llmrouter, routerbench):
        rest = [q for q in pool if q not in picked]
        picked.update(rest[i] for i in rng.choice(len(rest), size=N_PER_SOURCE, replace=False))
    queries = sorted(picked)
    rng.shuffle(queries)
    return queries


def token_lengths(queries: list[str]) -> np.ndarray:
    """Untruncated token count of each query (special tokens included)."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(resolve_embedding_model() / "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    return np.array([len(e.ids) for e in tok.encode_batch(queries)])


def time_single(
    paths: dict[str, EncodeFn], queries: list[str], chunks: int = 3
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Milliseconds per one-query call for each path, and the vectors.

    Paths take turns in blocks of ``len(queries) / chunks`` queries, in a rotating order: fine
    enough that load from other processes falls on all paths alike, coarse enough that torch's
    OpenMP workers, which spin for a while after each call, do not steal the cores of the
    next path's call.
    """
    for fn in paths.values():  # warm-up: lazy loads, allocator, first-run graph optimisation
        for q in queries[:3]:
            fn([q])
    times = {name: np.empty(len(queries)) for name in paths}
    vectors = {name: np.empty((len(queries), 384), dtype=np.float32) for name in paths}
    names = list(paths)
    for c, block in enumerate(np.array_split(np.arange(len(queries)), chunks)):
        for name in names[c % len(names) :] + names[: c % len(names)]:
            fn = paths[name]
            for i in block:
                start = time.perf_counter()
                vectors[name][i] = fn([queries[i]])[0]
                times[name][i] = (time.perf_counter() - start) * 1e3
    return times, vectors


def _summary(ms: np.ndarray, at_cap: np.ndarray) -> dict[str, float]:
    return {
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "mean_ms": float(ms.mean()),
        "p50_ms_under_cap": float(np.percentile(ms[~at_cap], 50)),
        "p50_ms_at_cap": float(np.percentile(ms[at_cap], 50)),
        "p99_ms_at_cap": float(np.percentile(ms[at_cap], 99)),
    }


def time_batched(fn: EncodeFn, queries: list[str]) -> float:
    """Queries per second with ``BATCH`` texts per call; each path splits a call into forward
    passes its own way (sentence-transformers 32 texts, the ONNX variants 8)."""
    start = time.perf_counter()
    for i in range(0, len(queries), BATCH):
        fn(queries[i : i + BATCH])
    return len(queries) / (time.perf_counter() - start)


def _uncached(export_dir: Path) -> tuple[dict[str, Embedder], dict[str, float]]:
    """Embedders with no disk cache and no LRU (every call runs the model), and their first-use seconds.

    Exports go to a fresh ``export_dir``, so first use includes exporting and quantising.
    """
    embedders, first_use = {}, {}
    for variant in VARIANTS:
        embedder = Embedder(FeatureConfig(variant=variant, max_seq_length=MAX_TOKENS), None, lru_size=0,
                            export_dir=export_dir)
        start = time.perf_counter()
        embedder.encode(["warm up"])
        first_use[variant] = time.perf_counter() - start
        embedders[variant] = embedder
    return embedders, first_use


def _plain_encoder() -> EncodeFn:
    """The baseline: the packaged model as sentence-transformers loads it, ``.encode([q])``."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(resolve_embedding_model()), device="cpu")
    model.max_seq_length = MAX_TOKENS
    return lambda texts: model.encode(texts, show_progress_bar=False)


def measure(queries: list[str], at_cap: np.ndarray, tmp: Path) -> dict:
    """All numbers of the benchmark, every path measured in this one run."""
    plain = _plain_encoder()
    embedders, first_use = _uncached(tmp / "onnx")
    int8 = FeatureConfig(variant="onnx-int8", max_seq_length=MAX_TOKENS)
    lru = Embedder(int8, tmp / "cache", export_dir=tmp / "onnx")
    lru.encode(queries)  # fills the disk cache and the LRU
    disk = Embedder(int8, tmp / "cache", lru_size=0, export_dir=tmp / "onnx")
    calls_before = lru.model_calls
    paths: dict[str, EncodeFn] = {"plain": plain, **{v: e.encode for v, e in embedders.items()}}
    paths |= {"cache_hit_lru": lru.encode, "cache_hit_disk": disk.encode}
    times, vectors = time_single(paths, queries)
    cosine = {v: np.sum(vectors["plain"] * vectors[v], axis=1) for v in VARIANTS}
    sample = queries[:N_THROUGHPUT]
    return {
        "single_query": {name: _summary(ms, at_cap) for name, ms in times.items()},
        "throughput_qps": {name: time_batched(paths[name], sample) for name in ("plain", *VARIANTS)},
        "agreement_vs_plain": {
            v: {"min_cosine": float(c.min()), "mean_cosine": float(c.mean())} for v, c in cosine.items()
        },
        "first_use_seconds": first_use,
        "model_calls_on_cache_hits": lru.model_calls - calls_before + disk.model_calls,
    }


def _ratios(numbers: dict) -> dict:
    single, qps = numbers["single_query"], numbers["throughput_qps"]
    base = single["plain"]
    keys = ("p50_ms", "p99_ms", "p50_ms_at_cap")
    return {
        "single_query_speedup_vs_plain": {
            name: {k: base[k] / s[k] for k in keys} for name, s in single.items() if name != "plain"
        },
        "throughput_ratio_vs_plain": {name: q / qps["plain"] for name, q in qps.items()},
    }


def main() -> None:
    """Run the benchmark and write ``bench/results/embed.json``."""
    import onnxruntime
    import torch

    prepare_environment()
    queries = load_queries(Settings().require_data_dir())
    lengths = token_lengths(queries)
    at_cap = lengths >= MAX_TOKENS
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="flowfront-bench-") as tmp:
        numbers = measure(queries, at_cap, Path(tmp))
    int8 = numbers["single_query"]["onnx-int8"]
    write_result(
        "embed",
        {
            "queries": len(queries),
            "token_lengths": {
                "p50": float(np.median(lengths)),
                "p90": float(np.percentile(lengths, 90)),
                "share_at_cap": float(at_cap.mean()),
            },
            "max_seq_length": MAX_TOKENS,
            "batch_size": BATCH,
            **numbers,
            **_ratios(numbers),
            "versions": {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__},
            "threads": {"onnxruntime_intra_op": _ort_threads(), "torch": torch.get_num_threads()},
            "loadavg_before_after": [load_before, os.getloadavg()],
            "embedding_targets_onnx_int8": {
                "p50<=15ms": int8["p50_ms"] <= 15,
                "p99<=50ms": int8["p99_ms"] <= 50,
            },
        },
    )
    _print(numbers)


def _ort_threads() -> int:
    from flowfront.router.onnx_embed import default_threads

    return default_threads()


def _print(numbers: dict) -> None:
    qps = numbers["throughput_qps"]
    for name, s in numbers["single_query"].items():
        extra = f"  batch{BATCH} {qps[name]:6.1f} q/s" if name in qps else ""
        print(
            f"{name:15s} p50 {s['p50_ms']:6.2f}  p99 {s['p99_ms']:6.2f}  "
            f"at-cap p50 {s['p50_ms_at_cap']:6.2f}  under-cap p50 {s['p50_ms_under_cap']:6.2f} ms{extra}"
        )
    for v, a in numbers["agreement_vs_plain"].items():
        print(f"{v:15s} cosine vs plain: min {a['min_cosine']:.4f} mean {a['mean_cosine']:.4f}")


if __name__ == "__main__":
    main()
