"""Live models on this machine: llama.cpp alone vs through flowfront, parallel branches, recordings.

    python -m bench live

1. Per local model, decode throughput (completion tokens / wall s) of the same greedy streamed
   call made directly with httpx against the server and through flowfront's executor, with each
   live transport (litellm, the default, and the direct SSE reader), in a rotating order each
   round so drift hits all; the overhead is the median of the paired per-round ratios, and the
   client CPU per call is measured beside it.
2. A parallel node: two branches on two models (two servers), run by the executor concurrently vs
   the same two calls one after the other; ratio of wall times.
3. Each committed recording: how many calls, their summed recorded latency, the wall time the
   recording took and the load it was taken under.

Needs the servers (`flowfront models serve`); without them the section says so and is skipped.
The machine is shared: the 1-minute load average is stated beside every timing.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time

import httpx
import orjson

from bench._common import PROJECT_ROOT, write_result
from flowfront.settings import Settings, prepare_environment

# A prompt every model answers at length, so each call runs to the budget (SmolLM2 answers a
# short-answer prompt in ~27 tokens, where the fixed per-call cost dominates; that cost is
# reported on its own below as fixed_overhead_ms).
PROMPT = [
    {
        "role": "user",
        "content": "Write a long story about a lighthouse keeper and a storm, in at least 300 words.",
    }
]
MAX_TOKENS = 256  # a typical reasoning-answer length in the live benchmarks
ROUNDS = 5


def _rounds(card) -> int:
    """As many rounds as fit ~2 minutes a path (the machine's noise is ~15% a call), 5 at least."""
    seconds = card.ttft_s + MAX_TOKENS / (card.decode_tok_per_s or 10.0)
    return max(5, min(15, int(120 / seconds)))


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def _direct(base: str, model: str) -> tuple[float, int]:
    """The same streamed call flowfront makes, read with plain httpx: what the server gives alone."""
    started, tokens = time.perf_counter(), 0
    body = {"model": model, "messages": PROMPT, "max_tokens": MAX_TOKENS, "temperature": 0, "stream": True}
    with httpx.stream("POST", f"{base}/chat/completions", json=body, timeout=600) as reply:
        for line in reply.iter_lines():
            if line.startswith("data: {") and '"content"' in line:
                tokens += 1
    return time.perf_counter() - started, tokens


async def _via_flowfront(executor, resolved, query, cpu: list[float] | None = None) -> tuple[float, int]:
    started, cpu_started = time.perf_counter(), time.process_time()
    res = await executor.run(resolved, query)
    if res.error:
        raise RuntimeError(res.error)
    if cpu is not None:
        cpu.append(time.process_time() - cpu_started)
    return time.perf_counter() - started, sum(c.completion_tokens for c in res.calls)


def _workflow(models: list[str], parallel: bool):
    from flowfront.spec import Workflow

    nodes = {
        f"n{i}": {
            "kind": "llm",
            "messages": [{"role": "user", "content": "{query}"}],
            "parser": "raw",
            "sampling": {"temperature": 0},
            "models": [m],
            "budgets": [MAX_TOKENS],
        }
        for i, m in enumerate(models)
    }
    flow = [{"parallel": [[n] for n in nodes]}] if parallel else list(nodes)
    return Workflow.model_validate({"name": "bench-live", "nodes": nodes, "flow": flow, "output": "n0"})


def throughput(settings: Settings, cards, bases: dict[str, str]) -> dict:
    """Per model: the server read alone vs through flowfront's executor with each live transport
    (``litellm``, the default, and ``direct``), interleaved per round, and the client CPU a call."""
    from flowfront.backends.litellm_client import LiteLLMBackend
    from flowfront.executor import Executor, Query
    from flowfront.space import Configuration, resolve

    out = {}
    for model, base in sorted(bases.items()):
        wf = _workflow([model], parallel=False)
        resolved = resolve(wf, Configuration.parse({"nodes": {"n0": {"model": model, "budget": MAX_TOKENS}}}))
        query = Query("q", PROMPT[0]["content"])
        executors = {t: Executor(wf, LiteLLMBackend(cards, settings.model_copy(update={"live_transport": t}),
                                                    models=[model]), timeout_s=600)
                     for t in ("direct", "litellm")}
        rates: dict[str, list[float]] = {"alone": [], "direct": [], "litellm": []}
        extra: dict[str, list[float]] = {"direct": [], "litellm": []}
        cpu: dict[str, list[float]] = {"direct": [], "litellm": []}
        loads = []
        _direct(base, model)  # warm the server's prompt cache alike for every path
        for executor in executors.values():
            asyncio.run(_via_flowfront(executor, resolved, query))  # and litellm's import, once
        rounds = _rounds(cards[model])
        for i in range(rounds):
            loads.append(_load())
            walls: dict[str, float] = {}
            for path in ("alone", "direct", "litellm")[i % 3:] + ("alone", "direct", "litellm")[:i % 3]:
                if path == "alone":
                    walls[path], n = _direct(base, model)
                else:
                    walls[path], n = asyncio.run(_via_flowfront(executors[path], resolved, query, cpu[path]))
                rates[path].append(n / walls[path])
            for transport in extra:
                extra[transport].append(walls[transport] - walls["alone"])
        med = {k: statistics.median(v) for k, v in rates.items()}
        paired = {t: statistics.median(a / b for a, b in zip(rates["alone"], rates[t], strict=True)) - 1
                  for t in extra}
        out[model] = {
            "direct_tok_per_s": round(med["alone"], 2),
            "flowfront_tok_per_s": round(med["litellm"], 2),
            "overhead": round(paired["litellm"], 4),
            "fixed_overhead_ms": round(1000 * statistics.median(extra["litellm"]), 1),
            "client_cpu_s_per_call": round(statistics.median(cpu["litellm"]), 3),
            "flowfront_direct_transport_tok_per_s": round(med["direct"], 2),
            "overhead_direct_transport": round(paired["direct"], 4),
            "client_cpu_s_per_call_direct_transport": round(statistics.median(cpu["direct"]), 3),
            "overhead_is": "median over rounds of (alone tok/s / flowfront tok/s) - 1, the three paths "
            "run back to back in a rotating order each round",
            "rounds": rounds,
            "max_tokens": MAX_TOKENS,
            "load_1m": loads,
            "transport": "flowfront_* and overhead: the executor with live_transport=litellm (the "
            "default); *_direct_transport: the same executor reading the stream with httpx",
        }
    return out


def parallel_node(settings: Settings, cards, bases: dict[str, str]) -> dict:
    from flowfront.backends.litellm_client import LiteLLMBackend
    from flowfront.executor import Executor, Query
    from flowfront.space import Configuration, resolve

    models = sorted(bases)[:2]
    if len(models) < 2:
        return {"skipped": "needs two served models"}
    query = Query("q", PROMPT[0]["content"])
    nodes = {f"n{i}": {"model": m, "budget": MAX_TOKENS} for i, m in enumerate(models)}
    runs = {}
    for parallel in (True, False):
        wf = _workflow(models, parallel)
        executor = Executor(wf, LiteLLMBackend(cards, settings, models=models), timeout_s=600)
        resolved = resolve(wf, Configuration.parse({"nodes": nodes}))
        runs[parallel] = []
        for _ in range(ROUNDS):
            started = time.perf_counter()
            asyncio.run(executor.run(resolved, query))
            runs[parallel].append(time.perf_counter() - started)
    conc, seq = statistics.median(runs[True]), statistics.median(runs[False])
    return {"models": models, "concurrent_wall_s": round(conc, 3), "sequential_wall_s": round(seq, 3),
            "ratio_sequential_over_concurrent": round(seq / conc, 3), "load_1m": _load(),
            "note": "two llama.cpp servers with one thread each on a 2-core machine: they share the cores"}


def recordings() -> dict:
    from flowfront.recording import read_recording

    out = {}
    for path in sorted((PROJECT_ROOT / "configs" / "recordings").glob("*.jsonl.gz")):
        header, queries, traces = read_recording(path)
        created = sorted(t.created_at for t in traces if t.created_at)
        loads = [t.request.get("load_1m") for t in traces if t.request.get("load_1m") is not None]
        out[header["benchmark"]] = {
            "queries": len(queries), "calls": len(traces),
            "summed_call_latency_s": round(sum(t.latency_s or 0 for t in traces), 1),
            "recording_wall_s": round(created[-1] - created[0], 1) if len(created) > 1 else None,
            "load_1m_median": statistics.median(loads) if loads else None,
            "bytes": path.stat().st_size, "recorded_at": header["provenance"].get("recorded_at"),
        }
    return out


def main() -> None:
    prepare_environment()
    from flowfront.localmodels import api_bases
    from flowfront.modelcards import load_model_cards

    settings = Settings()
    cards = load_model_cards(settings.configs_dir / "models")
    bases = {m: b for m, b in api_bases(settings.models_dir).items() if m in cards}
    result: dict = {"recordings": recordings()}
    if bases:
        result["throughput"] = throughput(settings, cards, bases)
        result["parallel_node"] = parallel_node(settings, cards, bases)
    else:
        result["throughput"] = {"skipped": "no local servers: run `make live` first"}
    write_result("live", result)
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
