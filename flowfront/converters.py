"""Converters from the recorded datasets in the data directory to outcome tables.

``convert_routerbench`` reads ``routerbench/{arc_challenge,winogrande,mbpp}_{train,test}.csv``;
``convert_llmrouter`` joins ``llmrouter/{train,test}_scores.json`` with ``queries_*.jsonl`` and
prices calls with ``models.json``. Both are pure: they read files and return an
:class:`~flowfront.outcomes.OutcomeTable`; what they derive or estimate is listed in
``docs/outcome-tables.md`` and in each table's summary notes.
"""

from __future__ import annotations

import ast
import csv
import hashlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from flowfront.errors import DataError
from flowfront.outcomes import DROPPED_NO_SCORE, OutcomeRow, OutcomeTable, summarise
from flowfront.parsers import extract_choice
from flowfront.tokens import count_tokens_many

__all__ = ["LLMROUTER_COMPLETION_TOKENS", "ROUTERBENCH_TASKS", "convert_llmrouter", "convert_routerbench"]

# File stem -> task name used in outcome tables (RouterBench's own eval_name spelling).
ROUTERBENCH_TASKS = {"arc_challenge": "arc-challenge", "winogrande": "winogrande", "mbpp": "mbpp"}
SPLITS = ("train", "test")
# Option letters the prompts offer (a few ARC questions have five options; Winogrande has two).
_CHOICE_LABELS = {"arc-challenge": "ABCDE", "winogrande": "AB"}
_RESPONSE, _COST = "|model_response", "|total_cost"
DROPPED_MERGED = "duplicate sample_id (merged into one query)"
_NOT_ROUTERBENCH = "this does not look like a RouterBench CSV; restore the file from the data release"


def _bad(path: Path, line: int | None, column: str | None, problem: str, hint: str) -> DataError:
    at = ", ".join(
        part for part in (f"line {line}" if line else "", f"column {column!r}" if column else "") if part
    )
    return DataError(f"{path}: {at}: {problem}" if at else f"{path}: {problem}", hint=hint)


# --- RouterBench ----------------------------------------------------------------------------


@dataclass(slots=True)
class _SourceRow:
    """One CSV row: a prompt recorded ``copies`` times; per model a score and (response, cost)."""

    file: str
    line: int
    split: str
    task: str
    sample_id: str
    prompt: str
    copies: int
    scores: dict[str, float] = field(default_factory=dict)
    calls: dict[str, tuple[str | None, float | None]] = field(default_factory=dict)


def _literal_list(cell: str, path: Path, line: int, column: str) -> list[str]:
    """A cell holding a Python-literal list of strings, parsed without evaluating code."""
    try:
        value = ast.literal_eval(cell)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        value = None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _bad(
            path,
            line,
            column,
            f"not a Python list of strings: {cell[:60]!r}",
            "RouterBench stores prompts and responses as a list holding one string",
        )
    return value


def _number(cell: str, path: Path, line: int, column: str, *, is_score: bool) -> float | None:
    if not cell.strip():
        return None
    try:
        value = float(cell)
    except ValueError:
        raise _bad(path, line, column, f"{cell!r} is not a number", "write a plain number") from None
    if is_score and not 0.0 <= value <= 1.0:
        raise _bad(path, line, column, f"score {cell!r} is outside [0, 1]", "correctness must be 0 or 1")
    if not is_score and value < 0:
        raise _bad(path, line, column, f"negative cost {cell!r}", "costs are USD >= 0")
    return value


def _routerbench_models(header: list[str], path: Path) -> list[str]:
    """Model names: columns that have both a response and a cost companion column."""
    for column in ("sample_id", "prompt", "eval_name"):
        if column not in header:
            raise _bad(
                path, 1, column, f"missing column; found {', '.join(header[:6])}, ...", _NOT_ROUTERBENCH
            )
    models = [name for name in header if name + _RESPONSE in header and name + _COST in header]
    if not models:
        raise _bad(
            path, 1, None, "no <model>, <model>|model_response, <model>|total_cost columns", _NOT_ROUTERBENCH
        )
    return models


def _read_routerbench_file(path: Path, task: str, split: str) -> tuple[list[str], list[_SourceRow]]:
    """The file's model names and its rows."""
    rows = []
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader, [])
        models = _routerbench_models(header, path)
        index = {name: position for position, name in enumerate(header)}
        start = reader.line_num + 1
        try:
            for cells in reader:
                if len(cells) != len(header):
                    raise _bad(
                        path, start, None, f"{len(cells)} cells, header has {len(header)}", "fix the quoting"
                    )
                rows.append(_source_row(cells, index, models, path, start, task, split))
                start = reader.line_num + 1
        except csv.Error as exc:
            raise _bad(path, start, None, f"malformed CSV ({exc})", "fix the quoting") from None
    return models, rows


