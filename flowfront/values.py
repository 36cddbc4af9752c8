"""What flows between nodes: a parsed answer with the text it came from and its recorded grade."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Value:
    """One node output.

    ``answer`` is the parsed output (a letter, a number, code, a bool for ``agree``). ``score`` is
    the recorded grade of the call that produced this answer when the answer came from replayed
    data and is the same answer the recording was graded on; it is ``None`` for live calls, where
    the benchmark grades ``answer`` against the reference instead. ``calls`` are the indices of the
    call records behind the value.
    """

    answer: Any
    text: str | None = None
    score: float | None = None
    calls: tuple[int, ...] = field(default=())

    def __str__(self) -> str:
        if self.answer is None:
            return self.text or ""
        return str(self.answer)
