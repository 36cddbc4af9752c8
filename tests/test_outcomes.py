"""The generic outcome-table format: round trips, dropped rows, and every error a user may see."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from flowfront.errors import DataError
from flowfront.outcome_tables import OutcomeRow, read_outcome_table, write_outcome_table

HEADER = "query_id,query,task,split,model,score"


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _rows() -> list[OutcomeRow]:
    return [
        OutcomeRow(
            "q1",
            'What is 2+2?\nAnswer "briefly", please',
            "math",
            "train",
            "model-a",
            1.0,
            response="4",
            cost_usd=1.25e-05,
            latency_s=0.42,
            prompt_tokens=12,
            completion_tokens=1,
            reference="4",
        ),
        OutcomeRow(
            "q1",
            'What is 2+2?\nAnswer "briefly", please',
            "math",
            "train",
            "model-b",
            0.0,
            response="5, I think — ünïcødé",
            cost_usd=0.1 + 0.2,
        ),
        OutcomeRow("q2", "Name a colour", "qa", "test", "model-a", 0.6666666667),
    ]


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".json"])
def test_round_trip_preserves_every_field(tmp_path, suffix):
    path = write_outcome_table(_rows(), tmp_path / f"table{suffix}")
    table = read_outcome_table(path, require_multi_model=True)
    assert list(table.rows) == _rows()
    summary = table.summary
    assert (summary.rows_read, summary.rows_kept, summary.queries) == (3, 3, 2)
    assert summary.models == ("model-a", "model-b") and summary.tasks == ("math", "qa")
    assert summary.splits == ("test", "train") and summary.has_split
    json.dumps(summary.as_dict())  # artifacts store it as JSON
    assert not list(tmp_path.glob(".*.tmp"))  # the atomic write left nothing behind


def test_missing_scores_are_dropped_and_counted(tmp_path):
    path = _write(
        tmp_path / "t.csv",
        f"{HEADER}\nq1,Q,t,train,a,1\nq1,Q,t,train,b,\nq2,R,t,train,a,nan\nq2,R,t,train,b,0\n",
    )
    table = read_outcome_table(path)
    assert [(row.query_id, row.model) for row in table] == [("q1", "a"), ("q2", "b")]
    assert table.summary.dropped == {"score missing": 2}
    assert (table.summary.rows_read, table.summary.rows_kept) == (4, 2)
    assert "2 of 4 rows kept" in table.summary.describe()


def test_repeated_query_texts_under_other_ids_are_dropped_at_import_and_said(tmp_path):
    """One text is one prompt with one recorded answer per model: an id sharing its text with a
    later id cannot be replayed as its own query. Reading keeps the file as written; the import
    keeps the last id of each text and its summary says so (it used to lose them silently)."""
    from flowfront.data import ensure_imported, source_for_outcomes
    from flowfront.outcome_tables import without_repeated_texts
    from flowfront.store import connect

    path = _write(tmp_path / "t.csv", f"{HEADER}\nq1,Q,t,train,a,1\nq1,Q,t,train,b,0\nq2,R,t,train,a,1\n"
                                      "q2,R,t,train,b,1\nq3,Q,t,test,a,0\nq3,Q,t,test,b,1\n")
    table = read_outcome_table(path)
    assert table.summary.queries == 3  # the file, as written
    kept = without_repeated_texts(table)
    assert sorted({row.query_id for row in kept}) == ["q2", "q3"] and kept.summary.queries == 2
    assert kept.summary.dropped["sharing their query text with a later id"] == 2
    assert "1 query ids share their text with a later id (q1 -> q3)" in kept.summary.describe()
    with connect(tmp_path / "traces.sqlite") as store:
        source = source_for_outcomes(path)
        summary = ensure_imported(store, source, path=path)
        assert summary["queries"] == 2 and {q[0] for q in store.queries(source)} == {"q2", "q3"}


def test_split_may_be_left_out(tmp_path):
    path = _write(
        tmp_path / "t.jsonl",
        "\n".join(
            json.dumps({"query_id": q, "query": q.upper(), "task": "t", "model": m, "score": s})
            for q, m, s in [("a", "m1", 1), ("a", "m2", 0), ("b", "m1", 0.5)]
        )
        + "\n\n",
    )
    table = read_outcome_table(path)
    assert all(row.split is None for row in table)
    assert not table.summary.has_split and table.summary.splits == ()
    assert "seeded 70/30 split" in table.summary.describe()


def test_score_matrix_marks_missing_outcomes_with_nan(tmp_path):
    path = write_outcome_table(_rows(), tmp_path / "t.jsonl")
    query_ids, models, matrix = read_outcome_table(path).score_matrix()
    assert query_ids == ["q1", "q2"] and models == ["model-a", "model-b"]
    assert matrix[0].tolist() == [1.0, 0.0]
    assert matrix[1, 0] == pytest.approx(0.6666666667) and math.isnan(matrix[1, 1])


def test_unknown_columns_are_kept_out_and_reported(tmp_path):
    path = _write(tmp_path / "t.csv", f"{HEADER},judge\nq1,Q,t,train,a,1,gpt\nq1,Q,t,train,b,0,gpt\n")
    assert read_outcome_table(path).summary.notes == ("ignored unknown columns: judge",)


def _error(path: Path, **kwargs) -> str:
    with pytest.raises(DataError) as caught:
        read_outcome_table(path, **kwargs)
    message = str(caught.value)
    assert str(path) in message
    return message


@pytest.mark.parametrize(
    ("body", "line", "column", "words"),
    [
        ("q1,Q,t,train,a,high\n", 2, "score", "not a number"),
        ("q1,Q,t,train,a,1.5\n", 2, "score", "outside [0, 1]"),
        ("q1,Q,t,train,a,-0.1\n", 2, "score", "outside [0, 1]"),
        ("q1,Q,t,train,a,1\nq2,R,t,train,a,0\nq1,Q,t,train,a,0\n", 4, "model", "lines 2 and 4"),
        ("q1,Q,t,train,a,1\nq1,Q,t,,b,0\n", 3, "split", "set on line 2"),
        ("q1,Q,t,train,a,1\nq1,Other text,t,train,b,0\n", 3, "query", "different query than on line 2"),
        ("q1,Q,t,train,a,1\nq1,Q,t,test,b,0\n", 3, "split", "different split"),
        (",Q,t,train,a,1\n", 2, "query_id", "is empty"),
        ('q1,"multi\nline query",t,train,a,1\nq2,Q,t,train,a,x\n', 4, "score", "not a number"),
    ],
)
def test_csv_row_errors_name_line_and_column(tmp_path, body, line, column, words):
    message = _error(_write(tmp_path / "t.csv", f"{HEADER}\n{body}"))
    assert f"line {line}" in message and f"column {column!r}" in message and words in message


@pytest.mark.parametrize(
    ("extra", "value", "words"),
    [
        ("cost_usd", "-0.5", "finite number >= 0"),
        ("latency_s", "-1", "finite number >= 0"),
        ("prompt_tokens", "-3", "finite number >= 0"),
        ("completion_tokens", "2.5", "whole number"),
        ("cost_usd", "cheap", "not a number"),
    ],
)
def test_optional_number_errors(tmp_path, extra, value, words):
    path = _write(tmp_path / "t.csv", f"{HEADER},{extra}\nq1,Q,t,train,a,1,1\nq1,Q,t,train,b,1,{value}\n")
    message = _error(path)
    assert "line 3" in message and f"column {extra!r}" in message and words in message


def test_missing_required_column_lists_the_columns_found(tmp_path):
    message = _error(_write(tmp_path / "t.csv", "query_id,query,task,model,points\nq1,Q,t,a,1\n"))
    assert "line 1" in message and "column 'score'" in message
    assert "columns found: query_id, query, task, model, points" in message
    jsonl = _write(
        tmp_path / "t.jsonl",
        '{"query_id": "q", "query": "Q", "task": "t", "model": "a", "score": 1}\n'
        '{"query_id": "q", "query": "Q", "task": "t", "score": 1}\n',
    )
    message = _error(jsonl)
    assert "line 2" in message and "column 'model'" in message


def test_json_lines_errors(tmp_path):
    good = '{"query_id": "q", "query": "Q", "task": "t", "model": "a", "score": 1}\n'
    message = _error(_write(tmp_path / "a.jsonl", good + '{"query_id": "q2", "score": \n'))
    assert "line 2" in message and "bad JSON" in message
    message = _error(_write(tmp_path / "b.jsonl", good + "[1, 2]\n"))
    assert "line 2" in message and "instead of an object" in message
    message = _error(_write(tmp_path / "c.json", '[{"query_id": "q"},\n {"query_id": "r"}]\n'))
    assert "line 1" in message and "JSON array" in message
    message = _error(_write(tmp_path / "d.jsonl", good.replace('"score": 1', '"score": true')))
    assert "column 'score'" in message and "not a number" in message


@pytest.mark.parametrize(("name", "text"), [("e.csv", ""), ("h.csv", f"{HEADER}\n"), ("e.jsonl", "\n\n")])
def test_empty_files(tmp_path, name, text):
    message = _error(_write(tmp_path / name, text))
    assert "empty" in message or "no rows" in message


def test_no_scores_at_all_is_an_error(tmp_path):
    assert "none of the 2 rows has a score" in _error(
        _write(tmp_path / "t.csv", f"{HEADER}\nq,Q,t,s,a,\nq,Q,t,s,b,\n")
    )


def test_single_model_is_refused_only_when_routing_needs_two(tmp_path):
    path = _write(tmp_path / "t.csv", f"{HEADER}\nq1,Q,t,train,solo,1\nq2,R,t,train,solo,0\n")
    assert len(read_outcome_table(path)) == 2
    message = _error(path, require_multi_model=True)
    assert "column 'model'" in message and "'solo'" in message and "at least two" in message


def test_unknown_suffix_missing_file_and_bad_encoding(tmp_path):
    assert "unknown outcome-table format '.xlsx'" in _error(_write(tmp_path / "t.xlsx", "x"))
    assert "does not exist" in _error(tmp_path / "absent.csv")
    latin = tmp_path / "latin.csv"
    latin.write_bytes(f"{HEADER}\nq,caf\xe9,t,s,a,1\n".encode("latin-1"))
    assert "UTF-8" in _error(latin)
    with pytest.raises(DataError, match="unknown format"):
        write_outcome_table(_rows(), tmp_path / "t.parquet")
