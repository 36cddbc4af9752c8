"""The ``eval`` job: evaluate one benchmark and write its results next to its other artifacts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flowfront.settings import Settings

__all__ = ["eval_job"]


def eval_job(settings: Settings, benchmark: object, **kw: Any) -> tuple[Path, dict]:
    """Run :func:`eval.harness.evaluate` (``kw`` passed on) and write
    ``<workdir>/<benchmark>/eval/results.json`` and ``curves.png``; return the JSON's path and the result."""
    from eval.harness import evaluate
    from eval.report import plot_curves, write_results

    result = evaluate(settings, benchmark, **kw)
    folder = settings.workdir / result["benchmark"] / "eval"
    path = write_results(result, folder)
    plot_curves(result, folder / "curves.png")
    return path, result
