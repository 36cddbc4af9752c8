"""Outcome tables: the generic import format for recorded per-query, per-model results.

One row is one model's outcome on one query. Required columns: ``query_id, query, task, split,
model, score`` (``split`` may be left out of the whole file); optional: ``response, cost_usd,
latency_s, prompt_tokens, completion_tokens, reference``. Files are CSV (``.csv``) or JSON lines
(``.jsonl``/``.json``). The format is documented in ``docs/outcome-tables.md``; every error names
the file, the line and the column, and says what to fix.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from flowfront.errors import DataError

REQUIRED_COLUMNS = ("query_id", "query", "task", "split", "model", "score")
OPTIONAL_COLUMNS = ("response", "cost_usd", "latency_s", "prompt_tokens", "completion_tokens", "reference")
COLUMNS = REQUIRED_COLUMNS + OPTIONAL_COLUMNS
_TEXT_KEYS = ("query_id", "query", "task", "model")
_NUMBER_KEYS = ("cost_usd", "latency_s")
_COUNT_KEYS = ("prompt_tokens", "completion_tokens")
CSV_SUFFIXES = (".csv",)
JSONL_SUFFIXES = (".jsonl", ".json")

DROPPED_NO_SCORE = "score missing"
DROPPED_REPEATED_TEXT = "sharing their query text with a later id"


@dataclass(frozen=True, slots=True)
class OutcomeRow:
    """One model's recorded outcome on one query.

    ``score`` is in [0, 1] (1 = correct; partial credit allowed). ``split`` is None when the
    source has no split. ``reference`` is the ground-truth answer when known.
    """

    query_id: str
    query: str
    task: str
    split: str | None
    model: str
    score: float
    response: str | None = None
    cost_usd: float | None = None
    latency_s: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    reference: str | None = None


@dataclass(frozen=True, slots=True)
class ImportSummary:
    """What an import read, kept and dropped (and why)."""

    source: str
    rows_read: int
    rows_kept: int
    dropped: dict[str, int]
    models: tuple[str, ...]
    queries: int
    tasks: tuple[str, ...]
    splits: tuple[str, ...]
    has_split: bool
    notes: tuple[str, ...] = ()
    # Optional columns every kept row fills: what latency and cost can be taken from.
    complete_columns: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready copy (tuples become lists), for artifacts and the trace store."""
        copy: dict[str, Any] = {}
        for column in fields(self):
            value = getattr(self, column.name)
            copy[column.name] = list(value) if isinstance(value, tuple) else value
        copy["dropped"] = dict(self.dropped)
        return copy

    def describe(self) -> str:
        """A few human-readable lines for the CLI."""
        dropped = ", ".join(f"{count} {reason}" for reason, count in sorted(self.dropped.items())) or "none"
        split = (
            ", ".join(self.splits) if self.has_split else "none in the data (a seeded 70/30 split is made)"
        )
        lines = [
            f"{self.source}: {self.rows_kept} of {self.rows_read} rows kept (dropped: {dropped})",
            f"{self.queries} queries, {len(self.models)} models, tasks: {', '.join(self.tasks)}; splits: "
            f"{split}",
        ]
        return "\n".join(lines + [f"note: {note}" for note in self.notes])


@dataclass(frozen=True, slots=True)
class OutcomeTable:
    """Validated outcome rows plus the summary of how they were imported."""

    rows: tuple[OutcomeRow, ...]
    summary: ImportSummary = field(compare=False)

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[OutcomeRow]:
        return iter(self.rows)

    @property
    def models(self) -> tuple[str, ...]:
        return self.summary.models

    def score_matrix(self) -> tuple[list[str], list[str], np.ndarray]:
        """``(query_ids, models, Y)`` with ``Y[q, m]`` the score, NaN where no outcome was recorded."""
        query_ids = list(dict.fromkeys(row.query_id for row in self.rows))
        models = sorted({row.model for row in self.rows})
        q_index = {query_id: index for index, query_id in enumerate(query_ids)}
        m_index = {model: index for index, model in enumerate(models)}
        q = np.fromiter((q_index[row.query_id] for row in self.rows), dtype=np.int64, count=len(self.rows))
        m = np.fromiter((m_index[row.model] for row in self.rows), dtype=np.int64, count=len(self.rows))
        scores = np.fromiter((row.score for row in self.rows), dtype=np.float64, count=len(self.rows))
        matrix = np.full((len(query_ids), len(models)), np.nan)
        matrix[q, m] = scores
        return query_ids, models, matrix


