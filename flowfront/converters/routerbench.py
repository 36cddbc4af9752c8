"""RouterBench CSVs → generic outcome rows (see docs/outcome-tables.md)."""

from __future__ import annotations

import ast
import csv
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flowfront.converters._common import _bad
from flowfront.errors import DataError
from flowfront.outcome_tables import DROPPED_NO_SCORE, OutcomeRow, OutcomeTable, summarise
from flowfront.parsers import extract_choice
from flowfront.tokens import count_tokens_many

ROUTERBENCH_TASKS = {"arc_challenge": "arc-challenge", "winogrande": "winogrande", "mbpp": "mbpp"}
SPLITS = ("train", "test")
# Option letters the prompts offer (a few ARC questions have five options; Winogrande has two).
_CHOICE_LABELS = {"arc-challenge": "ABCDE", "winogrande": "AB"}
_RESPONSE, _COST = "|model_response", "|total_cost"
DROPPED_MERGED = "duplicate sample_id (merged into one query)"
_NOT_ROUTERBENCH = "this does not look like a RouterBench CSV; restore the file from the data release"




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


def _merge(group: list[_SourceRow], models: list[str]) -> tuple[_SourceRow, dict[str, Any]]:
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
                f"sample_id {primary.sample_id!r} has different prompts in {primary.file} line "
                f"{primary.line} and {other.file} line {other.line}",
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


def _routerbench_rows(
    merged: list[tuple[_SourceRow, dict[str, Any]]], models: list[str]
) -> tuple[OutcomeRow, ...]:
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


def _routerbench_reference(task: str, outcomes: dict[str, Any]) -> str | None:
    labels = _CHOICE_LABELS.get(task)
    if labels is None:
        return None
    return _majority_choice([response for score, response, _ in outcomes.values() if score == 1.0], labels)


def _routerbench_notes(
    groups: dict[str, list[_SourceRow]], merged: list[Any], rows: tuple[OutcomeRow, ...]
) -> list[str]:
    notes = [
        "cost_usd is RouterBench's recorded cost; prompt/completion tokens are cl100k counts",
        "reference for arc-challenge/winogrande is derived: the majority option letter of the correct models",
    ]
    if duplicated := [group for group in groups.values() if len(group) > 1]:
        straddling = sum(len({row.split for row in group}) > 1 for group in duplicated)
        notes.append(
            f"{len(duplicated)} sample_ids appear on several rows (e.g. one row holding the prompt twice at "
            "double cost); merged into one query each: scores from whichever row has them, response and "
            f"cost from the row holding the prompt once; {straddling} were in both splits and keep the "
            "split of the row with most scores"
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
