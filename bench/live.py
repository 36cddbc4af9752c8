"""Live models on this machine: llama.cpp alone vs through flowfront, parallel branches, recordings.

    python -m bench live

1. Per local model, decode throughput (completion tokens / wall s) of the same greedy streamed
   call made directly with httpx against the server and through flowfront's executor (litellm),
   interleaved A B A B so drift hits both; the overhead is their ratio in this run.
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

from bench._common import write_result
from flowfront.settings import PROJECT_ROOT, Settings, prepare_environment

PROMPT = [{"role": "user", "content": "List the first twelve prime numbers, one per line, with a short note each."}]
MAX_TOKENS = 256  # a typical answer length: the per-call cost of the client is amortised as in real use
ROUNDS = 5


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


async def _via_flowfront(executor, resolved, query) -> tuple[float, int]:
    started = time.perf_counter()
    res = await executor.run(resolved, query)
    if res.error:
        raise RuntimeError(res.error)
    return time.perf_counter() - started, sum(c.completion_tokens for c in res.calls)


def _workflow(models: list[str], parallel: bool):
    from flowfront.spec import Workflow

    nodes = {f"n{i}": {"kind": "llm", "messages": [{"role": "user", "content": "{query}"}],
                       "parser": "raw", "sampling": {"temperature": 0}, "models": [m], "budgets": [MAX_TOKENS]}
             for i, m in enumerate(models)}
    flow = [{"parallel": [[n] for n in nodes]}] if parallel else list(nodes)
    return Workflow.model_validate({"name": "bench-live", "nodes": nodes, "flow": flow, "output": "n0"})


def throughput(settings: Settings, cards, bases: dict[str, str]) -> dict:
    from flowfront.backends.litellm_client import LiteLLMBackend
    from flowfront.executor import Executor, Query
    from flowfront.space import Configuration, resolve

    out = {}
    for model, base in sorted(bases.items()):
        wf = _workflow([model], parallel=False)
        backend = LiteLLMBackend(cards, settings, models=[model])
        executor = Executor(wf, backend, timeout_s=600)
        resolved = resolve(wf, Configuration.parse({"nodes": {"n0": {"model": model, "budget": MAX_TOKENS}}}))
        query = Query("q", PROMPT[0]["content"])
        direct, through, loads = [], [], []
        _direct(base, model)  # warm the server's prompt cache alike for both paths
        for _ in range(ROUNDS):
            loads.append(_load())
            w, n = _direct(base, model)
            direct.append(n / w)
            w, n = asyncio.run(_via_flowfront(executor, resolved, query))
            through.append(n / w)
        d, t = statistics.median(direct), statistics.median(through)
        out[model] = {"direct_tok_per_s": round(d, 2), "flowfront_tok_per_s": round(t, 2),
                      "overhead": round(d / t - 1, 4), "rounds": ROUNDS, "max_tokens": MAX_TOKENS, "load_1m": loads}
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
