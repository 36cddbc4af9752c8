"""Serving past one process: PostgreSQL against SQLite, workers, a replica killed, real streaming.

``python -m bench scale`` → ``bench/results/scale.json``. Replay backend, qa-cascade, router
strategy, durable traces, every query new (the memo and feature caches off: each request runs
the embedding model), 64 connections from one aiohttp client on the same two cores.

* ``postgres_over_sqlite``: requests per second of one server on a PostgreSQL store over one on
  SQLite, same requests, rounds interleaved (S P S P), PostgreSQL with its default (fsync'd)
  commits, SQLite in WAL with synchronous=NORMAL (flowfront's default).
* ``workers_2_over_1``: ``--workers 2`` over one worker on the SQLite store, interleaved.
* ``kill``: two replicas on one PostgreSQL store, requests spread over both (a client-side load
  balancer that retries a request the dead replica could not answer on the other); replica A is
  killed with SIGKILL halfway and restarted; then every request answered 200 is looked up in
  PostgreSQL: its decision row and its call rows (``lost_on_kill`` counts those missing).
* ``stream``: SmolLM2 served by llama.cpp, a one-node workflow, a 256-token answer: time to first
  token over the non-streamed response time of the same prompt (a fresh store each time, so
  nothing is read back from a cache), chunks, and whether the texts are the same.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench._common import PROJECT_ROOT, chat_workflow, stop_process, write_result
from bench.service import (
    BENCHMARK,
    UNCACHED,
    _artifacts,
    _free_port,
    _lambdas,
    _load,
    _test_queries,
    _wait_ready,
)
from flowfront.settings import Settings

REQUESTS = int(os.environ.get("FLOWFRONT_BENCH_REQUESTS", "10000"))
ROUNDS = 2


def _server(settings: Settings, workflows: Path, port: int, env: dict[str, str], workers: int = 1,
            log: Path | None = None) -> subprocess.Popen:
    full = {
        **os.environ,
        **UNCACHED,
        "FLOWFRONT_EMBEDDING_DISK_CACHE": "false",
        "FLOWFRONT_ACCESS_LOG": "false",
        "FLOWFRONT_LOG_LEVEL": "warning",
        **env,
    }
    out = open(log, "ab") if log is not None else subprocess.DEVNULL  # noqa: SIM115 - the child owns it
    return subprocess.Popen(
        [sys.executable, "-m", "flowfront.cli", "serve", "--workflows", str(workflows), "--host", "127.0.0.1",
         "--port", str(port), "--workdir", str(settings.workdir), "--data-dir", str(settings.data_dir),
         "--workers", str(workers)], env=full, cwd=PROJECT_ROOT, stdout=out, stderr=subprocess.STDOUT)


def _stop(proc: subprocess.Popen) -> None:
    stop_process(proc, grace_s=90)


def _rps(settings: Settings, workflows: Path, jobs: list, env: dict[str, str], workers: int = 1) -> dict:
    port = _free_port()
    proc = _server(settings, workflows, port, env, workers)
    try:
        base = f"http://127.0.0.1:{port}"
        asyncio.run(_wait_ready(base, proc))
        asyncio.run(_load(base, jobs[: min(500, len(jobs))]))  # warm-up: model loaded, pools open
        load = os.getloadavg()[0]
        run = asyncio.run(_load(base, jobs))
    finally:
        _stop(proc)
    errors = int(np.count_nonzero(run["statuses"] != 200))
    return {
        "requests_per_s": len(jobs) / run["seconds"],
        "errors": errors,
        "load_1m_at_start": round(load, 2),
        "p50_ms": float(np.percentile(run["latencies"] * 1000, 50)),
    }


def _interleaved(settings: Settings, workflows: Path, jobs: list, arms: dict[str, tuple[dict, int]]) -> dict:
    runs: dict[str, list[dict]] = {name: [] for name in arms}
    for _ in range(ROUNDS):
        for name, (env, workers) in arms.items():
            runs[name].append(_rps(settings, workflows, jobs, env, workers))
    return {
        name: {
            "requests_per_s": [r["requests_per_s"] for r in rs],
            "errors": sum(r["errors"] for r in rs),
            "p50_ms": [r["p50_ms"] for r in rs],
            "load_1m_at_start": [r["load_1m_at_start"] for r in rs],
            "median_rps": float(np.median([r["requests_per_s"] for r in rs])),
        }
        for name, rs in runs.items()
    }


async def _spread(bases: list[str], jobs: list, kill_at: int, on_kill) -> dict:  # noqa: ANN001 - a callback
    """Send ``jobs`` round-robin over ``bases``; a request a replica cannot answer (connection
    refused or reset) is sent to the other. ``on_kill`` runs once ``kill_at`` requests are done."""
    import aiohttp

    answered: list[str] = []
    statuses: dict[int, int] = {}
    retried = 0
    done = 0
    next_job = iter(range(len(jobs)))
    killed = asyncio.Event()

    async def one(session: aiohttp.ClientSession, i: int) -> None:
        nonlocal retried, done
        query, lam = jobs[i]
        for attempt in range(6):
            base = bases[(i + attempt) % len(bases)]
            try:
                async with session.post(f"{base}/v1/workflows/{BENCHMARK}/run",
                                        json={"query": query, "preference": {"lambda": lam}}) as r:
                    body = await r.json()
                    statuses[r.status] = statuses.get(r.status, 0) + 1
                    if r.status == 200:
                        answered.append(body["trace_id"])
                    break
            except (TimeoutError, aiohttp.ClientError):
                retried += 1
                await asyncio.sleep(0.05)
        done += 1
        if done >= kill_at and not killed.is_set():
            killed.set()
            await asyncio.to_thread(on_kill)

    async def worker(session: aiohttp.ClientSession) -> None:
        for i in next_job:
            await one(session, i)

    connector = aiohttp.TCPConnector(limit=64)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:
        started = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(64)))
        seconds = time.perf_counter() - started
    return {"answered": answered, "statuses": statuses, "retried_on_the_other": retried, "seconds": seconds}


def _kill_test(settings: Settings, workflows: Path, url: str, jobs: list, logs: Path) -> dict:
    from flowfront.store import connect

    ports = [_free_port(), _free_port()]
    env = {"FLOWFRONT_STORE": url}
    procs = [_server(settings, workflows, p, env, log=logs / f"replica-{p}.log") for p in ports]
    bases = [f"http://127.0.0.1:{p}" for p in ports]
    events: dict[str, float] = {}
    try:
        for base, proc in zip(bases, procs, strict=True):
            asyncio.run(_wait_ready(base, proc))

        def kill_and_restart() -> None:
            events["killed_at"] = time.monotonic()
            procs[0].send_signal(signal.SIGKILL)
            procs[0].wait()
            procs[0] = _server(settings, workflows, ports[0], env, log=logs / f"replica-{ports[0]}.log")
            asyncio.run(_wait_ready(bases[0], procs[0]))
            events["restarted_after_s"] = time.monotonic() - events["killed_at"]

        run = asyncio.run(_spread(bases, jobs, len(jobs) // 2, kill_and_restart))
        restarted_serves = asyncio.run(_load(bases[0], jobs[:50]))
    finally:
        for proc in procs:
            _stop(proc)
    with connect(url) as store:
        decisions = {d.id for d in store.decisions(ids=run["answered"]) if d.status == 200}
        with_calls = {c.trace_id for c in store.served_calls()}
    lost = [t for t in run["answered"] if t not in decisions or t not in with_calls]
    return {"requests": len(jobs), "answered_on_kill": len(run["answered"]), "lost_on_kill": len(lost),
            "statuses": {str(k): v for k, v in sorted(run["statuses"].items())},
            "retried_on_the_other_replica": run["retried_on_the_other"], "seconds": run["seconds"],
            "killed_replica_restarted_after_s": round(events.get("restarted_after_s", float("nan")), 2),
            "restarted_replica_answered": int(np.count_nonzero(restarted_serves["statuses"] == 200)),
            "note": "replica A SIGKILLed after half the requests and restarted at once; the client resends "
                    "what A could not answer to B; lost = answered 200 without its decision row or call rows"}


def main() -> None:
    from flowfront.store import connect
    from flowfront.store.pgtemp import PostgresCluster, missing_reason

    if missing_reason() is not None:
        raise RuntimeError(missing_reason())
    settings, tmp = _artifacts(Settings())
    logs = Path(tempfile.mkdtemp(prefix="flowfront-bench-scale-"))
    workflows = logs / "workflows"
    workflows.mkdir()
    shutil.copy(settings.configs_dir / "workflows" / f"{BENCHMARK}.yaml", workflows)
    cluster = PostgresCluster(fast=False).start()
    try:
        with connect(settings.store_url) as src, connect(cluster.url()) as dst:
            src.copy_to(dst)
        rng = np.random.default_rng(0)
        lambdas = _lambdas(settings)
        texts = list(
            dict.fromkeys(q.text for split in ("train", "test") for q in _test_queries(settings, split))
        )
        jobs = [(texts[i % len(texts)], float(rng.choice(lambdas))) for i in rng.permutation(REQUESTS)]
        short = jobs[: REQUESTS // 2]
        engines = _interleaved(settings, workflows, short, {
            "sqlite": ({"FLOWFRONT_TRACE_STORE": str(logs / "served.sqlite")}, 1),
            "postgresql": ({"FLOWFRONT_STORE": cluster.url()}, 1)})
        workers = _interleaved(settings, workflows, short, {
            "workers_1": ({"FLOWFRONT_TRACE_STORE": str(logs / "served-w.sqlite")}, 1),
            "workers_2": ({"FLOWFRONT_TRACE_STORE": str(logs / "served-w.sqlite")}, 2)})
        kill = _kill_test(settings, workflows, cluster.url(), jobs, logs)
    finally:
        cluster.close()
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    stream = _stream()
    result = {
        "benchmark": BENCHMARK,
        "strategy": "router",
        "backend": "replay",
        "connections": 64,
        "every_query_new": True,
        "durable": True,
        "distinct_texts": len(texts),
        "postgres_over_sqlite": engines["postgresql"]["median_rps"] / engines["sqlite"]["median_rps"],
        "engines": engines,
        "workers_2_over_1": workers["workers_2"]["median_rps"] / workers["workers_1"]["median_rps"],
        "workers": workers,
        "answered_on_kill": kill["answered_on_kill"],
        "lost_on_kill": kill["lost_on_kill"],
        "kill": kill,
        "stream": stream,
        "notes": "PostgreSQL 15 with its defaults (fsync, synchronous commit) in a private cluster on this "
                 "machine; "
        "SQLite WAL with synchronous=NORMAL. Two cores carry server(s), PostgreSQL and the client.",
    }
    write_result("scale", result)
    print(
        f"postgres/sqlite x{result['postgres_over_sqlite']:.2f}, workers 2/1 "
        f"x{result['workers_2_over_1']:.2f}, "
        f"kill: {kill['answered_on_kill']} answered, {kill['lost_on_kill']} lost; stream {stream}"
    )


STREAM_MODEL = "smollm2-135m-instruct"
STREAM_PROMPTS = ["Tell me a long story about a lighthouse keeper and the sea.",
                  "Describe, in detail, how bread is made, from the field to the table.",
                  "Write a long letter from a sailor to his family about his first voyage.",
                  "Explain at length why the sky changes colour at sunset.",
                  "Tell a long story about a fox who learns to read."]


def _stream() -> dict:
    """TTFT of a streamed 256-token answer over the non-streamed response time, on the live model."""
    from flowfront.localmodels import serve, stop, weights_path
    from flowfront.modelcards import load_model_cards
    from flowfront.spec import load_workflow

    try:
        import llama_cpp.server  # noqa: F401
    except ImportError:
        return {"skipped": "llama-cpp-python[server] is not installed (make live)"}
    card = load_model_cards(PROJECT_ROOT / "configs" / "models")[STREAM_MODEL]
    settings = Settings()
    if not weights_path(settings.models_dir, card).is_file():
        return {"skipped": f"{STREAM_MODEL} weights are not installed (make live)"}
    root = Path(tempfile.mkdtemp(prefix="flowfront-bench-stream-"))
    models = root / "models"
    models.mkdir()
    os.symlink(weights_path(settings.models_dir, card), weights_path(models, card))
    workflows = root / "wf"
    workflows.mkdir()
    (workflows / "chat.yaml").write_text(chat_workflow(STREAM_MODEL, 256))
    wf = load_workflow(workflows / "chat.yaml")
    servers = serve({STREAM_MODEL: card}, models, log=lambda m: None)
    try:
        rows = [_stream_once(root, workflows, wf, models, servers[STREAM_MODEL].api_base, prompt, i)
                for i, prompt in enumerate(STREAM_PROMPTS)]
    finally:
        stop(models, log=lambda m: None)
        shutil.rmtree(root, ignore_errors=True)
    ttft = [r["ttft_s"] for r in rows]
    whole = [r["plain_s"] for r in rows]
    return {
        "model": STREAM_MODEL,
        "budget": 256,
        "rounds": len(rows),
        "ttft_s_p50": float(np.median(ttft)),
        "plain_s_p50": float(np.median(whole)),
        "ttft_ratio": float(np.median(ttft) / np.median(whole)),
        "chunks": int(np.median([r["chunks"] for r in rows])),
        "same_text": all(r["same"] for r in rows),
        "completion_tokens": [r["tokens"] for r in rows],
        "rows": rows,
        "load_1m": round(os.getloadavg()[0], 2),
        "latency": "measured on this machine (recorded wall time of the HTTP responses)",
    }


def _stream_once(root: Path, workflows: Path, wf, models: Path, api_base: str, prompt: str,  # noqa: ANN001
                 i: int) -> dict:
    import httpx

    from flowfront.compile.artifact import Estimates, Frontier

    out = {}
    one = [{"knobs": {}, "nodes": {"reply": {"model": STREAM_MODEL, "budget": 256}}}]
    estimates = [Estimates(accuracy=0.5, latency_sequential_s=1, latency_parallel_s=1, cost_usd=0)]
    for mode in ("stream", "plain"):
        # a call on another prompt first: llama.cpp's prompt cache must not carry this prompt over
        httpx.post(f"{api_base}/chat/completions", timeout=60, json={
            "model": STREAM_MODEL, "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 1})
        work = root / f"work-{i}-{mode}"
        Frontier.of_configurations(wf, one, estimates).save(work / "chat" / "frontier.json")
        port = _free_port()
        env = {**os.environ, "FLOWFRONT_BACKEND": "litellm", "FLOWFRONT_MODELS_DIR": str(models),
               "FLOWFRONT_LOG_LEVEL": "warning"}
        command = [sys.executable, "-m", "flowfront.cli", "serve", "--workflows", str(workflows),
                   "--port", str(port), "--workdir", str(work)]
        proc = subprocess.Popen(command, env=env, cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        base = f"http://127.0.0.1:{port}"
        try:
            asyncio.run(_wait_ready(base, proc))
            body = {"model": "chat", "messages": [{"role": "user", "content": prompt}]}
            out.update(_streamed(base, body) if mode == "stream" else _plain(base, body))
        finally:
            _stop(proc)
    same = out.pop("text") == out.pop("plain")
    return {**out, "same": same}


def _streamed(base: str, body: dict) -> dict:
    """Time to the first content chunk, the whole stream's time, the chunks and their text."""
    import httpx
    import orjson

    pieces, first = [], None
    started = time.perf_counter()
    request = {**body, "stream": True}
    with httpx.stream("POST", f"{base}/v1/chat/completions", json=request, timeout=300) as reply:
        for line in reply.iter_lines():
            if line.startswith("data: {"):
                chunk = orjson.loads(line[6:])
                text = (chunk.get("choices") or [{}])[0].get("delta", {}).get("content")
                if text:
                    first = first if first is not None else time.perf_counter() - started
                    pieces.append(text)
    return {"ttft_s": first, "stream_s": time.perf_counter() - started, "chunks": len(pieces),
            "text": "".join(pieces)}


def _plain(base: str, body: dict) -> dict:
    import httpx

    started = time.perf_counter()
    reply = httpx.post(f"{base}/v1/chat/completions", json=body, timeout=300).json()
    return {"plain_s": time.perf_counter() - started, "plain": reply["choices"][0]["message"]["content"],
            "tokens": reply["usage"]["completion_tokens"]}
