"""Storage stays bounded: a rejected request leaves one compact decision row, the served store is
pruned to its cap in the background, and `flowfront traces prune` does the same by hand, shrinking the
file on disk."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from flowfront.store import connect
from flowfront.store.testing import decision, trace
from tests.helpers import flowfront
from tests.service.support import copy_workdir, make_client

RUN = "/v1/workflows/qa-cascade/run"


def _store_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


@pytest.mark.slow  # thousands of requests: the edit loop leaves it to make test
def test_a_flood_of_rejected_queries_stays_under_the_cap(trained, workflows_dir, tmp_path) -> None:
    work = copy_workdir(trained, tmp_path / "work")
    store = tmp_path / "served.sqlite"
    filler = "x" * 3000  # a long question: a rejected one is kept only as a prefix
    with make_client(
        work, workflows_dir, TRACE_STORE=str(store), TRACE_MAX_MB="0.15", TRACE_PRUNE_INTERVAL_S="0.2"
    ) as c:
        for i in range(1200):
            r = c.post(RUN, json={"query": f"unrecorded question {i} {filler}", "strategy": "static"})
            assert r.status_code == 422, r.text  # no recorded answer for it
        time.sleep(0.5)  # one more retention pass after the last request
    with connect(store) as served:
        decisions, calls = served.decisions(), served.served_calls()
    assert calls == [] and decisions  # a miss leaves its decision, no call rows
    assert all(d.status == 422 and len(d.query) < 600 and d.candidate is None for d in decisions)
    assert (
        decisions[-1].query.startswith("unrecorded question 1199") and len(decisions) < 1200
    )  # the oldest went
    assert _store_bytes(store) <= 0.25e6, f"{_store_bytes(store):,} bytes for a 0.15 MB cap"


@pytest.mark.slow  # starts a subprocess or a server
def test_traces_prune_cli_shrinks_the_file(tmp_path) -> None:
    path = tmp_path / "served.sqlite"
    with connect(path) as ts:
        ts.put_served(
            [decision(f"r{i:04d}", created_at=1.0 + i, query=os.urandom(1500).hex()) for i in range(2000)], []
        )
    before = _store_bytes(path)
    done = flowfront("traces", "prune", "--trace-store", str(path), "--max-mb", "1")
    assert done.returncode == 0, done.stderr
    assert "removed" in done.stdout and "on disk" in done.stdout
    with connect(path) as ts:
        left = ts.decisions()
        assert ts.size_bytes() <= 1e6 and 0 < len(left) < 2000
    assert left[0].created_at > 1.0  # the oldest went first
    assert _store_bytes(path) <= 1.2e6 < before  # the pages went back to the file system
    assert (
        flowfront("traces", "prune", "--trace-store", str(path)).returncode == 2
    )  # nothing to prune by: one line


@pytest.mark.slow  # starts a subprocess or a server
def test_traces_prune_cli_prunes_one_source_of_recorded_traces(tmp_path) -> None:
    path = tmp_path / "traces.sqlite"
    with connect(path) as ts:
        ts.put_many(
            [trace(f"k{i}", source="live", created_at=1.0) for i in range(5)]
            + [trace("keep", source="other")]
        )
    done = flowfront("traces", "prune", "--store", str(path), "--source", "live", "--max-age-days", "1")
    assert done.returncode == 0 and "removed 5 live traces" in done.stdout, done.stdout + done.stderr
    with connect(path) as ts:
        assert [t.key for t in ts.iter_traces()] == ["keep"]
