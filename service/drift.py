"""Drift of served traffic against what the router was trained on: ``flowfront drift`` and gauges.

Four measures over a window of the decision log (and the feedback joined to it):

* **mix**: the population stability index of the served task mix (the caller's hint, else the
  group the router routed the query as) against the training mix the router recorded, with a
  small floor so a task never seen in training counts, not divides by zero;
* **ood**: the share of routed queries the router flagged as far from every training query;
* **calibration**: the Brier score and expected calibration error of the router's predicted
  accuracy for the served candidate against its grade (``correct``, else ``judge``), with the
  reliability bins;
* **latency**: realised over predicted latency of the served candidate (the median ratio).

Each has a threshold (``DriftThresholds``, from the service settings or the command line); a
measure over its threshold is an alarm. The service keeps them as ``/metrics`` gauges and logs one
line when a measure crosses its threshold, and one when it comes back.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

from flowfront.store import Decision, Feedback

__all__ = ["DriftThresholds", "drift_report", "psi"]

_FLOOR = 1e-4
GRADES = ("correct", "judge")


@dataclass(frozen=True)
class DriftThresholds:
    psi: float = 0.25  # above 0.25 the customary reading is "a significant shift"
    ood_share: float = 0.10
    ece: float = 0.10
    latency_ratio: float = 1.5  # realised/predicted beyond this factor either way
    min_requests: int = 50  # fewer routed requests in the window: too few to say


def psi(served: dict[str, float], reference: dict[str, float]) -> float:
    """Population stability index of two distributions over names (missing names count as 0)."""
    names = sorted(set(served) | set(reference))
    s = np.array([served.get(n, 0.0) for n in names], dtype=float)
    r = np.array([reference.get(n, 0.0) for n in names], dtype=float)
    s = np.maximum(s / max(s.sum(), _FLOOR), _FLOOR)
    r = np.maximum(r / max(r.sum(), _FLOOR), _FLOOR)
    return float(np.sum((s - r) * np.log(s / r)))


def _calibration(decisions: list[Decision], feedback: list[Feedback], bins: int = 10) -> dict[str, Any]:
    grades: dict[str, dict[str, float]] = {}
    for f in feedback:
        if f.name in GRADES and f.value is not None:
            grades.setdefault(f.id, {})[f.name] = float(f.value)
    pairs = []
    for d in decisions:
        by = grades.get(d.id)
        if by is None or d.estimates is None or d.candidate_index is None:
            continue
        grade = next(by[n] for n in GRADES if n in by)
        pairs.append((float(d.estimates["accuracy"][d.candidate_index]), grade))
    if not pairs:
        return {"graded": 0, "brier": None, "ece": None, "bins": []}
    p, y = np.array(pairs).T
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    table, ece = [], 0.0
    for b in range(bins):
        m = which == b
        if m.any():
            table.append({"from": float(edges[b]), "to": float(edges[b + 1]), "n": int(m.sum()),
                          "predicted": float(p[m].mean()), "observed": float(y[m].mean())})
            ece += m.mean() * abs(p[m].mean() - y[m].mean())
    return {"graded": len(pairs), "brier": float(np.mean((p - y) ** 2)), "ece": float(ece), "bins": table}


def drift_report(decisions: list[Decision], feedback: list[Feedback], training_mix: dict[str, float] | None,
                 thresholds: DriftThresholds) -> dict[str, Any]:
    """The four measures over ``decisions`` (one workflow's window), their thresholds and alarms."""
    routed = [d for d in decisions if d.strategy == "router" and d.status == 200]
    mix = Counter((d.task or d.route_group or "unknown") for d in routed)
    enough = len(routed) >= thresholds.min_requests
    served_mix = {k: v / len(routed) for k, v in mix.items()} if routed else {}
    mix_psi = psi(served_mix, training_mix) if training_mix and routed else None
    ood = float(np.mean([d.ood for d in routed])) if routed else None
    cal = _calibration(routed, feedback)
    ratios = [d.latency_s / d.estimates["latency_s"][d.candidate_index] for d in routed
              if d.latency_s is not None and d.estimates is not None and d.candidate_index is not None
              and d.estimates["latency_s"][d.candidate_index] > 0]
    latency = float(np.median(ratios)) if ratios else None
    alarms = {
        "mix": enough and mix_psi is not None and mix_psi > thresholds.psi,
        "ood": enough and ood is not None and ood > thresholds.ood_share,
        "calibration": cal["graded"] >= thresholds.min_requests and cal["ece"] is not None
        and cal["ece"] > thresholds.ece,
        "latency": enough and latency is not None and not (1 / thresholds.latency_ratio <= latency
                                                          <= thresholds.latency_ratio),
    }
    return {"requests": len(decisions), "routed": len(routed), "enough": enough,
            "mix": {"psi": mix_psi, "served": served_mix, "training": training_mix or {}},
            "ood_share": ood, "calibration": cal, "latency_ratio_median": latency,
            "thresholds": thresholds.__dict__, "alarms": alarms}
