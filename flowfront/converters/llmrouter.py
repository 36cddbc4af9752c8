"""LLMRouter score files + query files → generic outcome rows (see docs/outcome-tables.md)."""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from flowfront.converters._common import _bad
from flowfront.converters.routerbench import SPLITS
from flowfront.errors import DataError
from flowfront.outcome_tables import OutcomeRow, OutcomeTable, read_jsonl, summarise
from flowfront.tokens import count_tokens_many

# LLMRouter records scores, not responses, so output length is unknown. These ESTIMATES of
# completion tokens per task (cl100k) price each call; they are not measurements. Reference
# lengths quoted are medians over queries_train.jsonl.
LLMROUTER_COMPLETION_TOKENS = {
    # Multiple choice (em_mc): an option letter plus, from chat-tuned models, a sentence of reasoning.
    "mmlu": 32,
    "commonsense_qa": 32,
    "openbook_qa": 32,
    "arc_challenge": 32,
    "gpqa": 32,
    # Logic-grid puzzles are graded on an option letter too: the same short answer.
    "agentverse-logicgrid": 32,
    # Open-domain QA (f1_score): references are 3-4 tokens (90th percentile 7); allow a short sentence.
    "natural_qa": 24,
    "trivia_qa": 24,
    # CommonGen: one or two sentences using ~20 given concepts; the concept list alone is ~51 tokens.
    "commongen": 80,
    # Grade-school math with chain of thought: reference solutions are ~94 tokens (p90 162) and
    # instruction-tuned models are wordier than the annotators. MGSM prompts ask for careful
    # thought and a \boxed answer: the same length.
    "gsm8k": 160,
    "agentverse-mgsm": 160,
    # MATH: reference solutions are ~165 tokens (p90 ~500); model derivations run about twice that.
    "math": 320,
    # MBPP: a 5-20 line Python function plus a line of prose.
    "mbpp": 160,
    # HumanEval: a function body completing the given signature and docstring (tests are ~144 tokens).
    "human_eval": 192,
}
# Tasks not in the table (a newer LLMRouter release) get a middle-of-the-range guess.
DEFAULT_COMPLETION_TOKENS = 128
DROPPED_NO_QUERY = "score record without a query record"
DROPPED_OVERLAP = "train copy of a test query"
_RESTORE = "restore the file from the LLMRouter release"


def _load_json(path: Path) -> object:
    import orjson

    if not path.is_file():
        raise DataError(f"{path} does not exist", hint="restore the LLMRouter files in the data directory")
    try:
        return orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise _bad(path, None, None, f"bad JSON ({exc})", _RESTORE) from None


def _load_queries(path: Path) -> dict[str, list[dict[str, Any]]]:
    """Query records by query text, in file order (a text may occur on several lines)."""
    if not path.is_file():
        raise DataError(f"{path} does not exist", hint="restore the LLMRouter files in the data directory")
    by_text: dict[str, list[dict[str, Any]]] = {}
    for number, record in read_jsonl(path, lambda n, message, _hint: _bad(path, n, None, message, _RESTORE)):
        if not isinstance(record, dict):
            raise _bad(path, number, None, "expected a JSON object", _RESTORE)
        if missing := [key for key in ("query", "task_name", "ground_truth") if key not in record]:
            raise _bad(path, number, missing[0], "missing", _RESTORE)
        by_text.setdefault(record["query"], []).append(record)
    return by_text


def _llmrouter_prices(data_dir: Path) -> dict[str, tuple[float, float]]:
    """(input, output) USD per 1M tokens for every model in models.json."""
    path = data_dir / "llmrouter" / "models.json"
    models = _load_json(path)
    if not isinstance(models, dict):
        raise _bad(path, None, None, "expected an object of models", _RESTORE)
    prices = {}
    for name, card in models.items():
        try:
            prices[name] = (float(card["input_price"]), float(card["output_price"]))
        except (KeyError, TypeError, ValueError):
            raise _bad(
                path,
                None,
                None,
                f"model {name!r}: input_price/output_price missing or not numbers",
                "give every model numeric input_price and output_price (USD per 1M tokens)",
            ) from None
    return prices


@dataclass(slots=True)
class _Joined:
    """One scored query: its query record, split and per-model scores."""

    split: str
    record: dict[str, Any]
    scores: dict[str, float]


def _join_split(data_dir: Path, split: str, counts: Counter[str]) -> list[_Joined]:
    """Score records joined to query records on the query text (the first record when a text repeats)."""
    score_path = data_dir / "llmrouter" / f"{split}_scores.json"
    scores = _load_json(score_path)
    queries = _load_queries(data_dir / "llmrouter" / f"queries_{split}.jsonl")
    if not isinstance(scores, list):
        raise _bad(score_path, None, None, "expected a list of records", _RESTORE)
    joined, used = [], set()
    for position, item in enumerate(scores):
        if not isinstance(item, dict) or "question" not in item or not isinstance(item.get("scores"), dict):
            raise _bad(
                score_path, None, None, f"record {position} needs 'question' and a 'scores' object", _RESTORE
            )
        records = queries.get(item["question"])
        if not records:
            counts[DROPPED_NO_QUERY] += len(item["scores"])
            continue
        used.add(item["question"])
        joined.append(_Joined(split, records[0], _checked_scores(item["scores"], score_path, position)))
    counts[f"{split}: query texts on several lines (joined to the first)"] += sum(
        len(records) > 1 for records in queries.values()
    )
    counts[f"{split}: query lines without scores"] += sum(
        len(records) for text, records in queries.items() if text not in used
    )
    return joined


