"""Grades for served responses: the one shape (``FeedbackIn``), and batch import from a file.

The API's ``POST /v1/feedback``, ``flowfront feedback import`` and ``flowfront.feedback()`` take the
same fields with the same rules: ``id`` (a response id; a chat completion's ``chatcmpl-`` prefix is
optional), ``name`` (``correct`` and ``judge`` are what retraining reads), a ``value`` in [0, 1]
and/or a ``label``, an optional ``comment``. One grade per (id, name): a new one replaces the old.
A grade for an id the decision log does not hold is refused and reported, never silently dropped.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from flowfront.errors import DataError, first_invalid
from flowfront.store import Feedback, TraceStore

__all__ = ["FeedbackIn", "import_feedback", "read_feedback_file"]


class FeedbackIn(BaseModel):
    """A grade for a served response (the shape of a Langfuse score / an OpenTelemetry GenAI
    ``gen_ai.evaluation.result``): a value in [0, 1] and/or a label, per response and name."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    id: str = Field(min_length=1, max_length=80, description="the response id (a run's trace_id, or a chat "
                    "completion's id; the chatcmpl- prefix is optional)")
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$",
                      description="what is graded: `correct` (retraining reads it), `judge`, or your own")
    value: float | None = Field(default=None, ge=0.0, le=1.0, description="the grade, 0 (wrong) to 1 (right)")
    label: str | None = Field(default=None, max_length=256)
    comment: str | None = Field(default=None, max_length=4096)

    @model_validator(mode="after")
    def _something(self) -> FeedbackIn:
        if self.value is None and self.label is None:
            raise ValueError("send a value (0 to 1) or a label")
        return self

    @property
    def response_id(self) -> str:
        return self.id.removeprefix("chatcmpl-")

    def row(self, source: str) -> Feedback:
        return Feedback(self.response_id, self.name, self.value, self.label, self.comment, source=source)


def read_feedback_file(path: Path) -> list[FeedbackIn]:
    """Grades from a CSV (header ``id,name,value,label,comment``) or JSON-lines file; a bad row is
    one error naming its line and field."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"feedback file {path} not found", hint="pass the path of a CSV or JSON-lines file")
    rows: list[tuple[int, dict[str, Any]]] = []
    if path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8") as fh:
            for line, raw in enumerate(csv.DictReader(fh), start=2):
                rows.append((line, {k: (v if v not in ("", None) else None) for k, v in raw.items() if k}))
    else:
        for line, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if text.strip():
                try:
                    rows.append((line, orjson.loads(text)))
                except orjson.JSONDecodeError as exc:
                    raise DataError(
                        f"{path}, line {line}: not JSON ({exc})", hint="one JSON object per line"
                    ) from None
    out = []
    for line, data in rows:
        try:
            out.append(FeedbackIn.model_validate(data))
        except ValidationError as exc:
            field, why = first_invalid(exc, "row")
            raise DataError(
                f"{path}, line {line}, field {field!r}: {why}",
                hint="fix that row (id, name, value in [0, 1] or label, comment)",
            ) from None
    if not out:
        raise DataError(
            f"{path} holds no grades", hint="one row per graded response: id,name,value[,label,comment]"
        )
    return out


def import_feedback(
    store: TraceStore, grades: list[FeedbackIn], source: str = "import"
) -> tuple[int, list[str]]:
    """Record grades in batches; returns (recorded, ids with no decision)."""
    unknown: list[str] = []
    recorded = 0
    for start in range(0, len(grades), 500):
        batch = [g.row(source) for g in grades[start:start + 500]]
        missing = set(store.put_feedback(batch))
        unknown += sorted(missing)
        recorded += sum(1 for f in batch if f.id not in missing)
    return recorded, unknown
