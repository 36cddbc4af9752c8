"""Service load: routed requests per second over loopback, against executing in process.

The server runs in its own process (``flowfront serve``), so client and server do not share an
event loop; the client is aiohttp with 64 connections. Replay backend, qa-cascade, router
strategy, a lambda per request drawn from the frontier's sweep. Two passes, each on a fresh
server with the on-disk embedding cache off (so nothing embedded by train or eval is reused):

* ``repeated``: 10,000 requests drawn with replacement from the test split. Repeats hit the
  feature cache; the result says how many.
* ``distinct``: every test query once (cold: each one runs the embedding model).
* ``every_query_new``: 10,000 requests over every recorded query of the benchmark (train and
  test) on a server whose memo and feature caches are off, so each request runs the embedding
  model as a never-seen query would; once with the default one embedding thread, once with two.
  Beside it, the embedding ceiling: the same texts featurized in this process in batches of the
  server's batch size with the same thread count, nothing else running.

The baseline executes the same (query, candidate) pairs the server chose with the Executor in
process, in the same run; the overhead ratio is served time per request over direct time.
Target on this 2-core machine: >= 200 routed requests/s with 0 errors (``repeated`` pass).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench._common import PROJECT_ROOT, write_result
from flowfront.settings import Settings

REQUESTS = int(os.environ.get("FLOWFRONT_BENCH_REQUESTS", "10000"))
CONNECTIONS = 64
BENCHMARK = "qa-cascade"


def _artifacts(settings: Settings) -> tuple[Settings, Path | None]:
    """Settings whose workdir holds qa-cascade's frontier and router; built in a temp dir if missing."""
    from flowfront.benchmarks import load_benchmark
    from flowfront.compile.artifact import Frontier
    from flowfront.errors import FlowfrontError
    from flowfront.router.artifact import load_router

    bench = load_benchmark(BENCHMARK, settings.configs_dir)
    try:
        frontier = Frontier.load(
            settings.workdir / BENCHMARK / "frontier.json", expect_workflow_hash=bench.workflow.content_hash
        )
        load_router(
            settings.workdir / BENCHMARK / "router-frontier", expect_inputs_hash=frontier.content_hash()
        )
        return settings, None
    except FlowfrontError as exc:
        print(
            f"no usable artifacts in {settings.workdir} ({exc}); building them in a temp dir (minutes)",
            flush=True,
        )
    from flowfront.compile.jobs import compile_job, profile_job
    from flowfront.router.train import train_job

    tmp = Path(tempfile.mkdtemp(prefix="flowfront-bench-service-"))
    if settings.store_path.is_file():
        shutil.copy(settings.store_path, tmp / settings.store_path.name)
    built = settings.model_copy(update={"workdir": tmp})
    profile_job(built, BENCHMARK, progress=False)
    compile_job(built, BENCHMARK, mode="correlated")
    train_job(built, BENCHMARK, "frontier")
    return built, tmp


def _test_queries(settings: Settings, split: str = "test") -> list:
    from flowfront.benchmarks import load_benchmark
    from flowfront.runtime import benchmark_queries, open_store, prepare_data

    bench = load_benchmark(BENCHMARK, settings.configs_dir)
    with open_store(settings) as store:
        return benchmark_queries(bench, store, prepare_data(bench, store, settings), split)


UNCACHED = {"FLOWFRONT_ROUTE_MEMO_SIZE": "0", "FLOWFRONT_FEATURE_LRU_SIZE": "0"}


def _embedding_ceiling(texts: list[str], threads: int, batch: int = 64) -> dict:
    """Queries per second of featurize alone (embedding + text statistics), in batches, no cache."""
    from flowfront.router.features import Embedder, FeatureConfig, featurize

    config = FeatureConfig()
    embedder = Embedder(config, cache_dir=None, lru_size=0, num_threads=threads)
    featurize(texts[:batch], config, embedder)  # loads the model outside the timing
    load, started = os.getloadavg()[0], time.perf_counter()
    for i in range(0, len(texts), batch):
        featurize(texts[i : i + batch], config, embedder)
    seconds = time.perf_counter() - started
    return {"queries": len(texts), "threads": threads, "batch": batch, "queries_per_s": len(texts) / seconds,
            "load_average_at_start": load}


