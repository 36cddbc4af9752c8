"""RouterBench and LLMRouter converters, on the real data and on small broken copies."""

from __future__ import annotations

import ast
import csv
import hashlib
import json
import os
from pathlib import Path

import pytest

from flowfront.converters import LLMROUTER_COMPLETION_TOKENS, convert_llmrouter, convert_routerbench
from flowfront.errors import DataError
from flowfront.outcome_tables import read_outcome_table, write_outcome_table
from flowfront.parsers import extract_choice
from flowfront.tokens import count_tokens

DATA_DIR = Path(os.environ.get("FLOWFRONT_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))
pytestmark = pytest.mark.skipif(
    not (DATA_DIR / "routerbench").is_dir(), reason=f"no recorded data at {DATA_DIR}"
)


@pytest.fixture(scope="module")
def routerbench():
    return convert_routerbench(DATA_DIR)


@pytest.fixture(scope="module")
def llmrouter():
    return convert_llmrouter(DATA_DIR)


def test_routerbench_shape(routerbench):
    summary = routerbench.summary
    assert len(summary.models) == 11 and summary.tasks == ("arc-challenge", "mbpp", "winogrande")
    assert summary.splits == ("test", "train")
    pairs = [(row.query_id, row.model) for row in routerbench]
    assert len(pairs) == len(set(pairs)) == summary.rows_kept
    # 3178 CSV rows; 14 sample_ids occur twice and are merged, so 3164 queries.
    assert summary.queries == 3164 and summary.rows_read == 3178 * 11
    assert summary.rows_kept + sum(summary.dropped.values()) == summary.rows_read


def test_routerbench_row_matches_the_csv(routerbench):
    with (DATA_DIR / "routerbench" / "winogrande_test.csv").open(newline="", encoding="utf-8") as handle:
        source = next(csv.DictReader(handle))
    model = "claude-v2"
    row = next(r for r in routerbench if r.query_id == source["sample_id"] and r.model == model)
    assert row.query == ast.literal_eval(source["prompt"])[0]
    assert row.response == ast.literal_eval(source[f"{model}|model_response"])[0]
    assert row.score == float(source[model]) and row.cost_usd == float(source[f"{model}|total_cost"])
    assert (row.task, row.split) == ("winogrande", "test")
    assert row.prompt_tokens == count_tokens(row.query) and row.completion_tokens == count_tokens(
        row.response
    )


def test_routerbench_costs_are_cl100k_tokens_at_list_prices(routerbench):
    # RouterBench priced calls with cl100k counts, so our counts reproduce its costs exactly.
    prices = {
        "gpt-4-1106-preview": (10, 30),
        "claude-instant-v1": (0.8, 2.4),
        "mistralai/mixtral-8x7b-chat": (0.6, 0.6),
    }
    for row in routerbench:
        if row.model in prices:
            price_in, price_out = prices[row.model]
            expected = (row.prompt_tokens * price_in + row.completion_tokens * price_out) / 1e6
            assert row.cost_usd == pytest.approx(expected, rel=1e-9, abs=1e-12), (row.query_id, row.model)


def test_routerbench_duplicate_sample_ids_are_merged(routerbench):
    rows = {row.model: row for row in routerbench if row.query_id == "arc-challenge.val.136"}
    assert len(rows) == 11 and {row.split for row in rows.values()} == {"test"}
    gpt35 = rows["gpt-3.5-turbo-1106"]
    # Its score comes from the row that recorded the prompt twice; its cost from the single-prompt row.
    assert gpt35.score == 1.0 and gpt35.cost_usd == pytest.approx(0.000476)
    assert any("14 sample_ids" in note for note in routerbench.summary.notes)


def test_routerbench_reference_is_the_letter_of_the_correct_models(routerbench):
    by_query: dict[str, list] = {}
    for row in routerbench:
        by_query.setdefault(row.query_id, []).append(row)
    with_reference = 0
    for rows in by_query.values():
        reference = rows[0].reference
        assert all(row.reference == reference for row in rows)
        if rows[0].task == "mbpp":
            assert reference is None
            continue
        labels = "AB" if rows[0].task == "winogrande" else "ABCDE"
        letters = {extract_choice(row.response, labels) for row in rows if row.score == 1.0} - {None}
        assert letters == ({reference} if reference else set())
        with_reference += reference is not None
    assert with_reference >= 2700  # of 2737 ARC + Winogrande queries


def test_routerbench_task_filter(tmp_path):
    table = convert_routerbench(DATA_DIR, tasks=["MBPP"])
    assert table.summary.tasks == ("mbpp",) and table.summary.queries == 427
    with pytest.raises(DataError, match="unknown RouterBench task"):
        convert_routerbench(DATA_DIR, tasks=["hellaswag"])
    with pytest.raises(DataError, match="does not exist"):
        convert_routerbench(tmp_path)


def _mini_routerbench(tmp_path: Path, rows: list[list[str]]) -> Path:
    folder = tmp_path / "routerbench"
    folder.mkdir(exist_ok=True)
    header = [
        "",
        "sample_id",
        "prompt",
        "eval_name",
        "m1",
        "m2",
        "m1|model_response",
        "m2|model_response",
        "m1|total_cost",
        "m2|total_cost",
    ]
    for split, body in (
        ("train", rows),
        (
            "test",
            [
                [
                    "9",
                    "mbpp.9",
                    "['Write f']",
                    "mbpp",
                    "1.0",
                    "0.0",
                    "['def f(): pass']",
                    "['no']",
                    "0.1",
                    "0.2",
                ]
            ],
        ),
    ):
        with (folder / f"mbpp_{split}.csv").open("w", newline="", encoding="utf-8") as handle:
            csv.writer(handle).writerows([header, *body])
    return tmp_path


def test_routerbench_missing_outcome_is_dropped_and_counted(tmp_path):
    data = _mini_routerbench(
        tmp_path,
        [["0", "mbpp.0", "['Write g']", "mbpp", "1.0", "", "['def g(): pass']", "['x']", "0.1", "0.2"]],
    )
    table = convert_routerbench(data, tasks=["mbpp"])
    assert table.summary.dropped == {"score missing": 1}
    assert [(row.query_id, row.model) for row in table] == [
        ("mbpp.0", "m1"),
        ("mbpp.9", "m1"),
        ("mbpp.9", "m2"),
    ]


@pytest.mark.parametrize(
    ("cells", "column", "words"),
    [
        ({2: "not a list"}, "prompt", "not a Python list"),
        ({2: "['a', 'b']"}, "prompt", "2 different ones"),
        ({4: "2.0"}, "m1", "outside [0, 1]"),
        ({8: "-0.1"}, "m1|total_cost", "negative cost"),
        ({6: "__import__('os')"}, "m1|model_response", "not a Python list"),
    ],
)
def test_routerbench_bad_cells_name_file_line_and_column(tmp_path, cells, column, words):
    row = ["0", "mbpp.0", "['Write g']", "mbpp", "1.0", "0.0", "['def g(): pass']", "['x']", "0.1", "0.2"]
    for position, value in cells.items():
        row[position] = value
    with pytest.raises(DataError) as caught:
        convert_routerbench(_mini_routerbench(tmp_path, [row]), tasks=["mbpp"])
    message = str(caught.value)
    assert "mbpp_train.csv" in message and "line 2" in message and f"column {column!r}" in message
    assert words in message


def test_llmrouter_shape_and_ids(llmrouter):
    summary = llmrouter.summary
    assert len(summary.models) == 9 and len(summary.tasks) == 14 and summary.splits == ("test", "train")
    pairs = [(row.query_id, row.model) for row in llmrouter]
    assert len(pairs) == len(set(pairs))
    # 6108 scored queries x 9 models; the 119 train copies of test queries are dropped.
    assert summary.rows_read == 6108 * 9 and summary.dropped == {"train copy of a test query": 119 * 9}
    assert summary.queries == 6108 - 119
    texts = {split: {row.query for row in llmrouter if row.split == split} for split in ("train", "test")}
    assert not texts["train"] & texts["test"]
    for row in llmrouter.rows[::97]:
        assert row.query_id == f"{row.task}-{hashlib.sha1(row.query.encode()).hexdigest()[:12]}"


def test_llmrouter_values_follow_the_files(llmrouter):
    prices = json.loads((DATA_DIR / "llmrouter" / "models.json").read_text())
    scores = json.loads((DATA_DIR / "llmrouter" / "test_scores.json").read_text())
    first = scores[0]
    rows = {row.model: row for row in llmrouter if row.query == first["question"]}
    assert {model: row.score for model, row in rows.items()} == first["scores"]
    for row in llmrouter.rows[::53]:
        assert row.completion_tokens == LLMROUTER_COMPLETION_TOKENS[row.task]
        assert row.prompt_tokens == count_tokens(row.query)
        price = prices[row.model]
        expected = (
            row.prompt_tokens * price["input_price"] + row.completion_tokens * price["output_price"]
        ) / 1e6
        assert row.cost_usd == pytest.approx(expected)
        assert row.response is None and row.latency_s is None and row.reference is not None


def test_llmrouter_keeping_the_overlap_disambiguates_ids():
    table = convert_llmrouter(DATA_DIR, drop_train_test_overlap=False)
    assert table.summary.rows_kept == 6108 * 9 and table.summary.queries == 6108
    # Test copies come after their train twins, so they get the "-2" suffix.
    suffixed = {row.query_id for row in table if row.query_id.endswith("-2")}
    assert len(suffixed) == 119 and {row.split for row in table if row.query_id in suffixed} == {"test"}


def test_converted_tables_are_valid_outcome_tables(tmp_path, routerbench, llmrouter):
    for name, table in (("rb.jsonl", routerbench), ("lr.csv", llmrouter)):
        back = read_outcome_table(write_outcome_table(table.rows, tmp_path / name), require_multi_model=True)
        assert back.rows == table.rows