def _checked_scores(scores: dict[str, Any], path: Path, position: int) -> dict[str, float]:
    for model, value in scores.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
            raise _bad(
                path,
                None,
                None,
                f"record {position}, model {model!r}: score {value!r} is not in [0, 1]",
                "scores must be numbers between 0 and 1",
            )
    return {model: float(value) for model, value in scores.items()}


def _query_ids(joined: list[_Joined]) -> list[str]:
    """``<task>-<sha1 of the text, 12 hex>``, with ``-2``, ``-3``... for repeats, in input order."""
    ids, taken = [], set()
    for item in joined:
        base = f"{item.record['task_name']}-{hashlib.sha1(item.record['query'].encode()).hexdigest()[:12]}"
        query_id, copy = base, 1
        while query_id in taken:
            copy += 1
            query_id = f"{base}-{copy}"
        taken.add(query_id)
        ids.append(query_id)
    return ids


def convert_llmrouter(data_dir: Path, *, drop_train_test_overlap: bool = True) -> OutcomeTable:
    """LLMRouter as an outcome table: one row per (query, model) for the models with scores.

    Scores are joined to query records on the exact query text. ``reference`` is the recorded
    ground truth; ``response`` and ``latency_s`` are None (not recorded). ``prompt_tokens`` is the
    cl100k count of the query text; ``completion_tokens`` is the per-task ESTIMATE in
    :data:`LLMROUTER_COMPLETION_TOKENS`; ``cost_usd`` prices both with ``models.json``.
    ``query_id`` is ``<task>-<sha1(text)[:12]>``, stable across runs. A query text scored in both
    splits is kept only in test unless ``drop_train_test_overlap`` is False.
    """
    data_dir = Path(data_dir)
    prices = _llmrouter_prices(data_dir)
    counts: Counter[str] = Counter()
    train = _join_split(data_dir, "train", counts)
    test = _join_split(data_dir, "test", counts)
    rows_read = sum(len(item.scores) for item in train + test) + counts[DROPPED_NO_QUERY]
    if drop_train_test_overlap:
        test_texts = {item.record["query"] for item in test}
        overlap = [item for item in train if item.record["query"] in test_texts]
        counts[DROPPED_OVERLAP] = sum(len(item.scores) for item in overlap)
        counts["overlapping queries"] = len(overlap)
        train = [item for item in train if item.record["query"] not in test_texts]
    rows, unpriced = _llmrouter_rows(train + test, prices)
    dropped = {reason: counts[reason] for reason in (DROPPED_NO_QUERY, DROPPED_OVERLAP)}
    summary = summarise(
        rows,
        source=f"llmrouter ({data_dir / 'llmrouter'})",
        rows_read=rows_read,
        dropped=dropped,
        notes=_llmrouter_notes(counts, unpriced),
    )
    return OutcomeTable(rows, summary)


def _llmrouter_rows(
    joined: list[_Joined], prices: dict[str, tuple[float, float]]
) -> tuple[tuple[OutcomeRow, ...], list[str]]:
    models = sorted({model for item in joined for model in item.scores})
    prompt_tokens = count_tokens_many(item.record["query"] for item in joined)
    completion_tokens = np.array(
        [
            LLMROUTER_COMPLETION_TOKENS.get(item.record["task_name"], DEFAULT_COMPLETION_TOKENS)
            for item in joined
        ],
        dtype=np.int64,
    )
    price = np.array([prices.get(model, (np.nan, np.nan)) for model in models]).reshape(-1, 2)
    # cost[q, m] in USD; prices are per 1M tokens. NaN marks a model models.json does not price.
    cost = (np.outer(prompt_tokens, price[:, 0]) + np.outer(completion_tokens, price[:, 1])) / 1e6
    cost_cells = [[None if np.isnan(c) else float(c) for c in row] for row in cost]
    query_ids, prompt_list, completion_list = (
        _query_ids(joined),
        prompt_tokens.tolist(),
        completion_tokens.tolist(),
    )
    rows: list[OutcomeRow] = []
    for q, item in enumerate(joined):
        record = item.record
        reference = None if record["ground_truth"] is None else str(record["ground_truth"])
        rows.extend(
            OutcomeRow(
                query_id=query_ids[q],
                query=record["query"],
                task=str(record["task_name"]),
                split=item.split,
                model=model,
                score=item.scores[model],
                response=None,
                cost_usd=cost_cells[q][m],
                latency_s=None,
                prompt_tokens=prompt_list[q],
                completion_tokens=completion_list[q],
                reference=reference,
            )
            for m, model in enumerate(models)
            if model in item.scores
        )
    return tuple(rows), [model for model in models if model not in prices]


def _llmrouter_notes(counts: Counter[str], unpriced: list[str]) -> list[str]:
    notes = [
        "completion_tokens are per-task estimates (converters.LLMROUTER_COMPLETION_TOKENS), not "
        "measurements; cost_usd prices them and the query's cl100k tokens with models.json",
        "prompt_tokens count the query text only; the prompts LLMRouter sent also held instructions and "
        "options",
    ]
    if counts["overlapping queries"]:
        notes.append(
            f"{counts['overlapping queries']} query texts are scored in both train and test; "
            "their train copies were dropped so test stays held out"
        )
    for split in SPLITS:
        for what in ("query texts on several lines (joined to the first)", "query lines without scores"):
            if counts[f"{split}: {what}"]:
                notes.append(f"queries_{split}.jsonl: {counts[f'{split}: {what}']} {what}")
    if unpriced:
        notes.append(f"no price in models.json for {', '.join(unpriced)}: cost_usd left empty")
    return notes