def _every_query_new(
    settings: Settings, workflows: Path, lambdas: np.ndarray, rng: np.random.Generator
) -> dict:
    texts = list(dict.fromkeys(q.text for split in ("train", "test") for q in _test_queries(settings, split)))
    jobs = [(texts[i % len(texts)], float(rng.choice(lambdas))) for i in rng.permutation(REQUESTS)]
    out = {}
    for threads in (1, 2):
        run = _served(
            settings, workflows, {"run": jobs}, env={**UNCACHED, "FLOWFRONT_EMBED_THREADS": str(threads)}
        )["run"]
        run.pop("_chosen")
        ceiling = _embedding_ceiling(texts, threads)
        run["embedding_ceiling"] = ceiling
        run["ratio_to_embedding_ceiling"] = run["requests_per_s"] / ceiling["queries_per_s"]
        out[f"embed_threads_{threads}"] = run
    return {"distinct_texts": len(texts), **out}


def _trace_store(port: int) -> Path:
    """A fresh trace store per server: one shared file grew to 1 GB over the passes and past the
    retention cap, so durable responses measured commits queued behind pruning, not group commit."""
    return Path(tempfile.gettempdir()) / f"flowfront-bench-traces-{os.getpid()}-{port}.sqlite"


def _remove_store(port: int) -> None:
    base = _trace_store(port)
    for path in (base, base.with_name(base.name + "-wal"), base.with_name(base.name + "-shm")):
        path.unlink(missing_ok=True)


def _start_server(
    settings: Settings, workflows: Path, port: int, extra: dict | None = None
) -> subprocess.Popen:
    env = {**os.environ, "FLOWFRONT_EMBEDDING_DISK_CACHE": "false", "FLOWFRONT_ACCESS_LOG": "false",
           "FLOWFRONT_LOG_LEVEL": "warning", "FLOWFRONT_TRACE_STORE": str(_trace_store(port)),
           **(extra or {})}
    return subprocess.Popen(
        [sys.executable, "-m", "flowfront.cli", "serve", "--workflows", str(workflows), "--host", "127.0.0.1",
         "--port", str(port), "--workdir", str(settings.workdir), "--data-dir", str(settings.data_dir)],
        env=env, cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )


async def _wait_ready(base: str, proc: subprocess.Popen, timeout: float = 300.0) -> None:
    import aiohttp

    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited: {proc.stderr.read().decode()[-2000:]}")
            try:
                async with session.get(f"{base}/readyz") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass  # not listening yet
            await asyncio.sleep(0.2)
    raise TimeoutError(f"{base} not ready after {timeout}s")


async def _load(base: str, jobs: list[tuple[str, float]]) -> dict:
    """Fire ``jobs`` (query, lambda) over CONNECTIONS connections; latencies, statuses, choices."""
    import aiohttp

    latencies = np.zeros(len(jobs))
    statuses = np.zeros(len(jobs), dtype=np.int64)
    chosen: list[str | None] = [None] * len(jobs)
    next_job = iter(range(len(jobs)))
    url = f"{base}/v1/workflows/{BENCHMARK}/run"

    async def worker(session: aiohttp.ClientSession) -> None:
        for i in next_job:  # one shared iterator: each job is taken once
            query, lam = jobs[i]
            started = time.perf_counter()
            async with session.post(
                url, json={"query": query, "preference": {"lambda": lam}, "strategy": "router"}
            ) as r:
                body = await r.json()
                statuses[i] = r.status
            latencies[i] = time.perf_counter() - started
            if r.status == 200:
                chosen[i] = body["candidate"]["id"]

    connector = aiohttp.TCPConnector(limit=CONNECTIONS)
    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(CONNECTIONS)))
        seconds = time.perf_counter() - started
    return {"latencies": latencies, "statuses": statuses, "chosen": chosen, "seconds": seconds}


