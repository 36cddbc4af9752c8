"""Prometheus metrics, on a registry owned by one app (tests build several apps per process).

With ``serve --workers N`` each worker is its own process: prometheus_client's multiprocess mode
(``PROMETHEUS_MULTIPROC_DIR``, set by the supervisor before the workers start) keeps every
worker's values in files there, and ``/metrics`` sums them, whichever worker answers. Gauges say
how they combine: requests in flight and queued traces add up across workers, a breaker's state
is shown per worker (breakers are per process).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from flowfront.backends.guard import STATE_CODE, State

__all__ = ["Metrics", "multiprocess_dir"]

# Buckets from 0.5 ms: decisions are milliseconds, replayed executions sub-millisecond.
_FAST = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def multiprocess_dir() -> str | None:
    """The folder shared by the workers' metric files, when serving with several workers."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


@dataclass
class Metrics:
    """Every collector the service exports."""

    registry: CollectorRegistry
    requests: Counter
    decision_seconds: Histogram
    execution_seconds: Histogram
    chosen: Counter
    backend_errors: Counter
    fallbacks: Counter
    checkpoint_decisions: Counter
    breaker_state: Gauge
    embed_lookups: Counter
    batch_size: Histogram
    traces_written: Counter
    traces_dropped: Counter
    traces_failed: Counter
    trace_queue: Gauge
    in_flight: Gauge
    tokens: Counter
    cost_usd: Counter
    generation: Gauge
    drift: Gauge
    drift_alarm: Gauge

    @classmethod
    def create(cls) -> Metrics:
        r = CollectorRegistry(auto_describe=True)
        return cls(
            registry=r,
            requests=Counter("flowfront_requests", "Served requests by endpoint, workflow and status",
                             ["endpoint", "workflow", "status"], registry=r),
            decision_seconds=Histogram("flowfront_decision_seconds",
                                       "Time to choose a candidate (embed, predict, select)",
                                       ["workflow", "strategy"], buckets=_FAST, registry=r),
            execution_seconds=Histogram("flowfront_execution_seconds",
                                        "Time to execute the chosen configuration(s)",
                                        ["workflow"], buckets=_FAST, registry=r),
            chosen=Counter("flowfront_chosen_candidates", "Candidates that answered, by workflow",
                           ["workflow", "candidate"], registry=r),
            backend_errors=Counter("flowfront_backend_errors", "Failed model calls by model and kind",
                                   ["model", "kind"], registry=r),
            fallbacks=Counter("flowfront_fallbacks", "Requests answered by another candidate after a failure",
                              ["workflow"], registry=r),
            checkpoint_decisions=Counter("flowfront_checkpoint_decisions",
                                         "Re-decisions at workflow checkpoints (progressive routing), by "
                                         "workflow, checkpoint and outcome: switched or kept",
                                         ["workflow", "checkpoint", "outcome"], registry=r),
            breaker_state=Gauge("flowfront_breaker_state",
                                "Circuit breaker per model (and worker): 0 closed, 1 half-open, 2 open",
                                ["model"], registry=r, multiprocess_mode="liveall"),
            embed_lookups=Counter("flowfront_router_lookups",
                                  "Where each routed query's estimates came from: memo, feature-cache, "
                                  "embedding-cache or computed (the model ran)",
                                  ["result"], registry=r),
            batch_size=Histogram("flowfront_batch_size", "Queries per embedding/prediction batch",
                                 buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256), registry=r),
            traces_written=Counter("flowfront_traces_written", "Rows written to the served-request store "
                                   "(decisions and their calls)", registry=r),
            traces_dropped=Counter("flowfront_traces_dropped", "Served requests whose rows were dropped: "
                                   "non-durable mode with a full queue", registry=r),
            traces_failed=Counter("flowfront_traces_failed", "Served requests whose rows the store refused "
                                  "(durable: answered 503)", registry=r),
            trace_queue=Gauge("flowfront_trace_queue", "Served requests waiting to be written", registry=r,
                              multiprocess_mode="livesum"),
            in_flight=Gauge("flowfront_requests_in_flight", "Requests being served", registry=r,
                            multiprocess_mode="livesum"),
            tokens=Counter("flowfront_tokens", "Tokens of served model calls", ["workflow", "model", "kind"],
                           registry=r),
            cost_usd=Counter("flowfront_cost_usd", "Cost of served model calls in USD", ["workflow", "model"],
                             registry=r),
            generation=Gauge("flowfront_generation", "The artifact generation each worker serves", registry=r,
                             multiprocess_mode="liveall"),
            drift=Gauge("flowfront_drift",
                        "Drift of the last window of served traffic: measure psi (task mix against "
                        "training), ood_share, ece (calibration against grades), latency_ratio (realised "
                        "over predicted)", ["workflow", "measure"], registry=r, multiprocess_mode="max"),
            drift_alarm=Gauge("flowfront_drift_alarm", "1 while a drift measure is over its threshold",
                              ["workflow", "measure"], registry=r, multiprocess_mode="max"),
        )

    def breaker_changed(self, model: str, state: State) -> None:
        self.breaker_state.labels(model=model).set(STATE_CODE[state])

    def backend_error(self, model: str, kind: str) -> None:
        self.backend_errors.labels(model=model, kind=kind).inc()

    def render(self) -> bytes:
        """The text exposition format: this app's registry, or every worker's when serving with several."""
        folder = multiprocess_dir()
        if folder is None:
            return generate_latest(self.registry)
        from prometheus_client import multiprocess

        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged, path=folder)
        return generate_latest(merged)


def forget_dead_workers(folder: str) -> None:
    """Drop live gauges of worker processes that are gone (a restarted worker has a new pid)."""
    from prometheus_client import multiprocess

    from flowfront.processes import pid_alive

    for name in os.listdir(folder):
        if name.startswith("gauge_live") and name.endswith(".db"):
            pid = name.rsplit("_", 1)[-1].removesuffix(".db")
            if pid.isdigit() and not pid_alive(int(pid)):
                multiprocess.mark_process_dead(int(pid), folder)
