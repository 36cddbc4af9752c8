"""Prometheus metrics, on a registry owned by one app (tests build several apps per process)."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from flowfront.backends.guard import STATE_CODE, State

__all__ = ["Metrics"]

# Buckets from 0.5 ms: decisions are milliseconds, replayed executions sub-millisecond.
_FAST = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


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
    breaker_state: Gauge
    embed_lookups: Counter
    batch_size: Histogram
    traces_written: Counter
    trace_queue: Gauge
    in_flight: Gauge

    @classmethod
    def create(cls) -> Metrics:
        r = CollectorRegistry(auto_describe=True)
        return cls(
            registry=r,
            requests=Counter("flowfront_requests", "Served requests by endpoint, workflow and status",
                             ["endpoint", "workflow", "status"], registry=r),
            decision_seconds=Histogram("flowfront_decision_seconds", "Time to choose a candidate (embed, predict, select)",
                                       ["workflow", "strategy"], buckets=_FAST, registry=r),
            execution_seconds=Histogram("flowfront_execution_seconds", "Time to execute the chosen configuration(s)",
                                        ["workflow"], buckets=_FAST, registry=r),
            chosen=Counter("flowfront_chosen_candidates", "Candidates that answered, by workflow",
                           ["workflow", "candidate"], registry=r),
            backend_errors=Counter("flowfront_backend_errors", "Failed model calls by model and kind",
                                   ["model", "kind"], registry=r),
            fallbacks=Counter("flowfront_fallbacks", "Requests answered by another candidate after a failure",
                              ["workflow"], registry=r),
            breaker_state=Gauge("flowfront_breaker_state", "Circuit breaker per model: 0 closed, 1 half-open, 2 open",
                                ["model"], registry=r),
            embed_lookups=Counter("flowfront_router_lookups", "Where each routed query's estimates came from: "
                                  "memo, feature-cache, embedding-cache or computed (the model ran)",
                                  ["result"], registry=r),
            batch_size=Histogram("flowfront_batch_size", "Queries per embedding/prediction batch",
                                 buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256), registry=r),
            traces_written=Counter("flowfront_traces_written", "Served calls written to the trace store", registry=r),
            trace_queue=Gauge("flowfront_trace_queue", "Served calls waiting to be written", registry=r),
            in_flight=Gauge("flowfront_requests_in_flight", "Requests being served", registry=r),
        )

    def breaker_changed(self, model: str, state: State) -> None:
        self.breaker_state.labels(model=model).set(STATE_CODE[state])

    def backend_error(self, model: str, kind: str) -> None:
        self.backend_errors.labels(model=model, kind=kind).inc()

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)
