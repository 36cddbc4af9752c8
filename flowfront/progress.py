"""Progress on long work: a rich bar in a terminal, a plain line every few seconds in a log.

Quiet when ``FLOWFRONT_QUIET`` is set (tests, scripted runs).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

Advance = Callable[..., None]


@contextmanager
def progress_bar(label: str, total: int | None, *, every_s: float = 10.0) -> Iterator[Advance]:
    """Yields ``advance(n=1, note="")``; the bar or log lines show count, total, rate and ETA."""
    if os.environ.get("FLOWFRONT_QUIET"):
        yield lambda n=1, note="": None
        return
    if sys.stderr.isatty():
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   TextColumn("eta"), TimeRemainingColumn(), TextColumn("{task.fields[note]}"))
        with Progress(*columns, transient=False) as bar:
            task = bar.add_task(label, total=total, note="")
            yield lambda n=1, note="": bar.update(task, advance=n, note=note)
        return
    state = {"done": 0, "last": 0.0}
    started = time.monotonic()

    def advance(n: int = 1, note: str = "") -> None:
        state["done"] += n
        now = time.monotonic()
        if now - state["last"] < every_s and state["done"] != total:
            return
        state["last"] = now
        rate = state["done"] / max(now - started, 1e-9)
        eta = f", eta {((total - state['done']) / rate):.0f}s" if total and rate > 0 else ""
        of = f"/{total}" if total else ""
        print(f"{label}: {state['done']}{of} ({now - started:.0f}s{eta}){' ' + note if note else ''}",
              file=sys.stderr, flush=True)

    yield advance