async def _metrics(base: str) -> dict[str, float]:
    import aiohttp

    async with aiohttp.ClientSession() as session, session.get(f"{base}/metrics") as r:
        text = await r.text()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(
            ("flowfront_router_lookups_total", "flowfront_batch_size_sum", "flowfront_batch_size_count")
        ):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (Linux): robust to other load on the machine."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _served(settings: Settings, workflows: Path, passes: dict[str, list[tuple[str, float]]],
            env: dict | None = None) -> dict[str, dict]:
    """Run each pass in order against one fresh server; stats per pass (metrics as differences)."""
    port = _free_port()
    proc = _start_server(settings, workflows, port, env)
    base = f"http://127.0.0.1:{port}"
    out = {}
    try:
        asyncio.run(_wait_ready(base, proc))
        before = asyncio.run(_metrics(base))
        for name, jobs in passes.items():
            cpu = _cpu_seconds(proc.pid)
            load = os.getloadavg()[0]
            run = asyncio.run(_load(base, jobs))
            cpu = _cpu_seconds(proc.pid) - cpu
            after = asyncio.run(_metrics(base))
            out[name] = _pass_stats(run, {k: after[k] - before.get(k, 0.0) for k in after}, cpu, load)
            before = after
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        _remove_store(port)
    return out


def _slow_clients(settings: Settings, workflows: Path, n_each: int = 100, timeout_s: float = 2.0) -> dict:
    """Idle, slow-header and slow-body connections (``n_each`` of each) against a server with
    ``timeout_s`` header/body timeouts: how long until the server closed them all, and how many
    normal requests it answered meanwhile."""
    import socket

    import httpx

    port = _free_port()
    proc = _start_server(settings, workflows, port, {"FLOWFRONT_HEADER_TIMEOUT_S": str(timeout_s),
                                                     "FLOWFRONT_BODY_TIMEOUT_S": str(timeout_s)})
    base = f"http://127.0.0.1:{port}"
    heads = [b"", b"GET /healthz HTTP/1.1\r\nHost: x\r\n",
             b"POST /v1/workflows/qa-cascade/run HTTP/1.1\r\nHost: x\r\ncontent-length: 1000\r\n\r\n{"]
    try:
        asyncio.run(_wait_ready(base, proc))
        socks = []
        for head in heads:
            for _ in range(n_each):
                sock = socket.create_connection(("127.0.0.1", port), timeout=5)
                sock.sendall(head) if head else None
                sock.setblocking(False)
                socks.append(sock)
        started, answered, open_socks = time.monotonic(), 0, list(socks)
        while open_socks and time.monotonic() - started < 30:
            answered += httpx.get(f"{base}/healthz", timeout=5).status_code == 200
            still = []
            for sock in open_socks:
                try:
                    data = sock.recv(65536)
                    if data and not data.startswith(b"HTTP/1.1 408"):
                        still.append(sock)
                except BlockingIOError:
                    still.append(sock)
                except OSError:
                    pass
            open_socks = still
        closed_after = time.monotonic() - started
        for sock in socks:
            sock.close()
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        _remove_store(port)
    return {
        "connections": len(socks),
        "still_open": len(open_socks),
        "all_closed_after_s": round(closed_after, 2),
        "timeouts_s": timeout_s,
        "normal_requests_answered_meanwhile": answered,
        "load_1m": round(os.getloadavg()[0], 2),
    }


def _slow_body(settings: Settings, workflows: Path, n_slow: int = 500, seconds: float = 40.0) -> dict:
    """The slow-body flood: ``n_slow`` connections each send a request head and then one body byte
    every 2 s (about 250 B/s in all), against a server with its default limits, while 8 normal
    clients send run requests for ``seconds``: the share of normal requests answered 200, and
    how many slow connections the server closed and when."""
    port = _free_port()
    proc = _start_server(settings, workflows, port)
    flood = _SlowFlood(port, n_slow, seconds, [q.text for q in _test_queries(settings)])
    try:
        asyncio.run(_wait_ready(flood.base, proc))
        out = asyncio.run(flood.run())
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        _remove_store(port)
    return {**out, "seconds": seconds, "body_timeout_s": "default (30 s total, 1 KiB/s after a 2 s grace)",
            "load_1m": round(os.getloadavg()[0], 2)}


