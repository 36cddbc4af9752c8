"""`exec model-route --outcomes`: any outcome table in the generic format runs through the workflow."""

from __future__ import annotations

import csv
from pathlib import Path

import orjson
import pytest

from tests.helpers import flowfront

# the slow tier: it starts subprocesses or servers (make test-fast leaves it out)
pytestmark = pytest.mark.slow

MODELS = ["small-a", "small-b", "large-c"]


def write_table(path: Path, *, with_latency: bool) -> dict[str, float]:
    """30 queries x 3 models, no split column; returns each model's mean score."""
    fields = ["query_id", "query", "task", "model", "score", "cost_usd"] + (
        ["latency_s"] if with_latency else []
    )
    totals = dict.fromkeys(MODELS, 0.0)
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        for q in range(30):
            for i, model in enumerate(MODELS):
                score = float((q + i) % 3 != 0) if model != "large-c" else 1.0
                totals[model] += score
                row = {"query_id": f"q{q}", "query": f"question number {q}?", "task": "toy", "model": model,
                       "score": score, "cost_usd": 0.001 * (i + 1)}
                if with_latency:
                    row["latency_s"] = 0.5 * (i + 1)
                writer.writerow(row)
    return {m: t / 30 for m, t in totals.items()}


def test_exec_on_a_custom_outcome_table(tmp_path: Path) -> None:
    table = tmp_path / "toy.csv"
    means = write_table(table, with_latency=True)
    config = '{"nodes": {"answer": {"model": "small-b"}}}'
    proc = flowfront("exec", "model-route", "--outcomes", str(table), "--split", "all", "--json",
                     "--config", config, "--workdir", str(tmp_path / "w"))
    assert proc.returncode == 0, proc.stderr
    out = orjson.loads(proc.stdout)
    assert out["n"] == 30
    assert out["accuracy"] == pytest.approx(means["small-b"])
    assert out["cost_usd"] == pytest.approx(0.002)
    assert out["latency_sequential_s"] == pytest.approx(1.0)
    # with no split column, a seeded 70/30 split is made
    test = orjson.loads(
        flowfront(
            "exec",
            "model-route",
            "--outcomes",
            str(table),
            "--split",
            "test",
            "--json",
            "--workdir",
            str(tmp_path / "w"),
        ).stdout
    )
    assert 3 <= test["n"] <= 16


def test_outcome_table_without_latency_or_cards_runs_with_latency_unavailable(tmp_path: Path) -> None:
    """No latency column and no cards: latency is unavailable (0, labelled), never invented."""
    table = tmp_path / "toy.csv"
    write_table(table, with_latency=False)
    proc = flowfront("exec", "model-route", "--outcomes", str(table), "--split", "all", "--json",
                     "--workdir", str(tmp_path / "w"))
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    out = orjson.loads(proc.stdout)
    assert out["latency_parallel_s"] == 0.0 and out["cost_usd"] > 0
