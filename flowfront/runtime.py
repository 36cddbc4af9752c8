"""Wiring shared by the CLI, the compiler, the router jobs and the service.

Given settings, open the trace store, load model cards, build the backend a benchmark asks for and
run configurations over its splits. Nothing here runs at import.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flowfront.backends.base import Backend
from flowfront.benchmarks import Benchmark, Summary, grade, load_queries, summarise_runs
from flowfront.data import ensure_imported, source_for_outcomes
from flowfront.errors import DataError, SpecError
from flowfront.executor import Executor, Query, RunResult
from flowfront.modelcards import ModelCard, load_model_cards
from flowfront.settings import Settings
from flowfront.space import Configuration, Resolved, resolve
from flowfront.store import TraceStore, connect


def load_cards(settings: Settings) -> dict[str, ModelCard]:
    """The built-in cards, overlaid by the user's own (``cards_dir``) where that folder exists."""
    cards = load_model_cards(settings.configs_dir / "models")
    if settings.cards_dir.is_dir() and any(settings.cards_dir.glob("*.y*ml")):
        cards.update(load_model_cards(settings.cards_dir))
    return cards


def make_backend(
    name: str,
    store: TraceStore,
    cards: dict[str, ModelCard],
    settings: Settings,
    *,
    models: Sequence[str] | None = None,
    api_base: str | None = None,
) -> Backend:
    """``replay`` answers in-process; ``replay-litellm`` routes the same replay through litellm's
    custom-provider path; ``litellm`` calls real providers (through the store as a cache)."""
    from flowfront.backends.replay import ReplayBackend

    if name == "replay":
        return ReplayBackend(store, cards, models=models)
    from flowfront.backends.cached import CachedBackend
    from flowfront.backends.litellm_client import LiteLLMBackend

    if name == "replay-litellm":
        replay = ReplayBackend(store, cards, models=models)
        return LiteLLMBackend(cards, settings, replay=replay)
    if name == "litellm":
        return CachedBackend(LiteLLMBackend(cards, settings, api_base=api_base, models=models or ()), store)
    raise SpecError(f"unknown backend {name!r}", hint="use replay, replay-litellm or litellm")


@dataclass
class DataRef:
    """Which imported source a benchmark reads (a built-in one, or an outcome table)."""

    source: str
    summary: dict[str, Any]
    limit: int | None = None  # first N queries of each split (settings.query_limit)


def backend_name(bench: Benchmark, settings: Settings) -> str:
    """The backend every stage uses for a benchmark: its own (a live-only one) or the settings'."""
    return "litellm" if bench.spec.backend == "litellm" else settings.backend


def benchmark_backend(
    bench: Benchmark, store: TraceStore, settings: Settings, *, api_base: str | None = None
) -> Backend:
    return make_backend(backend_name(bench, settings), store, load_cards(settings), settings,
                        models=bench.workflow.all_models(), api_base=api_base)


def prepare_data(bench: Benchmark, store: TraceStore, settings: Settings, outcomes: Path | None = None,
                 *, live: bool | None = None) -> DataRef:
    """The data a benchmark reads: an outcome table, its recording (replay), or its inputs (live)."""
    data = _prepare_data(bench, store, settings, outcomes,
                         live=backend_name(bench, settings) == "litellm" if live is None else live)
    data.limit = settings.query_limit
    return data


def _prepare_data(bench: Benchmark, store: TraceStore, settings: Settings, outcomes: Path | None, *,
                  live: bool) -> DataRef:
    if outcomes is not None:
        source = source_for_outcomes(outcomes)
        return DataRef(source, ensure_imported(store, source, path=outcomes))
    if bench.spec.recording is not None and not live:
        from flowfront.recording import import_recording

        return DataRef(*import_recording(store, settings.configs_dir / bench.spec.recording))
    source = bench.spec.data.source
    if source == "humaneval":
        from flowfront.questions import ensure_humaneval

        return DataRef(source, ensure_humaneval(store, bench))
    if source == "outcomes":
        if not bench.spec.data.files:
            raise DataError(f"benchmark {bench.name!r} reads an outcome table but names no file",
                            hint="set data.files to the table's path")
        return _prepare_data(bench, store, settings, Path(bench.spec.data.files[0]), live=live)
    if source == "questions":
        from flowfront.questions import ensure_questions, questions_source

        return DataRef(questions_source(bench), ensure_questions(store, bench, settings.require_data_dir()))
    return DataRef(source, ensure_imported(store, source, data_dir=settings.require_data_dir()))


def load_outcomes_benchmark(settings: Settings, table: Path, base: str = "model-route",
                            name: str | None = None) -> Benchmark:
    """Import an outcome table (validated row by row) and return the benchmark that runs it; with
    ``name``, saved under that name among your own benchmarks (``<workdir>/own``), so ``serve``,
    ``frontier``, ``select`` and ``route`` find it."""
    from flowfront.benchmarks import load_benchmark, outcomes_benchmark, save_benchmark

    with open_store(settings) as store:
        data = prepare_data(load_benchmark(base, settings.configs_dir), store, settings, table)
    bench = outcomes_benchmark(
        load_benchmark(base, settings.configs_dir),
        table,
        list(data.summary["models"]),
        data.source.removeprefix("outcomes-"),
        name=name,
    )
    return bench if name is None else save_benchmark(bench, settings.workspace.own)


@contextmanager
def open_store(settings: Settings) -> Iterator[TraceStore]:
    store = connect(settings.store_url)
    try:
        yield store
    finally:
        store.close()


@dataclass
class ExecOutcome:
    summary: Summary
    results: list[RunResult]
    queries: list[Query]
    scores: list[float]


def execute(
    bench: Benchmark,
    config: Configuration,
    queries: Sequence[Query],
    backend: Backend,
    settings: Settings,
    *,
    progress: bool = False,
    raise_errors: bool = True,
) -> ExecOutcome:
    """Run one configuration over queries and grade it. A failed call is an error unless told."""
    resolved = resolve(bench.workflow, config)
    executor = Executor(
        bench.workflow, backend, concurrency=settings.default_concurrency, timeout_s=settings.call_timeout_s
    )
    results = asyncio.run(_run_all(executor, resolved, queries, progress))
    if raise_errors:
        for res in results:
            if res.error is not None:
                from flowfront.errors import BackendError

                raise BackendError(f"query {res.query_id}: {res.error}", model=res.failed_model)
    scores = [grade(r, q, bench.spec.match) for r, q in zip(results, queries, strict=True)]
    return ExecOutcome(summarise_runs(results, scores), results, list(queries), scores)


async def _run_all(
    executor: Executor, resolved: Resolved, queries: Sequence[Query], progress: bool
) -> list[RunResult]:
    if not progress:
        return await executor.run_batch(resolved, queries)
    from rich.progress import Progress

    with Progress(transient=True) as bar:
        task = bar.add_task("executing", total=len(queries))
        return await executor.run_batch(resolved, queries, progress=lambda n: bar.advance(task, n))


def benchmark_queries(bench: Benchmark, store: TraceStore, data: DataRef, split: str | None) -> list[Query]:
    # A recording holds complete queries by construction; live inputs have no outcomes yet.
    recorded = (
        data.source.startswith("recording-")
        or data.source in {"humaneval"}
        or data.source.startswith("questions")
    )
    queries = load_queries(
        bench, store, data.source, split, require_outcomes=bench.spec.backend == "replay" and not recorded
    )
    return queries[: data.limit] if data.limit is not None else queries
