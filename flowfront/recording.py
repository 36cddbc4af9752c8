"""Record a live benchmark once; replay it everywhere.

``record`` runs *every* configuration of a (small) workflow on each query through the live cache,
so each distinct call is made once, at its node's largest budget, and every configuration any
later stage picks is answerable offline. Queries run one after another and a query counts as
recorded only when all its configurations finished: a killed run resumes at the first query
not complete and makes no finished call again.

``export`` writes the complete queries and the calls they used to one gzip JSONL file with its
provenance (model files' sha256, server version, machine, date) and grades the answer-producing
calls (tests for code, the reference number for math), so replay needs no model and no judge.
``import_recording`` loads such a file into a trace store as a replay source.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from flowfront.artifacts import write_atomic
from flowfront.backends.base import Backend
from flowfront.benchmarks import Benchmark
from flowfront.errors import DataError
from flowfront.executor import Executor, Query
from flowfront.parsers import PARSERS, extract_number
from flowfront.space import all_configurations, resolve
from flowfront.store import Trace, TraceStore

FORMAT = "flowfront-recording"
FORMAT_VERSION = 1


def recorded_source(bench: Benchmark) -> str:
    """Where ``record`` lists the queries it finished (in the recording workdir's store)."""
    return f"recorded:{bench.name}"


@dataclass
class RecordProgress:
    done: int
    total: int
    live_calls: int
    seconds: float


def interleave(train: Sequence[Query], test: Sequence[Query]) -> list[Query]:
    """train, test, train, test, ...: a recording stopped early still has both splits."""
    out: list[Query] = []
    for i in range(max(len(train), len(test))):
        out.extend(q for q in (train[i] if i < len(train) else None, test[i] if i < len(test) else None) if q)
    return out


async def record(bench: Benchmark, backend: Backend, store: TraceStore, queries: Sequence[Query], *,
                 concurrency: int = 4, progress: Callable[[RecordProgress], None] | None = None) -> int:
    """Run every configuration on each query not yet recorded; returns how many were recorded now."""
    configs = [resolve(bench.workflow, c) for c in all_configurations(bench.workflow)]
    source = recorded_source(bench)
    finished = {row[0] for row in store.queries(source)}
    todo = [q for q in queries if q.query_id not in finished]
    executor = Executor(bench.workflow, backend, concurrency=concurrency, timeout_s=backend_timeout(backend))
    started, done = time.monotonic(), len(queries) - len(todo)
    for query in todo:
        results = await asyncio.gather(*(executor.run(c, query) for c in configs))
        failed = next((r for r in results if r.error is not None), None)
        if failed is not None:
            raise DataError(f"recording {bench.name!r} stopped at query {query.query_id}: {failed.error}",
                            hint="fix the backend and run again: recorded calls are kept and not repeated")
        store.put_queries(source, [(query.query_id, query.text, query.task, query.split, query.reference)])
        done += 1
        if progress is not None:
            progress(
                RecordProgress(
                    done, len(queries), getattr(backend, "live_calls", 0), time.monotonic() - started
                )
            )
    return len(todo)


def backend_timeout(backend: Backend) -> float:
    settings = getattr(getattr(backend, "inner", None), "settings", None)
    return float(getattr(settings, "call_timeout_s", 600.0))


# -- export / import -----------------------------------------------------------------------------

def _answer_nodes(bench: Benchmark) -> dict[str, str]:
    """llm nodes whose output can be the workflow's answer, with their parser."""
    parser = {"number": "number", "tests": "code"}.get(bench.spec.match)
    return {n: node.parser for n, node in bench.workflow.llm_nodes().items() if node.parser == parser}


def _grade_call(bench: Benchmark, node: str | None, parser: str | None, response: str | None,
                reference: str | None) -> float | None:
    if parser is None or reference is None:
        return None
    answer = PARSERS[parser](response)
    if bench.spec.match == "number":
        return float(answer is not None and answer == (extract_number(reference) or reference))
    from flowfront.sandbox import reference_tests, run_tests

    tests = reference_tests(reference)
    return None if tests is None else float(run_tests(answer, *tests).passed)


def export(bench: Benchmark, store: TraceStore, path: Path, provenance: dict[str, Any]) -> dict[str, Any]:
    """Write the complete queries and their calls to ``path`` (gzip JSONL, atomic)."""
    queries = store.queries(recorded_source(bench))
    if not queries:
        raise DataError(
            f"nothing recorded for {bench.name!r} in {store.url.shown}", hint="run `flowfront record` first"
        )
    refs = {q[0]: q[4] for q in queries}
    answer_nodes = _answer_nodes(bench)
    models = set(bench.workflow.all_models())
    lines = [orjson.dumps({"kind": FORMAT, "schema_version": FORMAT_VERSION, "benchmark": bench.name,
                           "workflow_hash": bench.workflow.content_hash, "provenance": provenance})]
    lines += [orjson.dumps({"query": list(q)}) for q in queries]
    n = 0
    for t in store.iter_traces(models=models):
        if t.error is not None or t.query_id not in refs:
            continue
        node = t.request.get("node")
        answer_node = answer_nodes.get(node) if isinstance(node, str) else None
        score = _grade_call(bench, node, answer_node, t.response, refs[t.query_id])
        row = {
            "key": t.key,
            "prompt_key": t.prompt_key,
            "model": t.model,
            "budget": t.budget,
            "request": t.request,
            "response": t.response,
            "prompt_tokens": t.prompt_tokens,
            "completion_tokens": t.completion_tokens,
            "latency_s": t.latency_s,
            "cost_usd": t.cost_usd,
            "score": score,
            "query_id": t.query_id,
            "created_at": t.created_at,
        }
        lines.append(orjson.dumps({"trace": row}))
        n += 1
    # mtime=0: the same traces give the same bytes, so a re-export does not change the committed file
    write_atomic(path, gzip.compress(b"\n".join(lines) + b"\n", compresslevel=9, mtime=0))
    return {"queries": len(queries), "traces": n, "bytes": path.stat().st_size}


def read_recording(path: Path) -> tuple[dict[str, Any], list[tuple[Any, ...]], list[Trace]]:
    """Header, queries and traces of a recording file; errors name the file and line."""
    if not path.is_file():
        raise DataError(
            f"recording {path} not found", hint="record it with `flowfront record` or fix the path"
        )
    header: dict[str, Any] | None = None
    queries: list[tuple[Any, ...]] = []
    traces: list[Trace] = []
    try:
        raw = gzip.decompress(path.read_bytes())
    except (OSError, EOFError) as exc:
        raise DataError(
            f"{path}: not a gzip file ({exc})", hint="export it again with `flowfront record --export`"
        ) from None
    for no, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = orjson.loads(line)
            if header is None:
                if item.get("kind") != FORMAT or item.get("schema_version") != FORMAT_VERSION:
                    raise ValueError(f"not a {FORMAT} v{FORMAT_VERSION} file")
                header = item
            elif "query" in item:
                queries.append(tuple(item["query"]))
            else:
                traces.append(Trace(**item["trace"], source="recording"))
        except (orjson.JSONDecodeError, ValueError, TypeError, KeyError) as exc:
            raise DataError(
                f"{path}: line {no}: {exc}", hint="the file is damaged; export it again"
            ) from None
    if header is None:
        raise DataError(f"{path} is empty", hint="export it again")
    return header, queries, traces


def recording_source(path: Path) -> str:
    return "recording-" + hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def import_recording(store: TraceStore, path: Path) -> tuple[str, dict[str, Any]]:
    """Load a recording into ``store`` once (skipped when the same file is there); (source, summary)."""
    source = recording_source(path)
    current = store.import_record(source)
    if current is not None:
        return source, current[1]
    header, queries, traces = read_recording(path)
    store.delete_source(source)
    store.put_many(Trace(**{**vars_of(t), "source": source}) for t in traces)
    store.put_queries(source, queries)
    summary = {"rows_read": len(traces), "rows_kept": len(traces), "queries": len(queries),
               "models": sorted({t.model for t in traces}), "dropped": {}, "provenance": header["provenance"]}
    store.record_import(source, source.removeprefix("recording-"), summary)
    return source, summary


def vars_of(t: Trace) -> dict[str, Any]:
    return {f: getattr(t, f) for f in Trace.__dataclass_fields__}


def provenance(bench: Benchmark, cards: dict[str, Any], *, started: float | None = None) -> dict[str, Any]:
    """Where a recording came from: model files, server version, machine, date."""
    from importlib import metadata

    def version(dist: str) -> str | None:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return None

    models = {
        m: (cards[m].local.sha256 if m in cards and cards[m].local else None)
        for m in bench.workflow.all_models()
    }
    return {
        "models": models,
        "server": f"llama-cpp-python {version('llama_cpp_python')}",
        "litellm": version("litellm"),
        "flowfront": version("flowfront"),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average": [round(x, 2) for x in os.getloadavg()],
        },
        "recorded_at": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "latency_source": "recorded (wall time of streamed calls to llama.cpp on this machine)",
        "grading": "answer-producing calls graded at export: "
        + {"number": "final number vs the reference", "tests": "the problem's unit tests, sandboxed"}.get(
            bench.spec.match, bench.spec.match
        ),
    }

