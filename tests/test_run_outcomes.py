"""`flowfront run --outcomes`: the whole chain on an outcome table that is not a built-in dataset."""

from __future__ import annotations

import csv
from pathlib import Path

import orjson
import pytest

from tests.helpers import flowfront
from tests.tables import make_table

# the slow tier: it starts subprocesses or servers (make test-fast leaves it out)
pytestmark = pytest.mark.slow

def write_rows(path: Path, header: list[str], rows: list[list]) -> Path:
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


HEADER = ["query_id", "query", "task", "model", "score"]


@pytest.mark.parametrize(
    ("rows", "header", "expected"),
    [
        ([["q1", "hi", "t", "m1", "1"]], ["query_id", "query", "task", "model"], "score"),
        ([["q1", "hi", "t", "m1", "1"], ["q1", "hi", "t", "m2", "1.5"]], HEADER, "line 3, column 'score'"),
        ([["q1", "hi", "t", "m1", "1"], ["q1", "hi", "t", "m1", "0"]], HEADER, "line 3, column 'model'"),
        ([["q1", "hi", "t", "m1", "1"], ["q2", "ho", "t", "m1", "0"]], HEADER, "column 'model'"),
    ],
    ids=["missing-column", "score-out-of-range", "duplicate-pair", "single-model"],
)
def test_bad_outcome_tables_name_the_line_and_column(tmp_path: Path, rows, header, expected) -> None:
    table = write_rows(tmp_path / "bad.csv", header, rows)
    out = flowfront("run", "--outcomes", str(table), "--workdir", str(tmp_path / "work"))
    assert out.returncode == 2, out.stderr
    error = out.stderr.strip().splitlines()[-1]
    assert error.startswith("error: ") and "Traceback" not in out.stderr
    assert str(table) in error and expected in error


def test_run_outcomes_end_to_end_on_a_synthetic_table(tmp_path: Path) -> None:
    """Named, the table's benchmark is then served, listed and asked for by its name."""
    table = make_table(tmp_path / "synthetic.csv")
    work = tmp_path / "work"
    out = flowfront(
        "run",
        "--outcomes",
        str(table),
        "--name",
        "my-table",
        "--seeds",
        "1",
        "--strategies",  # the ones checked below (static, best-single and the oracle always run)
        "frontier,knn,full-space",
        "--workdir",
        str(work),
        timeout=900,
    )
    assert out.returncode == 0, out.stderr
    folders = [work / "my-table"]
    assert (work / "own" / "benchmarks" / "my-table.yaml").is_file()
    for command in (["frontier", "my-table"], ["select", "my-table", "--lambda", "0.2"],
                    ["route", "my-table", "a question about topic0", "--lambda", "0.2"]):
        done = flowfront(*command, "--workdir", str(work))
        assert done.returncode == 0, (command, done.stderr)
    from flowfront.settings import Settings
    from tests.helpers import PROJECT_ROOT
    from tests.service.support import make_client

    settings = Settings(workdir=work, configs_dir=PROJECT_ROOT / "configs")
    with make_client(settings, PROJECT_ROOT / "configs" / "workflows") as c:
        served = {w["name"]: w["status"] for w in c.get("/v1/workflows").json()}
        assert served["my-table"] == "ready"
        with table.open(newline="") as fh:
            first = next(csv.DictReader(fh))["query"]
        reply = c.post("/v1/workflows/my-table/run", json={"query": first})
        assert reply.status_code == 200 and reply.json()["workflow"] == "my-table", reply.text
    results = orjson.loads((folders[0] / "eval" / "results.json").read_bytes())
    assert results["benchmark"] == folders[0].name
    # No split column: a seeded 70/30 split by query.
    split = results["split"]
    assert split["train_queries"] + split["test_queries"] == 210 and split["disjoint"]
    assert 0.2 * 210 <= split["test_queries"] <= 0.4 * 210
    assert {"frontier", "static", "knn", "full-space", "best-single", "oracle"} <= set(results["strategies"])
    report = (work / "report.md").read_text()
    assert folders[0].name in report
    timings = orjson.loads((work / "timings.json").read_bytes())
    assert set(timings["benchmarks"][folders[0].name]) >= {"profile", "compile", "validate", "train", "eval"}
    assert str(work / "report.md") in out.stderr


def _drop_columns(src: Path, dst: Path, drop: set[str], add_tokens: bool = False) -> Path:
    with src.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    header = [c for c in rows[0] if c not in drop] + (
        ["prompt_tokens", "completion_tokens"] if add_tokens else []
    )
    with dst.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=header)
        writer.writeheader()
        for row in rows:
            kept = {c: row[c] for c in header if c in row}
            if add_tokens:
                kept |= {"prompt_tokens": 40, "completion_tokens": len(row["response"].split()) * 3}
            writer.writerow(kept)
    return dst


@pytest.mark.parametrize(("drop", "tokens", "objective", "latency"), [
    ({"latency_s"}, False, "cost", "unavailable"),  # cost, no latency, no cards: the cost objective only
    ({"latency_s", "cost_usd"}, True, "latency", "unavailable"),  # token counts only: accuracy only
], ids=["cost-no-latency", "tokens-only"])
def test_an_unseen_table_without_cards_runs_with_what_it_has(
    tmp_path: Path, drop, tokens, objective, latency
) -> None:
    """Model names no card describes: nothing is invented, the report says what was unavailable."""
    table = _drop_columns(
        make_table(tmp_path / "full.csv", n_queries=120), tmp_path / "table.csv", drop, tokens
    )
    work = tmp_path / "work"
    out = flowfront("run", "--outcomes", str(table), "--seeds", "1", "--strategies", "frontier",
                    "--workdir", str(work), timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    folder = next(p for p in work.iterdir() if p.name.startswith("outcomes-"))
    frontier = orjson.loads((folder / "frontier.json").read_bytes())
    assert frontier["objective"] == objective
    results = orjson.loads((folder / "eval" / "results.json").read_bytes())
    assert results["latency_source"].startswith(latency)
    assert "unavailable" in (work / "report.md").read_text()


def test_an_outcome_table_runs_from_python_and_its_artifacts_load_by_name(tmp_path: Path) -> None:
    """The Python API's face of `run --outcomes`: run_outcomes, then load_frontier / load_router by
    the table's name with no internal import, and one string routed as one query."""
    import flowfront as ff
    from tests.helpers import PROJECT_ROOT

    settings = ff.Settings(workdir=tmp_path / "work", configs_dir=PROJECT_ROOT / "configs")
    row = ff.run_outcomes(make_table(tmp_path / "t.csv", n_queries=120), "py-table", settings, seeds=1,
                          strategies=["frontier"])
    assert row["benchmark"] == "py-table" and row["results"]["strategies"]["frontier"]
    frontier = ff.load_frontier("py-table", settings)
    router = ff.load_router("py-table", settings)
    picks = router.route("What is 3 plus 4, multiplied by 5?", ff.Preference(lambda_=0.2))
    assert len(picks) == 1 and picks[0].id in {c.id for c in frontier.candidates}
    with pytest.raises(ff.FlowfrontError, match="no-such-strategy"):
        ff.run_outcomes(tmp_path / "t.csv", "py-table", settings, strategies=["no-such-strategy"])
    with pytest.raises(ff.SpecError, match="name 'Bad Name'"):
        ff.run_outcomes(tmp_path / "t.csv", "Bad Name", settings)
    with pytest.raises(ff.SpecError, match="lambda_"):
        ff.Preference(lambda_=-1)
