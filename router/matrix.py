"""Build the outcome matrix: every candidate executed on every query of a split (replay)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from flowfront.backends.base import Backend
from flowfront.benchmarks import Benchmark
from flowfront.executor import Query
from flowfront.router.base import OutcomeMatrix
from flowfront.settings import Settings
from flowfront.space import Configuration


def build_outcomes(
    bench: Benchmark,
    candidates: Sequence[dict],
    candidate_ids: Sequence[str],
    queries: Sequence[Query],
    backend: Backend,
    settings: Settings,
    *,
    source_hash: str,
    progress: bool = False,
) -> OutcomeMatrix:
    """Execute each candidate over the queries; failed calls count as incorrect, never silently."""
    from flowfront.runtime import execute

    q, k = len(queries), len(candidates)
    correct, lat_seq, lat_par, cost = (np.zeros((q, k)) for _ in range(4))
    from flowfront.progress import progress_bar

    with progress_bar(
        f"outcome matrix {q} queries x {k} candidates", total=k if progress else None
    ) as advance:
        for j in range(k):
            out = execute(bench, Configuration.parse(candidates[j]), queries, backend, settings)
            correct[:, j] = out.scores
            lat_seq[:, j] = [r.latency_sequential_s for r in out.results]
            lat_par[:, j] = [r.latency_parallel_s for r in out.results]
            cost[:, j] = [r.cost_usd for r in out.results]
            if progress:
                advance(1)
    return OutcomeMatrix(
        [x.query_id for x in queries], [x.text for x in queries], list(candidate_ids), list(candidates),
        correct, lat_seq, lat_par, cost, source_hash,
        tasks=None if any(x.task is None for x in queries) else [x.task for x in queries],
    )