def _source_row(
    cells: list[str], index: dict[str, int], models: list[str], path: Path, line: int, task: str, split: str
) -> _SourceRow:
    prompts = _literal_list(cells[index["prompt"]], path, line, "prompt")
    if len(set(prompts)) != 1:
        raise _bad(
            path,
            line,
            "prompt",
            f"expected one prompt, found {len(set(prompts))} different ones",
            "each row must hold the prompt of one query",
        )
    row = _SourceRow(path.name, line, split, task, cells[index["sample_id"]], prompts[0], len(prompts))
    for model in models:
        score = _number(cells[index[model]], path, line, model, is_score=True)
        if score is not None:
            row.scores[model] = score
        responses = _literal_list(cells[index[model + _RESPONSE]], path, line, model + _RESPONSE)
        cost = _number(cells[index[model + _COST]], path, line, model + _COST, is_score=False)
        row.calls[model] = (responses[0] if responses else None, cost)
    return row


def _merge(group: list[_SourceRow], models: list[str]) -> tuple[_SourceRow, dict]:
    """One query from rows sharing a sample_id: ``(primary row, {model: (score, response, cost)})``.

    The primary row (most scores, then file order) gives the query its split. A score comes from
    the first row that has one. Response and cost come from a row holding the prompt once when
    there is one: a row holding it k times was billed for k prompts, so dividing its cost by k is
    only the fallback.
    """
    primary = min(group, key=lambda row: -len(row.scores))
    for other in group:
        if other.prompt != primary.prompt:
            raise DataError(
                f"sample_id {primary.sample_id!r} has different prompts in {primary.file} line {primary.line} "
                f"and {other.file} line {other.line}",
                hint="a sample_id must name one query; rename one of them",
            )
    by_copies = sorted(group, key=lambda row: row.copies)
    outcomes = {}
    for model in models:
        scored = next((row for row in [primary, *group] if model in row.scores), None)
        if scored is not None:
            billed = next((row for row in by_copies if row.calls[model][1] is not None), scored)
            response, cost = billed.calls[model]
            outcomes[model] = (scored.scores[model], response, None if cost is None else cost / billed.copies)
    return primary, outcomes


def _majority_choice(responses: list[str | None], labels: str) -> str | None:
    """The letter most of the given responses chose; None when none parses or the top is tied."""
    ranked = Counter(letter for letter in (extract_choice(text, labels) for text in responses) if letter)
    top = ranked.most_common(2)
    if not top or (len(top) == 2 and top[0][1] == top[1][1]):
        return None
    return top[0][0]


def _routerbench_files(data_dir: Path, tasks: Iterable[str] | None) -> list[tuple[Path, str, str]]:
    folder = Path(data_dir) / "routerbench"
    if not folder.is_dir():
        raise DataError(
            f"{folder} does not exist",
            hint="point the data directory at the folder holding routerbench/ and llmrouter/",
        )
    wanted = dict(ROUTERBENCH_TASKS)
    if tasks is not None:
        names = {name.lower().replace("_", "-") for name in tasks}
        if unknown := names - set(ROUTERBENCH_TASKS.values()):
            raise DataError(
                f"unknown RouterBench task(s) {sorted(unknown)}",
                hint=f"choose from {sorted(ROUTERBENCH_TASKS.values())}",
            )
        wanted = {stem: task for stem, task in wanted.items() if task in names}
    files = [
        (folder / f"{stem}_{split}.csv", task, split) for stem, task in wanted.items() for split in SPLITS
    ]
    if missing := [str(path) for path, _, _ in files if not path.is_file()]:
        raise DataError(
            f"RouterBench file(s) missing: {', '.join(missing)}",
            hint="restore the data directory (files are named <task>_<train|test>.csv)",
        )
    return files


def convert_routerbench(data_dir: Path, tasks: Iterable[str] | None = None) -> OutcomeTable:
    """RouterBench as an outcome table: one row per (sample_id, model).

    ``query`` is the exact prompt, ``response`` the recorded text, ``score`` the correctness,
    ``cost_usd`` the recorded cost of the call, tokens are cl100k counts, ``split`` comes from the
    file name. ``reference`` for ARC/Winogrande is DERIVED: the option letter most of the models
    marked correct chose (None when no model was correct or the top is tied); MBPP has none (the
    data holds no tests). Rows sharing a sample_id are merged into one query (see ``_merge``).
    """
    groups: dict[str, list[_SourceRow]] = {}
    models: list[str] = []
    source_rows = 0
    for path, task, split in _routerbench_files(data_dir, tasks):
        file_models, file_rows = _read_routerbench_file(path, task, split)
        models = models or file_models
        if set(file_models) != set(models):
            raise _bad(path, 1, None, "its models differ from the other RouterBench files", _NOT_ROUTERBENCH)
        for row in file_rows:
            groups.setdefault(row.sample_id, []).append(row)
        source_rows += len(file_rows)
    merged = [_merge(group, models) for group in groups.values()]
    rows = _routerbench_rows(merged, models)
    dropped = {
        DROPPED_NO_SCORE: len(merged) * len(models) - len(rows),
        DROPPED_MERGED: (source_rows - len(groups)) * len(models),
    }
    summary = summarise(
        rows,
        source=f"routerbench ({Path(data_dir) / 'routerbench'})",
        rows_read=source_rows * len(models),
        dropped=dropped,
        notes=_routerbench_notes(groups, merged, rows),
    )
    return OutcomeTable(rows, summary)


