"""Replay fidelity: executing recorded data reproduces what the raw RouterBench CSVs say.

The expected numbers are computed here straight from the CSV files, without the converter.
"""

from __future__ import annotations

import ast
import csv
import re
from collections import Counter

import pytest

from flowfront.benchmarks import load_benchmark
from flowfront.runtime import benchmark_queries, execute, load_cards, make_backend, open_store, prepare_data
from flowfront.space import Configuration
from tests.helpers import DATA_DIR

MODELS = [
    "WizardLM/WizardLM-13B-V1.2", "claude-instant-v1", "claude-v1", "claude-v2", "gpt-3.5-turbo-1106",
    "gpt-4-1106-preview", "meta/code-llama-instruct-34b-chat", "meta/llama-2-70b-chat",
    "mistralai/mistral-7b-chat", "mistralai/mixtral-8x7b-chat", "zero-one-ai/Yi-34B-Chat",
]


def raw_rows(*files: str) -> dict[str, dict]:
    """sample_id -> CSV row of the given test files, for sample_ids on exactly one row of the
    task's train and test files (the few split-straddling duplicates are the converter's to merge,
    and its own tests cover them)."""
    csv.field_size_limit(1 << 30)
    seen: Counter[str] = Counter()
    rows: dict[str, dict] = {}
    for name in files:
        for part in (name, name.replace("_test", "_train")):
            with open(DATA_DIR / "routerbench" / f"{part}.csv", newline="") as fh:
                for row in csv.DictReader(fh):
                    seen[row["sample_id"]] += 1
                    if part == name:
                        rows[row["sample_id"]] = row
    return {sid: row for sid, row in rows.items() if seen[sid] == 1}


@pytest.fixture(scope="module")
def setup(imported_settings):
    settings = imported_settings
    cards = load_cards(settings)
    out = {}
    with open_store(settings) as store:
        for name in ("qa-cascade", "code-budget", "qa-vote"):
            bench = load_benchmark(name, settings.configs_dir)
            queries = benchmark_queries(bench, store, prepare_data(bench, store, settings), "test")
            out[name] = (bench, queries)
    return settings, cards, out


def run(setup, name: str, config: dict, ids: set[str]):
    settings, cards, benches = setup
    bench, queries = benches[name]
    chosen = [q for q in queries if q.query_id in ids]
    with open_store(settings) as store:
        backend = make_backend("replay", store, cards, settings, models=bench.workflow.all_models())
        return execute(bench, Configuration.parse(config), chosen, backend, settings), chosen


@pytest.mark.parametrize("model", MODELS)
def test_single_model_accuracy_and_cost_match_the_csv(setup, model: str) -> None:
    cases = [
        ("qa-cascade", {"knobs": {"checker": "off"}, "nodes": {"answer": {"model": model}}},
         raw_rows("arc_challenge_test", "winogrande_test")),
        ("code-budget", {"nodes": {"solve": {"model": model}}}, raw_rows("mbpp_test")),
    ]
    for name, config, rows in cases:
        out, chosen = run(setup, name, config, set(rows))
        assert len(chosen) > 100
        expected_acc = sum(float(rows[q.query_id][model]) for q in chosen) / len(chosen)
        expected_cost = sum(float(rows[q.query_id][f"{model}|total_cost"]) for q in chosen) / len(chosen)
        assert out.summary.accuracy == pytest.approx(expected_acc, abs=1e-12), name
        assert out.summary.cost_usd == pytest.approx(expected_cost, rel=1e-9), name


def letter(text: str) -> str | None:
    """An independent, deliberately simple reading of a one-letter answer."""
    found = re.findall(r"(?<![A-Za-z])([A-E])(?![A-Za-z])", text.strip())
    return found[0] if found else None


def test_vote_of_three_matches_an_independent_majority_vote(setup) -> None:
    voters = ["gpt-4-1106-preview", "mistralai/mixtral-8x7b-chat", "zero-one-ai/Yi-34B-Chat"]
    rows = raw_rows("arc_challenge_test", "winogrande_test")
    config = {"knobs": {"k": 3}, "nodes": {"answer": [{"model": m} for m in voters]}}
    out, chosen = run(setup, "qa-vote", config, set(rows))
    correct = 0
    for q in chosen:
        row = rows[q.query_id]
        answers = [letter(ast.literal_eval(row[f"{m}|model_response"])[0]) for m in voters]
        counts = Counter(a for a in answers if a is not None)
        ranked = counts.most_common()
        majority = ranked[0][0] if ranked and (len(ranked) == 1 or ranked[1][1] < ranked[0][1]) else None
        voted = majority if majority is not None else answers[0]
        # ground truth: the letter of the models the data marks correct (any of all eleven)
        truth = {
            letter(ast.literal_eval(row[f"{m}|model_response"])[0]) for m in MODELS if float(row[m]) == 1.0
        }
        correct += voted is not None and voted in truth
    assert out.summary.accuracy == pytest.approx(correct / len(chosen), abs=1e-12)
    assert len(chosen) > 700