class _SlowFlood:
    """Slow-body connections dripping a byte each, and normal clients beside them (``_slow_body``)."""

    HEAD = (b"POST /v1/workflows/qa-cascade/run HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
            b"content-length: 100000\r\n\r\n{")

    def __init__(self, port: int, n_slow: int, seconds: float, queries: list[str]) -> None:
        self.port, self.n_slow, self.seconds, self.queries = port, n_slow, seconds, queries
        self.base = f"http://127.0.0.1:{port}"
        self.closed_at: dict[int, float] = {}
        self.statuses: list[int] = []
        self.started = 0.0
        self.conns: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    def _elapsed(self) -> float:
        return time.monotonic() - self.started

    async def run(self) -> dict:
        import aiohttp

        self.conns = [await asyncio.open_connection("127.0.0.1", self.port) for _ in range(self.n_slow)]
        for _, writer in self.conns:
            writer.write(self.HEAD)
        self.started = time.monotonic()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            normal = [self._normal(session, k) for k in range(8)]
            await asyncio.gather(self._drip(), self._watch_all(), *normal)
        for _, writer in self.conns:
            writer.close()
        times = sorted(self.closed_at.values())
        ok = self.statuses.count(200)
        return {"slow_connections": self.n_slow, "slow_closed": len(times),
                "slow_closed_by_s": round(times[-1], 1) if times else None,
                "normal_requests": len(self.statuses), "normal_answered_200": ok,
                "answered_share": round(ok / max(1, len(self.statuses)), 4)}

    async def _drip(self) -> None:
        while self._elapsed() < self.seconds:
            for i, (reader, writer) in enumerate(self.conns):
                if i in self.closed_at:
                    continue
                if reader.at_eof() or writer.is_closing():
                    self.closed_at[i] = self._elapsed()
                    continue
                try:
                    writer.write(b" ")
                    await writer.drain()
                except (ConnectionError, OSError):
                    self.closed_at[i] = self._elapsed()
            await asyncio.sleep(2.0)

    async def _watch_all(self) -> None:  # a 408 (or a close) ends a slow connection
        async def watch(i: int, reader: asyncio.StreamReader) -> None:
            with contextlib.suppress(ConnectionError, OSError):  # reset by the server: closed all the same
                await reader.read(1)
            self.closed_at.setdefault(i, self._elapsed())

        tasks = [asyncio.create_task(watch(i, r)) for i, (r, _) in enumerate(self.conns)]
        await asyncio.wait(tasks, timeout=self.seconds)

    async def _normal(self, session, k: int) -> None:  # noqa: ANN001 - an aiohttp.ClientSession
        import aiohttp

        i = k
        while self._elapsed() < self.seconds:
            try:
                async with session.post(f"{self.base}/v1/workflows/{BENCHMARK}/run",
                                        json={"query": self.queries[i % len(self.queries)]}) as r:
                    await r.read()
                    self.statuses.append(r.status)
            except (TimeoutError, aiohttp.ClientError):
                self.statuses.append(0)
            i += 8


def _group_commit_cost(settings: Settings, workflows: Path, jobs: list[tuple[str, float]]) -> dict:
    """Throughput with responses waiting for their trace's commit (durable) vs not, same requests,
    warm servers, three rounds interleaved (A B A B A B) so drift hits both alike."""
    rps: dict[str, list[float]] = {"durable": [], "not_durable": []}
    for _ in range(3):
        for name, flag in (("durable", "true"), ("not_durable", "false")):
            run = _served(settings, workflows, {"warm-up": jobs[:2000], "measured": jobs},
                          env={"FLOWFRONT_TRACE_DURABLE": flag})["measured"]
            rps[name].append(run["requests_per_s"])
    durable, loose = float(np.median(rps["durable"])), float(np.median(rps["not_durable"]))
    return {"durable_rps": rps["durable"], "not_durable_rps": rps["not_durable"],
            "throughput_cost": round(1 - durable / loose, 4), "load_1m": round(os.getloadavg()[0], 2),
            "note": "1 - durable/not-durable requests per second, medians of three interleaved rounds"}