def summarise(
    rows: tuple[OutcomeRow, ...],
    *,
    source: str,
    rows_read: int,
    dropped: dict[str, int] | None = None,
    notes: Iterable[str] = (),
) -> ImportSummary:
    """The :class:`ImportSummary` of validated rows (used by the reader and the converters)."""
    splits = sorted({row.split for row in rows if row.split is not None})
    return ImportSummary(
        source=source,
        rows_read=rows_read,
        rows_kept=len(rows),
        dropped={reason: count for reason, count in (dropped or {}).items() if count},
        models=tuple(sorted({row.model for row in rows})),
        queries=len({row.query_id for row in rows}),
        tasks=tuple(sorted({row.task for row in rows})),
        splits=tuple(splits),
        has_split=bool(splits),
        notes=tuple(notes),
        complete_columns=tuple(
            c
            for c in ("cost_usd", "latency_s", "prompt_tokens", "completion_tokens", "response")
            if rows and all(getattr(row, c) is not None for row in rows)
        ),
    )


# --- reading --------------------------------------------------------------------------------


class _Where:
    """Formats error locations for one file: ``path: line N, column 'c': problem``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def error(self, line: int, column: str | None, problem: str, hint: str) -> DataError:
        at = f"line {line}" + (f", column {column!r}" if column else "")
        return DataError(f"{self.path}: {at}: {problem}", hint=hint)


def _is_blank(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _parse_float(value: object, where: _Where, line: int, column: str) -> float | None:
    """A number cell: None when blank, a DataError when not a number."""
    if type(value) is float or type(value) is int:  # the common JSON case, checked first for speed
        return None if value != value else float(value)
    if _is_blank(value):
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise where.error(line, column, f"{value!r} is not a number", f"write {column} as a plain number")
    try:
        number = float(value)
    except ValueError:
        raise where.error(
            line, column, f"{value!r} is not a number", f"write {column} as a plain number"
        ) from None
    return None if math.isnan(number) else number


def _parse_score(value: object, where: _Where, line: int) -> float | None:
    score = _parse_float(value, where, line, "score")
    if score is not None and not 0.0 <= score <= 1.0:
        raise where.error(
            line, "score", f"score {value!r} is outside [0, 1]", "scale scores to [0, 1] (1 = correct)"
        )
    return score


def _parse_non_negative(
    value: object, where: _Where, line: int, column: str, whole: bool
) -> float | int | None:
    number = _parse_float(value, where, line, column)
    if number is None:
        return None
    if number < 0 or math.isinf(number):
        raise where.error(line, column, f"{column} is {value!r}", f"{column} must be a finite number >= 0")
    if whole:
        if number != int(number):
            raise where.error(
                line, column, f"{column} is {value!r}", f"{column} must be a whole number of tokens"
            )
        return int(number)
    return number


def _parse_text(value: object, where: _Where, line: int, column: str, required: bool) -> str | None:
    if type(value) is str and (not required or value.strip()):
        return value
    if value is None or (required and _is_blank(value)):
        if required:
            raise where.error(line, column, f"{column} is empty", f"every row needs a non-empty {column}")
        return None
    if isinstance(value, dict | list):
        raise where.error(
            line, column, f"{column} is a {type(value).__name__}", f"write {column} as a string"
        )
    return value if isinstance(value, str) else str(value)


def _parse_row(record: dict[str, Any], where: _Where, line: int) -> OutcomeRow | None:
    """One validated row, or None when its score is missing (the caller counts it)."""
    score = _parse_score(record.get("score"), where, line)
    if score is None:
        return None
    text = {key: _parse_text(record.get(key), where, line, key, required=True) for key in _TEXT_KEYS}
    split = _parse_text(record.get("split"), where, line, "split", required=False)
    fields: dict[str, Any] = {
        **text,
        "split": split if split else None,
        "score": score,
        "response": _parse_text(record.get("response"), where, line, "response", required=False),
        "reference": _parse_text(record.get("reference"), where, line, "reference", required=False),
        **{key: _parse_non_negative(record.get(key), where, line, key, whole=False) for key in _NUMBER_KEYS},
        **{key: _parse_non_negative(record.get(key), where, line, key, whole=True) for key in _COUNT_KEYS},
    }
    return OutcomeRow(**fields)


def _check_columns(found: Iterable[str], where: _Where, line: int) -> None:
    found = list(found)
    for column in REQUIRED_COLUMNS:
        if column != "split" and column not in found:
            raise where.error(
                line,
                column,
                f"missing required column {column!r}; columns found: {', '.join(found) or '(none)'}",
                f"add a {column!r} column (required: {', '.join(REQUIRED_COLUMNS)}; 'split' may be omitted)",
            )


def _csv_records(path: Path, where: _Where) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number where the record starts, record) for every data row of a CSV file."""
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if not header or not any(cell.strip() for cell in header):
            raise where.error(
                1, None, "the file is empty", "write a header line with the column names, then rows"
            )
        header = [cell.strip() for cell in header]
        _check_columns(header, where, 1)
        start = reader.line_num + 1
        for cells in reader:
            if cells and any(cell.strip() for cell in cells):
                if len(cells) != len(header):
                    raise where.error(
                        start,
                        None,
                        f"{len(cells)} cells but the header has {len(header)} columns",
                        "quote cells that contain commas or line breaks",
                    )
                # An empty CSV cell means "missing", like an absent key in JSON lines.
                yield start, {name: cell or None for name, cell in zip(header, cells, strict=True)}
            start = reader.line_num + 1


