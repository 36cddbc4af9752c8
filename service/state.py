"""What the service serves: workflows, their frontiers and routers, loaded from disk.

:class:`Shared` lives as long as the app (settings, metrics, breakers, the trace writer, the
replay source and backends, the loaded embedding models). :class:`ServiceState` is the
swappable part: one :class:`WorkflowEntry` per workflow YAML in the served folder, built from
``<workdir>/<benchmark>/frontier.json`` and ``router-frontier/``. ``/admin/reload`` builds a new
state beside the old one and swaps the reference; requests hold the state they started with,
and the old one is closed once its last request finishes.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from flowfront.backends.base import Backend, CallRequest
from flowfront.backends.guard import BreakerBoard, GuardedBackend
from flowfront.compile.artifact import Frontier
from flowfront.errors import CompileError, FlowfrontError, RoutingError, SpecError
from flowfront.executor import Executor
from flowfront.redact import Redactor
from flowfront.router.base import Router
from flowfront.router.select import Scale, frontier_estimates
from flowfront.service.config import ServiceSettings
from flowfront.service.metrics import Metrics
from flowfront.service.routing import FeatureSource, RouterFront
from flowfront.service.telemetry import Telemetry, telemetry_from_environment
from flowfront.service.tracing import TraceWriter
from flowfront.space import Configuration, Resolved, resolve
from flowfront.spec import Workflow, load_workflow
from flowfront.store import StoreUnavailable, TraceStore, connect
from flowfront.workspace import BenchmarkDir

__all__ = ["ServiceState", "Shared", "WorkflowEntry", "load_entries", "load_state"]

log = logging.getLogger("flowfront.service")


@dataclass
class WorkflowEntry:
    """One served workflow and the artifacts found for it."""

    workflow: Workflow
    status: str  # "ready", or why a strategy is missing
    # ready | static (no router trained: serves static selection) | degraded (an artifact exists but
    # cannot be used) | missing (nothing compiled yet)
    health: str = "ready"
    benchmark: str | None = None
    frontier: Frontier | None = None
    frontier_hash: str = ""
    ids: list[str] = field(default_factory=list)
    resolved: list[Resolved] = field(default_factory=list)
    models: list[frozenset[str]] = field(default_factory=list)  # models each candidate may call
    all_models: set[str] = field(default_factory=set)
    static: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # frontier accuracy, latency, cost
    scale: Scale | None = None
    router: Router | None = None
    router_generation: str = ""  # the router artifact's content hash: which router decided
    router_problem: str | None = None
    feature_config: Any = None
    executor: Executor | None = None
    front: RouterFront | None = None  # the router's estimates, cached and batched
    progressive: Any = None  # the router's checkpoint routers (router.progressive.ProgressivePolicy)

    @property
    def name(self) -> str:
        return self.workflow.name

    @property
    def strategies(self) -> list[str]:
        if self.frontier is None:
            return []
        return ["router", "static"] if self.router is not None else ["static"]


class Shared:
    """Resources that outlive reloads."""

    def __init__(self, settings: ServiceSettings, metrics: Metrics, redactor: Redactor,
                 telemetry: Telemetry | None = None) -> None:
        from flowfront.runtime import load_cards

        self.settings = settings
        self.metrics = metrics
        self.redactor = redactor
        self.breakers = BreakerBoard(settings.breaker_failures, settings.breaker_reset_s,
                                     on_change=metrics.breaker_changed)
        self.writer = TraceWriter(
            settings.served_store_url,
            metrics,
            redactor,
            batch_size=settings.trace_batch_size,
            flush_interval_s=settings.trace_flush_interval_s,
            queue_max=settings.trace_queue_max,
            durable=settings.trace_durable,
            max_age_s=settings.trace_max_age_days * 86400 if settings.trace_max_age_days else None,
            max_bytes=int(settings.trace_max_mb * 1e6) if settings.trace_max_mb else None,
            prune_interval_s=settings.trace_prune_interval_s,
        )
        self.store: TraceStore | None = None  # opened by open_stores (the service retries until it can)
        self.replica = f"{socket.gethostname()}:{os.getpid()}"
        self.telemetry = telemetry if telemetry is not None else telemetry_from_environment(settings.otel)
        self._one_store = False
        self.cards = load_cards(settings)
        self.backends: dict[tuple[str, ...], GuardedBackend] = {}
        self.features: dict[Any, FeatureSource] = {}
        # One worker per concurrent batch; onnxruntime and LightGBM release the GIL inside.
        self.pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="flowfront-batch")
        self._lock = threading.Lock()
        # Trace ids: a random per-process prefix and a counter (uuid4 costs a syscall per request).
        self._trace_prefix = os.urandom(11).hex()
        self._trace_seq = itertools.count()

    async def open_stores(self) -> None:
        """Connect the store (replay source, cache) and the served-request store; start the writer."""
        if self.store is None:
            self.store = await asyncio.to_thread(connect, self.settings.store_url, redactor=self.redactor)
        if self.writer.store is None:
            served = self.settings.served_store_url
            self._one_store = served == self.settings.store_url
            await self.writer.start(self.store if self._one_store else None)

    @property
    def served_store(self) -> TraceStore:
        if self.writer.store is None:
            raise StoreUnavailable(f"the served-request store {self.writer.url.shown} is not open yet",
                                   hint="retry when GET /readyz answers 200")
        return self.writer.store

    def trace_id(self) -> str:
        """A new 32-hex-digit id, unique across processes and restarts."""
        return f"{self._trace_prefix}{next(self._trace_seq):010x}"

    def backend(self, models: list[str]) -> GuardedBackend:
        """The guarded backend for a model pool, built once (reloads keep the replay index)."""
        key = tuple(sorted(models))
        with self._lock:
            found = self.backends.get(key)
            if found is None:
                found = self.backends[key] = GuardedBackend(
                    self._raw_backend(list(key)),
                    self.breakers,
                    self.settings.call_timeout_s,
                    self.metrics.backend_error,
                )
        return found

    def _raw_backend(self, models: list[str]) -> Backend:
        from flowfront.backends.faults import FaultInjectingBackend
        from flowfront.backends.replay import ReplayBackend
        from flowfront.runtime import make_backend

        s = self.settings
        assert self.store is not None
        inner = make_backend(s.backend, self.store, self.cards, s, models=models)
        if s.backend != "replay":
            # litellm's import takes seconds; done here (off the event loop, before /readyz says
            # ready), never on the first live request.
            from flowfront.backends.litellm_client import litellm_module

            litellm_module()
        if isinstance(inner, ReplayBackend):
            # The first lookup builds the replay index (one SQLite scan): do it now, not on a request.
            inner.has(CallRequest(model=models[0], messages=()))
        if s.fault_fail_models or s.fault_hang_models:
            log.warning(
                "fault injection on: failing %s, hanging %s", s.fault_fail_models, s.fault_hang_models
            )
            return FaultInjectingBackend(
                inner,
                fail_models=s.fault_fail_models,
                hang_models=s.fault_hang_models,
                hang_s=max(3600.0, 10 * s.call_timeout_s),
            )
        return inner

    def feature_source(self, config: Any) -> FeatureSource:
        """One loaded embedding model (and feature-row cache) per feature configuration."""
        from flowfront.router.features import Embedder

        s = self.settings
        with self._lock:
            found = self.features.get(config)
            if found is None:
                cache = s.workspace.embeddings
                # The row cache in FeatureSource answers repeats; the embedder's own LRU stays small
                # (and off with it, so feature_lru_size=0 makes every new request run the model).
                embedder = Embedder(config, cache_dir=cache if s.embedding_disk_cache else None,
                                    cache_max_mb=s.embedding_cache_max_mb,
                                    lru_size=min(1024, s.feature_lru_size),
                                    num_threads=s.embed_threads)
                embedder.encode(["warm-up: load the model before the first request"])
                found = self.features[config] = FeatureSource(embedder, config, lru_size=s.feature_lru_size,
                                                              lookups=self.metrics.embed_lookups)
        return found

    async def aclose(self) -> None:
        await self.writer.aclose()
        for backend in self.backends.values():
            await backend.aclose()
        self.pool.shutdown(wait=True)
        for source in self.features.values():
            source.embedder.close()
        if self.store is not None and not self._one_store:  # else the writer closed it
            self.store.close()
        if self.telemetry is not None:
            self.telemetry.shutdown()


@dataclass
class ServiceState:
    """One generation of loaded artifacts."""

    entries: dict[str, WorkflowEntry]
    generation: int
    in_flight: int = 0
    retired: bool = False
    _idle: asyncio.Event = field(default_factory=asyncio.Event)

    def start(self) -> None:
        """Start the batchers (inside the running loop)."""
        for entry in self.entries.values():
            if entry.front is not None:
                entry.front.start()

    def enter(self) -> None:
        self.in_flight += 1
        self._idle.clear()

    def leave(self) -> None:
        self.in_flight -= 1
        if self.in_flight == 0:
            self._idle.set()

    async def retire(self) -> None:
        """Wait for the requests that started on this state, then stop its batchers."""
        self.retired = True
        if self.in_flight:
            await self._idle.wait()
        for entry in self.entries.values():
            if entry.front is not None:
                await entry.front.aclose()


def load_entries(shared: Shared, workflows_dir: Path, *, strict: bool = False) -> dict[str, WorkflowEntry]:
    """Every workflow YAML of ``workflows_dir``, and your own named ones (``<workdir>/own/workflows``,
    from ``run --outcomes FILE --name NAME``), with their artifacts (blocking; run in a thread).

    Missing artifacts are never an error (the workflow's status says what to run). Artifacts
    that exist but fail validation (corrupt, stale) are an error when ``strict`` (a reload keeps
    the old state rather than drop a workflow), otherwise a warning and a degraded status.
    """
    if not workflows_dir.is_dir():
        raise SpecError(
            f"workflows folder {workflows_dir} does not exist",
            hint="pass --workflows pointing at a folder of workflow YAML files (e.g. configs/workflows)",
        )
    entries: dict[str, WorkflowEntry] = {}
    own = shared.settings.workspace.own / "workflows"
    folders = [workflows_dir] + ([own] if own.is_dir() and own.resolve() != workflows_dir.resolve() else [])
    for path in [p for folder in folders for p in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")])]:
        workflow = load_workflow(path)
        if workflow.name in entries:
            raise SpecError(
                f"{path}: workflow name {workflow.name!r} is used twice in {' and '.join(map(str, folders))}",
                hint="give every served workflow a distinct name",
            )
        entries[workflow.name] = _entry(shared, workflow, strict)
    if not entries:
        raise SpecError(
            f"{workflows_dir} holds no workflow YAML files", hint="point --workflows at configs/workflows"
        )
    return entries


def _entry(shared: Shared, workflow: Workflow, strict: bool) -> WorkflowEntry:
    folder = _artifact_folder(shared.settings.workdir, workflow)
    if folder is None:
        return WorkflowEntry(
            workflow,
            status=f"not compiled: no frontier for this workflow under {shared.settings.workdir}"
            f"; run `flowfront profile` and `flowfront compile` for its benchmark",
            health="missing",
        )
    try:
        frontier = Frontier.load(BenchmarkDir(folder).frontier(), expect_workflow_hash=workflow.content_hash)
    except CompileError as exc:
        if strict:
            raise
        log.warning("workflow %s cannot be served: %s", workflow.name, exc)
        return WorkflowEntry(workflow, status=f"not compiled: {exc}", health="degraded")
    try:
        entry = _frontier_entry(workflow, frontier, folder.name)
    except FlowfrontError as exc:  # e.g. a candidate names a model or knob value the workflow lacks
        if strict:
            raise
        log.warning("workflow %s is degraded: %s", workflow.name, exc)
        return WorkflowEntry(
            workflow, status=f"degraded: its frontier cannot be served ({exc})", health="degraded"
        )
    entry.executor = Executor(workflow, shared.backend(workflow.all_models()),
                              concurrency=shared.settings.default_concurrency,
                              # the guarded backend enforces call_timeout_s; this is only a backstop
                              timeout_s=2 * shared.settings.call_timeout_s)
    _attach_router(shared, entry, BenchmarkDir(folder).router(), strict)
    return entry


def _artifact_folder(workdir: Path, workflow: Workflow) -> Path | None:
    """The benchmark folder whose frontier was compiled for this workflow (same name and hash).

    A folder named after the workflow wins; otherwise the most recently compiled match.
    """
    named = workdir / workflow.name
    if BenchmarkDir(named).frontier().is_file():
        return named
    matches = []
    for path in workdir.glob("*/frontier.json"):
        try:
            head = orjson.loads(path.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            continue  # not ours to judge: load() reports corrupt files of the folder it picks
        if isinstance(head, dict) and head.get("workflow") == workflow.name \
                and head.get("workflow_hash") == workflow.content_hash:
            matches.append(path)
    return max(matches, key=lambda p: p.stat().st_mtime).parent if matches else None


def _frontier_entry(workflow: Workflow, frontier: Frontier, benchmark: str) -> WorkflowEntry:
    ids, resolved, models = [], [], []
    for c in frontier.candidates:
        r = resolve(workflow, Configuration.parse(c.config, f"frontier candidate {c.id}"))
        ids.append(c.id)
        resolved.append(r)
        models.append(frozenset(s.model for slot in r.slots.values() for s in slot))
    acc, lat, cost = frontier_estimates(frontier)
    return WorkflowEntry(workflow, status="ready", benchmark=benchmark, frontier=frontier,
                         frontier_hash=frontier.content_hash(), ids=ids, resolved=resolved, models=models,
                         all_models=set().union(*models),
                         static=(acc, lat, cost), scale=Scale.from_estimates(lat, cost))


def _attach_router(shared: Shared, entry: WorkflowEntry, folder: Path, strict: bool) -> None:
    from flowfront.router.artifact import load_progressive, load_router, read_artifact

    train = f"run `flowfront train {entry.benchmark}` to route per query"
    if not (folder / "router.json").is_file():
        entry.router_problem = f"no trained router for {entry.name!r}; {train}"
        entry.status, entry.health = "static only: no router", "static"
        return
    try:
        router = load_router(folder, expect_inputs_hash=entry.frontier_hash)
        progressive = load_progressive(folder, router)
        art = read_artifact(folder)
        config = art.feature_config
        if list(router.candidate_ids_) != entry.ids:
            raise RoutingError(
                f"{folder}: router candidates {router.candidate_ids_} differ from the frontier's",
                hint="re-run `flowfront train`",
            )
    except FlowfrontError as exc:
        if strict:
            raise
        log.warning("workflow %s serves static only: %s", entry.name, exc)
        entry.router_problem = f"the router artifact cannot be used ({exc}); {train}"
        entry.status, entry.health = "static only: router unusable", "degraded"
        return
    entry.router, entry.feature_config = router, config
    entry.progressive = progressive if progressive is not None and progressive.active else None
    entry.router_generation = art.content_hash()
    s = shared.settings
    entry.front = RouterFront(shared.feature_source(config), router, shared.pool, memo_size=s.route_memo_size,
                              max_size=s.batch_max_size, max_wait_s=s.batch_wait_ms / 1000,
                              on_batch=shared.metrics.batch_size.observe)


async def load_state(
    shared: Shared, workflows_dir: Path, generation: int, *, strict: bool = False
) -> ServiceState:
    """Load every workflow's artifacts off the event loop and start the new state's batchers."""
    entries = await asyncio.to_thread(load_entries, shared, workflows_dir, strict=strict)
    state = ServiceState(entries, generation)
    state.start()
    return state
