"""Helpers shared by the converters."""

from __future__ import annotations

from pathlib import Path

from flowfront.errors import DataError


def _bad(path: Path, line: int | None, column: str | None, problem: str, hint: str) -> DataError:
    at = ", ".join(
        part for part in (f"line {line}" if line else "", f"column {column!r}" if column else "") if part
    )
    return DataError(f"{path}: {at}: {problem}" if at else f"{path}: {problem}", hint=hint)
