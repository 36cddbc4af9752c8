"""``flowfront retrain``: a challenger from the offline outcome matrix plus graded served decisions,
compared with the serving champion, promoted only on evidence.

Graded decisions (a decision with feedback ``correct``, else ``judge``) are split by time: the older
half is training data, the newer half is held out. A graded decision observed one candidate; its
row in the challenger's outcome matrix carries that grade and, for the candidates not served, the
mean grade they received on decisions of the same task (or routed group), shrunk towards the
logged estimate by ``IMPUTE_STRENGTH`` pseudo-observations (a direct-method imputation: where
exploration tried a candidate, what it earned; where not, what the router believed).

Two comparisons, then one rule (``decide``):

* off-policy, on the held-out decisions: inverse propensity and doubly robust values of the
  challenger and the champion (``router.offpolicy``), the direct model being the logged estimates;
* offline, on the benchmark's test split: expected utility over the lambda sweep, paired.

Promote when the doubly robust difference (challenger - champion) has its 95% interval above 0
and the offline difference has its interval's upper end at or above ``-OFFLINE_TOLERANCE``
(not significantly worse than that). Anything else keeps the champion, and says why.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from flowfront.errors import RoutingError
from flowfront.router.base import OutcomeMatrix, Policy, expected_utility
from flowfront.router.offpolicy import Logged, policy_value, value_difference
from flowfront.router.select import Preference, Scale, utility
from flowfront.store import Decision, Feedback

__all__ = ["Graded", "IMPUTE_STRENGTH", "MIN_GRADED", "OFFLINE_TOLERANCE", "Comparison", "bandit_matrix",
           "compare", "decide", "graded_decisions", "logged"]

MIN_GRADED = 60  # graded decisions retrain needs: half to learn from, half to judge the challenger on
IMPUTE_STRENGTH = 5.0
OFFLINE_TOLERANCE = 0.01
GRADE_NAMES = ("correct", "judge")  # the grades retrain reads, first found wins


@dataclass(frozen=True)
class Graded:
    decision: Decision
    grade: float


def graded_decisions(decisions: list[Decision], feedback: list[Feedback], frontier_hash: str) -> list[Graded]:
    """Answered decisions on this frontier that have a usable grade, oldest first."""
    grades: dict[str, dict[str, float]] = defaultdict(dict)
    for f in feedback:
        if f.name in GRADE_NAMES and f.value is not None:
            grades[f.id][f.name] = float(f.value)
    out = []
    for d in decisions:
        if d.status != 200 or d.frontier_hash != frontier_hash or d.candidate_index is None or d.estimates is None:
            continue
        by_name = grades.get(d.id, {})
        name = next((n for n in GRADE_NAMES if n in by_name), None)
        if name is not None:
            out.append(Graded(d, by_name[name]))
    return sorted(out, key=lambda g: (g.decision.created_at, g.decision.id))


def _lam(d: Decision) -> float:
    lam = d.preference.get("lambda")
    return float(lam) if lam is not None else 0.0


def logged(graded: list[Graded], scale: Scale) -> Logged:
    """Bandit feedback of the graded decisions: served action, propensity, realised utility (the
    grade minus the request's lambda times normalised realised latency) and the direct model."""
    action = np.array([g.decision.candidate_index for g in graded], dtype=np.int64)
    propensity = np.array([g.decision.propensity for g in graded], dtype=float)
    lam = np.array([_lam(g.decision) for g in graded])
    realised = np.array([g.decision.latency_s if g.decision.latency_s is not None else
                         g.decision.estimates["latency_s"][g.decision.candidate_index] for g in graded])  # type: ignore[index]
    grade = np.array([g.grade for g in graded])
    acc = np.array([g.decision.estimates["accuracy"] for g in graded])  # type: ignore[index]
    lat = np.array([g.decision.estimates["latency_s"] for g in graded])  # type: ignore[index]
    return Logged(action, propensity, utility(grade, realised, lam, scale),
                  utility(acc, lat, lam[:, None], scale))


def bandit_matrix(graded: list[Graded], like: OutcomeMatrix, *, default_task: str = "served") -> OutcomeMatrix:
    """Outcome rows for graded decisions, shaped like the offline matrix (same candidates)."""
    K = len(like.candidate_ids)
    task_of = [g.decision.task or default_task for g in graded]
    sums: dict[tuple[str, int], list[float]] = defaultdict(lambda: [0.0, 0.0])
    for g, task in zip(graded, task_of, strict=True):
        cell = sums[task, g.decision.candidate_index]  # type: ignore[index]
        cell[0] += g.grade
        cell[1] += 1.0
    correct = np.zeros((len(graded), K))
    lat = np.zeros((len(graded), K))
    cost = np.zeros((len(graded), K))
    for i, (g, task) in enumerate(zip(graded, task_of, strict=True)):
        est = g.decision.estimates
        assert est is not None and g.decision.candidate_index is not None
        for c in range(K):
            total, n = sums.get((task, c), (0.0, 0.0))
            correct[i, c] = (total + IMPUTE_STRENGTH * est["accuracy"][c]) / (n + IMPUTE_STRENGTH)
        a = g.decision.candidate_index
        correct[i, a] = g.grade
        lat[i] = est["latency_s"]
        cost[i] = est["cost_usd"]
        if g.decision.latency_s is not None:
            lat[i, a] = g.decision.latency_s
        if g.decision.cost_usd is not None:
            cost[i, a] = g.decision.cost_usd
    digest = hashlib.sha256("|".join(g.decision.id for g in graded).encode()).hexdigest()[:12]
    tasks = task_of if like.tasks is not None else None
    return OutcomeMatrix([f"served:{g.decision.id}" for g in graded], [g.decision.query for g in graded],
                         like.candidate_ids, like.candidates, np.clip(correct, 0.0, 1.0), lat, lat, cost,
                         source_hash=f"{like.source_hash}+served-{digest}", tasks=tasks)


def concat(a: OutcomeMatrix, b: OutcomeMatrix) -> OutcomeMatrix:
    if a.candidate_ids != b.candidate_ids:
        raise RoutingError("the served decisions were made over other candidates than the offline matrix",
                           hint="retrain on decisions made with the current frontier")
    tasks = None if a.tasks is None or b.tasks is None else [*a.tasks, *b.tasks]
    return OutcomeMatrix([*a.query_ids, *b.query_ids], [*a.texts, *b.texts], a.candidate_ids, a.candidates,
                         np.vstack([a.correct, b.correct]), np.vstack([a.latency_sequential_s, b.latency_sequential_s]),
                         np.vstack([a.latency_parallel_s, b.latency_parallel_s]), np.vstack([a.cost_usd, b.cost_usd]),
                         source_hash=b.source_hash, tasks=tasks)


def choices(policy: Policy, X: np.ndarray, graded: list[Graded], scale: Scale) -> np.ndarray:
    """The candidate ``policy`` picks for each graded decision, under that request's preference."""
    out = np.zeros(len(graded), dtype=np.int64)
    by_pref: dict[str, list[int]] = defaultdict(list)
    for i, g in enumerate(graded):
        by_pref[repr(sorted(g.decision.preference.items()))].append(i)
    for rows in by_pref.values():
        pref = Preference.model_validate({**graded[rows[0]].decision.preference, "on_infeasible": "nearest"})
        hints = [graded[i].decision.task for i in rows]
        out[rows] = np.asarray(policy.select(X[rows], pref, scale, hints=hints).index)
    return out


@dataclass
class Comparison:
    """Both comparisons of a challenger with the champion."""

    offpolicy: dict[str, Any] = field(default_factory=dict)
    offline: dict[str, Any] = field(default_factory=dict)


def compare(champion: Policy, challenger: Policy, X_held: np.ndarray, held: list[Graded], X_test: np.ndarray,
            Y_test: OutcomeMatrix, scale: Scale, lambdas: np.ndarray, execution: str, *, seed: int = 0) -> Comparison:
    log = logged(held, scale)
    a_new, a_old = choices(challenger, X_held, held, scale), choices(champion, X_held, held, scale)
    off = {"held_out_decisions": len(held),
           "challenger": {e: policy_value(log, a_new, e, seed=seed).as_json() for e in ("ips", "dr")},
           "champion": {e: policy_value(log, a_old, e, seed=seed).as_json() for e in ("ips", "dr")},
           "difference": {e: value_difference(log, a_new, a_old, e, seed=seed).as_json() for e in ("ips", "dr")},
           "logged_mean_utility": float(log.utility.mean()),
           "min_propensity": float(log.propensity.min())}
    from scipy.stats import bootstrap

    eu_new = expected_utility(challenger, X_test, Y_test, scale, lambdas, execution)  # type: ignore[arg-type]
    eu_old = expected_utility(champion, X_test, Y_test, scale, lambdas, execution)  # type: ignore[arg-type]
    diff = eu_new - eu_old
    if np.ptp(diff) > 0:
        ci = bootstrap((diff,), np.mean, n_resamples=2000, method="percentile", random_state=seed).confidence_interval
        low, high = float(ci.low), float(ci.high)
    else:
        low = high = float(diff.mean())
    offline = {"test_queries": len(diff), "challenger_eu": float(eu_new.mean()), "champion_eu": float(eu_old.mean()),
               "difference": {"value": float(diff.mean()), "low": low, "high": high}}
    return Comparison(off, offline)


def decide(comparison: Comparison) -> tuple[bool, str]:
    """The promotion rule (module docstring): (promote?, why)."""
    dr = comparison.offpolicy["difference"]["dr"]
    off = comparison.offline["difference"]
    if off["high"] < -OFFLINE_TOLERANCE:
        return False, (f"worse offline: test-split expected utility {off['value']:+.4f} "
                       f"[{off['low']:+.4f}, {off['high']:+.4f}] is below -{OFFLINE_TOLERANCE}")
    if dr["low"] <= 0:
        return False, (f"not better on recent traffic: doubly robust difference {dr['value']:+.4f} "
                       f"[{dr['low']:+.4f}, {dr['high']:+.4f}] does not exclude 0")
    return True, (f"better on recent traffic (doubly robust {dr['value']:+.4f} [{dr['low']:+.4f}, {dr['high']:+.4f}]) "
                  f"and not worse offline ({off['value']:+.4f} [{off['low']:+.4f}, {off['high']:+.4f}])")