def _pass_stats(run: dict, metrics: dict[str, float], cpu: float, load: float) -> dict:
    n = len(run["latencies"])
    lat = run["latencies"] * 1000
    lookups = {k.split('result="')[1].rstrip('"}'): v for k, v in metrics.items() if "lookups" in k}
    total = sum(lookups.values()) or 1.0
    return {
        "requests": n,
        "seconds": run["seconds"],
        "requests_per_s": n / run["seconds"],
        "p50_ms": float(np.percentile(lat, 50)),
        "p99_ms": float(np.percentile(lat, 99)),
        "errors": int(np.count_nonzero(run["statuses"] != 200)),
        "status_counts": {
            str(s): int(c) for s, c in zip(*np.unique(run["statuses"], return_counts=True), strict=True)
        },
        "router_lookups": lookups,
        "cache_hit_rate": (total - lookups.get("computed", 0.0)) / total,
        "mean_batch_size": metrics.get("flowfront_batch_size_sum", 0)
        / max(metrics.get("flowfront_batch_size_count", 0), 1),
        "server_cpu_ms_per_request": 1000 * cpu / n,
        "load_average_at_start": load,
        "_chosen": run["chosen"],
    }


def _direct(settings: Settings, pairs: list[tuple[str, str]]) -> dict:
    """The same (query, candidate) pairs through the Executor in process: no HTTP, no routing."""
    from flowfront.benchmarks import load_benchmark
    from flowfront.compile.artifact import Frontier
    from flowfront.executor import Executor, Query
    from flowfront.runtime import load_cards, make_backend, open_store
    from flowfront.space import Configuration, resolve

    bench = load_benchmark(BENCHMARK, settings.configs_dir)
    frontier = Frontier.load(settings.workdir / BENCHMARK / "frontier.json")
    resolved = {c.id: resolve(bench.workflow, Configuration.parse(c.config)) for c in frontier.candidates}
    with open_store(settings) as store:
        backend = make_backend(
            "replay", store, load_cards(settings), settings, models=bench.workflow.all_models()
        )
        executor = Executor(bench.workflow, backend, concurrency=settings.default_concurrency)

        async def run_all() -> tuple[float, int]:
            gate = asyncio.Semaphore(CONNECTIONS)

            async def one(i: int, query: str, cid: str):
                async with gate:
                    return await executor.run(resolved[cid], Query(f"q{i}", query))

            await one(-1, *pairs[0])  # builds the replay index outside the timing
            started = time.perf_counter()
            results = await asyncio.gather(*(one(i, q, c) for i, (q, c) in enumerate(pairs)))
            return time.perf_counter() - started, sum(r.error is not None for r in results)

        seconds, errors = asyncio.run(run_all())
    return {
        "requests": len(pairs),
        "seconds": seconds,
        "requests_per_s": len(pairs) / seconds,
        "errors": errors,
    }


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _lambdas(settings: Settings) -> np.ndarray:
    import orjson

    router = orjson.loads((settings.workdir / BENCHMARK / "router-frontier" / "router.json").read_bytes())
    return np.asarray(router["metrics"]["lambdas"])


