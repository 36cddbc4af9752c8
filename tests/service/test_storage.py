"""Storage stays bounded: rejected requests leave compact rows, the served store is pruned to its cap,
and `flowfront traces prune` does the same by hand."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tests.helpers import flowfront
from tests.service.conftest import copy_workdir, make_client

RUN = "/v1/workflows/qa-cascade/run"


def _store_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


def test_ten_thousand_distinct_rejected_queries_stay_under_the_cap(trained, workflows_dir, tmp_path) -> None:
    work = copy_workdir(trained, tmp_path / "work")
    store = tmp_path / "served.sqlite"
    filler = "x" * 3000  # a long question: its prompt must not be stored for a rejected call
    with make_client(work, workflows_dir, TRACE_STORE=str(store), TRACE_MAX_MB="1") as c:
        for i in range(10_000):
            r = c.post(RUN, json={"query": f"unrecorded question {i} {filler}", "strategy": "static"})
            assert r.status_code == 422, r.text  # no recorded answer for it
    with sqlite3.connect(store) as db:
        rows = db.execute("SELECT request FROM traces WHERE error IS NOT NULL LIMIT 5").fetchall()
    assert rows and all(b"messages" not in r[0] and b"prompt_chars" in r[0] for r in rows)
    assert _store_bytes(store) <= 1.5e6, f"{_store_bytes(store):,} bytes for a 1 MB cap"


def test_traces_prune_cli(trained, tmp_path) -> None:
    from flowfront.store import Trace, TraceStore

    path = tmp_path / "t.sqlite"
    with TraceStore(path) as ts:
        ts.put_many(Trace(key=f"k{i}", prompt_key="p", model="m", budget=None, request={"pad": "y" * 2000},
                          response="r", prompt_tokens=1, completion_tokens=1, latency_s=0.1, cost_usd=0.0,
                          source="serve", created_at=1.0 + i) for i in range(2000))
    done = flowfront("traces", "prune", "--store", str(path), "--max-mb", "1")
    assert done.returncode == 0, done.stderr
    with TraceStore(path) as ts:
        assert ts.size_bytes() <= 1e6 and 0 < ts.count() < 2000
        oldest = min(t.created_at for t in ts.iter_traces())
    assert oldest > 1.0  # the oldest went first
    assert flowfront("traces", "prune", "--store", str(path)).returncode == 2  # nothing to prune by: one line