def read_jsonl(path: Path, bad: Callable[[int, str, str], Exception]) -> Iterator[tuple[int, Any]]:
    """(line number, value) for every non-blank line of a JSON-lines file; a line that is not
    JSON raises ``bad(line number, message, hint)``."""
    import orjson

    with path.open("rb") as handle:
        for number, raw_line in enumerate(handle, start=1):
            if not raw_line.strip():
                continue
            try:
                yield number, orjson.loads(raw_line)
            except orjson.JSONDecodeError as exc:
                hint = "write one JSON object per line"
                if number == 1 and raw_line.lstrip().startswith(b"["):
                    hint = "the file looks like one JSON array; write one object per line (JSON lines)"
                raise bad(number, f"bad JSON ({exc})", hint) from None


def _jsonl_records(path: Path, where: _Where) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for every non-blank line of a JSON-lines outcome file."""
    for number, record in read_jsonl(path, lambda n, message, hint: where.error(n, None, message, hint)):
        if not isinstance(record, dict):
            raise where.error(
                number,
                None,
                f"a {type(record).__name__} instead of an object",
                "write one JSON object per line",
            )
        _check_columns(record, where, number)
        yield number, record


def _records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    where = _Where(path)
    if not path.is_file():
        raise DataError(f"outcome table {path} does not exist", hint="check the path")
    suffix = path.suffix.lower()
    if suffix in CSV_SUFFIXES:
        return _csv_records(path, where)
    if suffix in JSONL_SUFFIXES:
        return _jsonl_records(path, where)
    raise DataError(
        f"{path}: unknown outcome-table format {suffix or '(no suffix)'!r}",
        hint="name the file *.csv or *.jsonl (JSON lines); supported: "
             f"{', '.join(CSV_SUFFIXES + JSONL_SUFFIXES)}",
    )


class _Checker:
    """Cross-row rules: one outcome per (query_id, model); one text, task and split per query."""

    def __init__(self, where: _Where) -> None:
        self.where = where
        self.pair_line: dict[tuple[str, str], int] = {}
        self.query_first: dict[str, tuple[int, OutcomeRow]] = {}
        self.split_lines: dict[bool, int] = {}

    def add(self, row: OutcomeRow, line: int) -> None:
        key = (row.query_id, row.model)
        if key in self.pair_line:
            raise self.where.error(
                line,
                "model",
                f"duplicate (query_id, model) pair {key!r}: lines {self.pair_line[key]} and {line}",
                "keep one outcome per query and model (average repeated runs into one score first)",
            )
        self.pair_line[key] = line
        self.split_lines.setdefault(row.split is not None, line)
        if True in self.split_lines and False in self.split_lines:
            raise self.where.error(
                self.split_lines[False],
                "split",
                f"split is empty here but set on line {self.split_lines[True]}",
                "give every row a split, or leave the column out to let flowfront make a seeded split",
            )
        first = self.query_first.setdefault(row.query_id, (line, row))
        for column in ("query", "task", "split"):
            if getattr(first[1], column) != getattr(row, column):
                raise self.where.error(
                    line,
                    column,
                    f"query_id {row.query_id!r} has a different {column} than on line {first[0]}",
                    f"a query_id must name one query: use the same {column} on every row, or distinct "
                    "query_ids",
                )


def read_outcome_table(path: Path, *, require_multi_model: bool = False) -> OutcomeTable:
    """Read and validate an outcome table (CSV or JSON lines, chosen by the file suffix).

    Rows without a score are dropped and counted in the summary. Any other problem raises a
    DataError naming the file, line and column. With ``require_multi_model`` a table holding a
    single model is refused, since routing needs a choice between at least two.
    """
    path = Path(path)
    where = _Where(path)
    checker = _Checker(where)
    rows: list[OutcomeRow] = []
    columns_seen: set[str] = set()
    read = missing = 0
    try:
        for line, record in _records(path):
            read += 1
            columns_seen.update(record)
            row = _parse_row(record, where, line)
            if row is None:
                missing += 1
                continue
            checker.add(row, line)
            rows.append(row)
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})", hint="save the file as UTF-8"
        ) from None
    _check_not_empty(path, read, rows, require_multi_model)
    extra = sorted(columns_seen - set(COLUMNS))
    notes = [f"ignored unknown columns: {', '.join(extra)}"] if extra else []
    table_rows = tuple(rows)
    dropped = {DROPPED_NO_SCORE: missing}
    summary = summarise(table_rows, source=str(path), rows_read=read, dropped=dropped, notes=notes)
    return OutcomeTable(rows=table_rows, summary=summary)


def without_repeated_texts(table: OutcomeTable) -> OutcomeTable:
    """The table with one query id per query text, and a summary that says what went.

    One text is one prompt, and replay has one recorded answer per (prompt, model): ids that
    repeat another's text cannot be replayed as queries of their own. The last id of each text
    is kept (the one whose records the trace store keeps when it writes them in order)."""
    last_of: dict[str, str] = {}
    for row in table.rows:
        last_of[row.query] = row.query_id
    gone: dict[str, str] = {}
    for row in table.rows:
        if last_of[row.query] != row.query_id:
            gone.setdefault(row.query_id, last_of[row.query])
    if not gone:
        return table
    rows = tuple(r for r in table.rows if r.query_id not in gone)
    shown = ", ".join(f"{a} -> {b}" for a, b in list(gone.items())[:3]) + (", ..." if len(gone) > 3 else "")
    s = table.summary
    note = (f"{len(gone)} query ids share their text with a later id ({shown}): replay answers one prompt "
            "once, so the last id of each text is kept")
    summary = summarise(rows, source=s.source, rows_read=s.rows_read,
                        dropped={**s.dropped, DROPPED_REPEATED_TEXT: len(table.rows) - len(rows)},
                        notes=(*s.notes, note))
    return OutcomeTable(rows=rows, summary=summary)


def _check_not_empty(path: Path, read: int, rows: list[OutcomeRow], require_multi_model: bool) -> None:
    if read == 0:
        raise DataError(f"{path}: the file has no rows", hint="add one row per (query, model) outcome")
    if not rows:
        raise DataError(f"{path}: none of the {read} rows has a score", hint="fill the 'score' column (0..1)")
    models = {row.model for row in rows}
    if require_multi_model and len(models) < 2:
        raise DataError(
            f"{path}: column 'model': every row is for model {next(iter(models))!r}",
            hint="routing needs outcomes for at least two models on the same queries",
        )


# --- writing --------------------------------------------------------------------------------


def write_outcome_table(rows: Iterable[OutcomeRow], path: Path) -> Path:
    """Write rows as CSV or JSON lines (by suffix), atomically; returns the path.

    In CSV an empty cell means "missing", so an empty-string response reads back as None.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in CSV_SUFFIXES + JSONL_SUFFIXES:
        raise DataError(
            f"cannot write outcome table {path}: unknown format {suffix or '(no suffix)'!r}",
            hint="name the file *.csv or *.jsonl",
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        if suffix in CSV_SUFFIXES:
            _write_csv(rows, partial)
        else:
            _write_jsonl(rows, partial)
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
    return path


def _write_csv(rows: Iterable[OutcomeRow], path: Path) -> None:
    names = [column.name for column in fields(OutcomeRow)]
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(names)
        for row in rows:
            # repr keeps every float digit, so a CSV round trip is exact.
            values = (getattr(row, name) for name in names)
            writer.writerow(["" if v is None else repr(v) if isinstance(v, float) else v for v in values])


def _write_jsonl(rows: Iterable[OutcomeRow], path: Path) -> None:
    import orjson

    with path.open("wb") as handle:
        for row in rows:
            handle.write(orjson.dumps(row) + b"\n")