def main() -> None:
    settings, tmp = _artifacts(Settings())
    try:
        queries = _test_queries(settings)
        rng = np.random.default_rng(0)
        lambdas = _lambdas(settings)
        workflows = Path(tempfile.mkdtemp(prefix="flowfront-bench-workflows-"))
        shutil.copy(settings.configs_dir / "workflows" / f"{BENCHMARK}.yaml", workflows)

        def draw() -> list[tuple[str, float]]:
            picks = rng.integers(0, len(queries), REQUESTS)
            return [(queries[i].text, float(rng.choice(lambdas))) for i in picks]

        first, again = draw(), draw()
        served = _served(settings, workflows, {"repeated": first, "repeated_warm": again})
        distinct = [(q.text, float(rng.choice(lambdas))) for q in queries]
        served |= _served(settings, workflows, {"distinct": distinct})
        new = _every_query_new(settings, workflows, lambdas, rng)
        pairs = [(job[0], c) for job, c in zip(first, served["repeated"]["_chosen"], strict=True)
                 if c is not None]
        commit = _group_commit_cost(settings, workflows, first)
        slow = _slow_clients(settings, workflows)
        slow_body = _slow_body(settings, workflows)
        for stats in served.values():
            stats.pop("_chosen")
        direct = _direct(settings, pairs)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    rep = served["repeated"]
    per_direct = direct["seconds"] / direct["requests"]
    for stats in served.values():  # served wall time per request over direct executor time per request
        stats["overhead_ratio_vs_direct"] = stats["seconds"] / stats["requests"] / per_direct
    ratio = rep["overhead_ratio_vs_direct"]
    write_result("service", {
        "benchmark": BENCHMARK, "strategy": "router", "backend": "replay", "connections": CONNECTIONS,
        "test_queries": len(queries), **served, "every_query_new": new, "direct_executor": direct,
        "overhead_ratio_served_vs_direct": ratio,
        "overhead_ratio_warm_vs_direct": served["repeated_warm"]["overhead_ratio_vs_direct"],
        "group_commit": commit,
        "slow_clients": slow,
        "slow_body": slow_body,
        "notes": _SERVICE_NOTES,
        "targets": _targets(rep, new, commit, slow, slow_body, served),
    })
    _print_summary(served, new, direct, ratio)


_SERVICE_NOTES = (
    "repeated: fresh server, draws with replacement from the test split (the first sight of each query runs "
    "the embedding model); repeated_warm: as many draws again on the same server; distinct: fresh server, "
    "every test query once. The on-disk embedding cache is off in every pass. cache_hit_rate: share of "
    "requests whose router estimates did not run the embedding model (memo or feature-row cache); the "
    "router's boosters still run for feature-cache hits.")


def _targets(rep: dict, new: dict, commit: dict, slow: dict, slow_body: dict, served: dict) -> dict:
    embed = [new[k] for k in new if k.startswith("embed")]
    return {"repeated>=200rps": rep["requests_per_s"] >= 200,
            "every_query_new>=300rps": max(p["requests_per_s"] for p in embed) >= 300,
            "group_commit_cost<=10%": commit["throughput_cost"] <= 0.10,
            "slow_clients_closed": slow["still_open"] == 0,
            "slow_body_flood_answered>=99%": slow_body["answered_share"] >= 0.99,
            "zero_errors": all(p["errors"] == 0 for p in [*served.values(), *embed])}


def _print_summary(served: dict, new: dict, direct: dict, ratio: float) -> None:
    for name, p in served.items():
        print(f"{name}: {p['requests_per_s']:.0f} req/s, p50 {p['p50_ms']:.1f} ms, p99 {p['p99_ms']:.1f} ms, "
              f"{p['errors']} errors, cache hit rate {p['cache_hit_rate']:.3f}, "
              f"server CPU {p['server_cpu_ms_per_request']:.2f} ms/request")
    for name, p in ((k, v) for k, v in new.items() if k.startswith("embed")):
        print(f"every query new, {name}: {p['requests_per_s']:.0f} req/s ({p['errors']} errors), embedding "
              f"ceiling {p['embedding_ceiling']['queries_per_s']:.0f} q/s, "
              f"ratio {p['ratio_to_embedding_ceiling']:.2f}")
    print(f"direct executor: {direct['requests_per_s']:.0f} req/s; served/direct time per request "
          f"x{ratio:.1f} (warm x{served['repeated_warm']['overhead_ratio_vs_direct']:.1f})")


if __name__ == "__main__":
    main()
