"""What was served, from the decision log: ``flowfront traces report``.

Per workflow: requests, answered and failed, the candidates that answered, realised latency and
cost, and beside them what static selection and the most accurate candidate would have cost on
the same requests. Those two are *estimates*: the router's per-query estimates logged with each
decision (static selection chooses from the frontier's estimates under the request's own
preference). Fallbacks, errors by status, and calls skipped because a circuit breaker was open.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from flowfront.errors import FlowfrontError
from flowfront.store import Decision

__all__ = ["WorkflowTraffic", "summarise_traffic"]


@dataclass
class WorkflowTraffic:
    workflow: str
    requests: int = 0
    answered: int = 0
    candidates: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    fallbacks: int = 0
    breaker_skips: int = 0
    explored: int = 0
    latency_s: list[float] = field(default_factory=list)
    cost_usd: list[float] = field(default_factory=list)
    static: dict[str, list[float]] = field(
        default_factory=lambda: {"latency_s": [], "cost_usd": [], "accuracy": []}
    )
    best: dict[str, list[float]] = field(
        default_factory=lambda: {"latency_s": [], "cost_usd": [], "accuracy": []}
    )
    served_est: dict[str, list[float]] = field(
        default_factory=lambda: {"latency_s": [], "cost_usd": [], "accuracy": []}
    )

    def as_json(self) -> dict[str, Any]:
        def mean(xs: list[float]) -> float | None:
            return float(np.mean(xs)) if xs else None

        def p50(xs: list[float]) -> float | None:
            return float(np.median(xs)) if xs else None

        return {
            "workflow": self.workflow, "requests": self.requests, "answered": self.answered,
            "errors": {str(k): v for k, v in sorted(self.statuses.items()) if k != 200},
            "candidates": dict(self.candidates.most_common()), "fallbacks": self.fallbacks,
            "breaker_skips": self.breaker_skips, "explored": self.explored,
            "realised": {"latency_s_mean": mean(self.latency_s), "latency_s_p50": p50(self.latency_s),
                         "cost_usd_mean": mean(self.cost_usd), "cost_usd_total": float(sum(self.cost_usd))},
            "estimated": {name: {k: mean(v) for k, v in part.items()} | {"n": len(part["cost_usd"])}
                          for name, part in (("served", self.served_est), ("static", self.static),
                                             ("most_accurate", self.best))},
        }


def summarise_traffic(decisions: list[Decision], workdir: Path) -> list[WorkflowTraffic]:
    """One summary per workflow, in order of traffic."""
    out: dict[str, WorkflowTraffic] = {}
    frontiers: dict[tuple[str, str], Any] = {}
    for d in decisions:
        t = out.setdefault(d.workflow, WorkflowTraffic(d.workflow))
        t.requests += 1
        t.statuses[d.status] += 1
        t.fallbacks += bool([a for a in d.fallbacks if not str(a.get("error", "")).startswith("skipped")])
        t.breaker_skips += sum(
            str(a.get("error", "")).startswith("skipped: circuit breaker") for a in d.fallbacks
        )
        t.explored += d.explored
        if d.status != 200 or d.candidate is None:
            continue
        t.answered += 1
        t.candidates[d.candidate] += 1
        if d.latency_s is not None:
            t.latency_s.append(d.latency_s)
        t.cost_usd.append(d.cost_usd or 0.0)
        if d.estimates is not None and d.candidate_index is not None:
            _estimates(t, d, _frontier(frontiers, workdir, d))
    return sorted(out.values(), key=lambda t: -t.requests)


def _estimates(t: WorkflowTraffic, d: Decision, frontier: Any) -> None:
    assert d.estimates is not None and d.candidate_index is not None
    acc, lat, cost = (np.asarray(d.estimates[k], dtype=float) for k in ("accuracy", "latency_s", "cost_usd"))
    for part, i in ((t.served_est, d.candidate_index), (t.best, int(np.argmax(acc)))):
        part["accuracy"].append(float(acc[i]))
        part["latency_s"].append(float(lat[i]))
        part["cost_usd"].append(float(cost[i]))
    if frontier is None:
        return
    from flowfront.router.select import Preference, select_static

    try:
        pref = Preference.model_validate({**d.preference, "on_infeasible": "nearest"})
        index, _, _ = select_static(frontier, pref)
    except (FlowfrontError, ValueError):
        return
    t.static["accuracy"].append(float(acc[index]))
    t.static["latency_s"].append(float(lat[index]))
    t.static["cost_usd"].append(float(cost[index]))


def _frontier(cache: dict[tuple[str, str], Any], workdir: Path, d: Decision) -> Any:
    """The frontier the decision was made on, if the workdir still has it (matched by hash)."""
    key = (d.workflow, d.frontier_hash)
    if key not in cache:
        from flowfront.compile.artifact import Frontier

        cache[key] = None
        for path in [workdir / d.workflow / "frontier.json", *workdir.glob("*/frontier.json")]:
            try:
                frontier = Frontier.load(path)
            except FlowfrontError:
                continue
            if frontier.content_hash() == d.frontier_hash:
                cache[key] = frontier
                break
    return cache[key]
