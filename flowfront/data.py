"""Importing outcome tables into the trace store, so replay can answer from them.

Each row of an outcome table (see docs/outcome-tables.md) becomes one trace: the unlimited-budget
response of ``model`` to the single user message ``query``. An import is skipped when the store
already holds the same data (same content hash), so every command can call :func:`ensure_imported`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flowfront.errors import DataError
from flowfront.outcome_tables import OutcomeTable, read_outcome_table, without_repeated_texts
from flowfront.store import Trace, TraceStore, call_key, prompt_key

BUILTIN_SOURCES = ("routerbench", "llmrouter")


def user_messages(query: str) -> tuple[dict[str, Any], ...]:
    """The messages a recorded prompt was sent as; workflows replaying it render the same."""
    return ({"role": "user", "content": query},)


def source_for_outcomes(path: Path) -> str:
    if not Path(path).is_file():
        raise DataError(
            f"outcome table {path} not found",
            hint="pass the path of a CSV or JSON-lines outcome table (docs/outcome-tables.md)",
        )
    return f"outcomes-{_hash_files([path])[:12]}"


def _hash_files(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(path.name.encode())
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def _source_files(source: str, data_dir: Path) -> list[Path]:
    folder = data_dir / source
    files = sorted(p for p in folder.glob("*") if p.suffix in {".csv", ".json", ".jsonl"})
    if not files:
        raise DataError(
            f"no data files for {source!r} in {folder}",
            hint="set FLOWFRONT_DATA_DIR (or --data-dir) to the folder holding routerbench/ and llmrouter/",
        )
    return files


def _converter(source: str) -> Callable[[Path], OutcomeTable]:
    from flowfront.converters import convert_llmrouter, convert_routerbench

    if source == "routerbench":
        return convert_routerbench
    return convert_llmrouter


def ensure_imported(
    store: TraceStore, source: str, *, data_dir: Path | None = None, path: Path | None = None
) -> dict[str, Any]:
    """Import a built-in source (from ``data_dir``) or an outcome table (``path``) unless current.

    Returns the import summary (rows read, kept, dropped by reason, models, queries).
    """
    load: Callable[[], OutcomeTable]
    if path is not None:
        if not path.is_file():
            raise DataError(f"outcome table {path} not found", hint="pass the path of a .csv or .jsonl file")
        files, load = [path], (lambda: read_outcome_table(path, require_multi_model=True))
    elif source in BUILTIN_SOURCES:
        if data_dir is None or not data_dir.is_dir():
            raise DataError(
                f"data directory {data_dir} does not exist",
                hint="set FLOWFRONT_DATA_DIR (or --data-dir) to the folder holding routerbench/ and "
                     "llmrouter/",
            )
        files, load = _source_files(source, data_dir), (lambda: _converter(source)(data_dir))
    else:
        raise DataError(
            f"unknown data source {source!r}", hint=f"use one of {BUILTIN_SOURCES} or an outcome table path"
        )
    data_hash = _hash_files(files)
    current = store.import_record(source)
    if current is not None and current[0] == data_hash:
        return current[1]
    table = without_repeated_texts(load())
    write_table(store, source, table)
    summary = table.summary.as_dict()
    store.record_import(source, data_hash, summary)
    return summary


def write_table(store: TraceStore, source: str, table: OutcomeTable) -> None:
    """Replace a source's traces and queries with the table's rows."""
    store.delete_source(source)
    traces: list[Trace] = []
    queries: dict[str, tuple[str, str, str, str | None, str | None]] = {}
    for row in table.rows:
        messages = user_messages(row.query)
        traces.append(
            Trace(
                key=call_key(row.model, None, messages, {}),
                prompt_key=prompt_key(row.model, messages, {}),
                model=row.model,
                budget=None,
                # The prompt lives once in `queries`; the request refers to it instead of repeating it.
                request={"source": source, "query_id": row.query_id, "model": row.model},
                response=row.response,
                prompt_tokens=row.prompt_tokens,
                completion_tokens=row.completion_tokens,
                latency_s=row.latency_s,
                cost_usd=row.cost_usd,
                score=row.score,
                source=source,
                query_id=row.query_id,
            )
        )
        queries.setdefault(row.query_id, (row.query_id, row.query, row.task, row.split, row.reference))
    store.put_many(traces)
    store.put_queries(source, queries.values())