def _routerbench_rows(merged: list[tuple[_SourceRow, dict]], models: list[str]) -> tuple[OutcomeRow, ...]:
    prompt_tokens = count_tokens_many(primary.prompt for primary, _ in merged).tolist()
    flat = [
        (position, model, outcome)
        for position, (_, outcomes) in enumerate(merged)
        for model in models
        if (outcome := outcomes.get(model)) is not None
    ]
    completion_tokens = count_tokens_many(outcome[1] or "" for _, _, outcome in flat).tolist()
    references = [_routerbench_reference(primary.task, outcomes) for primary, outcomes in merged]
    rows = []
    for (position, model, (score, response, cost)), completion in zip(flat, completion_tokens, strict=True):
        primary = merged[position][0]
        rows.append(
            OutcomeRow(
                query_id=primary.sample_id,
                query=primary.prompt,
                task=primary.task,
                split=primary.split,
                model=model,
                score=score,
                response=response,
                cost_usd=cost,
                latency_s=None,
                prompt_tokens=prompt_tokens[position],
                completion_tokens=None if response is None else completion,
                reference=references[position],
            )
        )
    return tuple(rows)


def _routerbench_reference(task: str, outcomes: dict) -> str | None:
    labels = _CHOICE_LABELS.get(task)
    if labels is None:
        return None
    return _majority_choice([response for score, response, _ in outcomes.values() if score == 1.0], labels)


def _routerbench_notes(
    groups: dict[str, list[_SourceRow]], merged: list, rows: tuple[OutcomeRow, ...]
) -> list[str]:
    notes = [
        "cost_usd is RouterBench's recorded cost; prompt/completion tokens are cl100k counts",
        "reference for arc-challenge/winogrande is derived: the majority option letter of the correct models",
    ]
    if duplicated := [group for group in groups.values() if len(group) > 1]:
        straddling = sum(len({row.split for row in group}) > 1 for group in duplicated)
        notes.append(
            f"{len(duplicated)} sample_ids appear on several rows (e.g. one row holding the prompt twice at double "
            f"cost); merged into one query each: scores from whichever row has them, response and cost from the row "
            f"holding the prompt once; {straddling} were in both splits and keep the split of the row with most scores"
        )
    if shared := sum(count > 1 for count in Counter(primary.prompt for primary, _ in merged).values()):
        notes.append(f"{shared} prompt texts are shared by several sample_ids (kept as separate queries)")
    choice_queries = sum(primary.task in _CHOICE_LABELS for primary, _ in merged)
    if choice_queries:
        unresolved = len(
            {row.query_id for row in rows if row.task in _CHOICE_LABELS and row.reference is None}
        )
        notes.append(
            f"{unresolved} of {choice_queries} multiple-choice queries have no derived reference "
            "(no model correct, or a tie)"
        )
    return notes


# --- LLMRouter ------------------------------------------------------------------------------

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


def _load_queries(path: Path) -> dict[str, list[dict]]:
    """Query records by query text, in file order (a text may occur on several lines)."""
    import orjson

    if not path.is_file():
        raise DataError(f"{path} does not exist", hint="restore the LLMRouter files in the data directory")
    by_text: dict[str, list[dict]] = {}
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise _bad(path, number, None, f"bad JSON ({exc})", _RESTORE) from None
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
    record: dict
    scores: dict[str, float]


def _join_split(data_dir: Path, split: str, counts: Counter) -> list[_Joined]:
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


def _checked_scores(scores: dict, path: Path, position: int) -> dict[str, float]:
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
    counts: Counter = Counter()
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
    cost_cells = np.where(np.isnan(cost), None, cost).tolist()
    query_ids, prompt_list, completion_list = (
        _query_ids(joined),
        prompt_tokens.tolist(),
        completion_tokens.tolist(),
    )
    rows = []
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


def _llmrouter_notes(counts: Counter, unpriced: list[str]) -> list[str]:
    notes = [
        "completion_tokens are per-task estimates (converters.LLMROUTER_COMPLETION_TOKENS), not measurements; "
        "cost_usd prices them and the query's cl100k tokens with models.json",
        "prompt_tokens count the query text only; the prompts LLMRouter sent also held instructions and options",
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
