"""Off-policy value of a routing policy from logged decisions: inverse propensity and doubly robust.

Each logged decision i has the query's features, the candidate served ``a_i`` with the probability
it was chosen with ``p_i`` (the decision log's propensity), and a realised utility ``u_i`` (the
grade minus lambda times normalised latency, under the request's own preference). A target policy
``pi`` picks ``pi(x_i)`` under the same preference. Then

* IPS: mean_i  1[pi(x_i) = a_i] / p_i * u_i
* DR:  mean_i  q(x_i, pi(x_i)) + 1[pi(x_i) = a_i] / p_i * (u_i - q(x_i, a_i))

with ``q`` the direct model, per-candidate utility estimates the caller supplies (retrain uses a
challenger's estimates fitted without these decisions; the decision log also holds the logging
router's own). Intervals are ``scipy.stats.bootstrap`` percentile intervals over decisions; the
difference of two policies is bootstrapped paired, on the same resamples.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import bootstrap

__all__ = ["Logged", "PolicyValue", "dr_terms", "ips_terms", "policy_value", "value_difference"]


@dataclass(frozen=True)
class Logged:
    """Logged bandit feedback, one row per graded decision."""

    action: np.ndarray  # (N,) index of the candidate served
    propensity: np.ndarray  # (N,) probability it was chosen with, in (0, 1]
    utility: np.ndarray  # (N,) realised utility of the served candidate
    direct: np.ndarray  # (N, K) the direct model's utility estimate for every candidate

    def __post_init__(self) -> None:
        n = len(self.action)
        if not (len(self.propensity) == len(self.utility) == len(self.direct) == n) or n == 0:
            raise ValueError("logged arrays must share a non-zero length")
        if (self.propensity <= 0).any() or (self.propensity > 1).any():
            raise ValueError("propensities must lie in (0, 1]")


@dataclass(frozen=True)
class PolicyValue:
    estimator: str
    value: float
    low: float
    high: float
    n: int
    matched: int  # decisions where the policy picks what was served

    def as_json(self) -> dict[str, float | int | str]:
        return {
            "estimator": self.estimator,
            "value": self.value,
            "low": self.low,
            "high": self.high,
            "n": self.n,
            "matched": self.matched,
        }


def ips_terms(log: Logged, chosen: np.ndarray) -> np.ndarray:
    return np.where(chosen == log.action, log.utility / log.propensity, 0.0)


def dr_terms(log: Logged, chosen: np.ndarray) -> np.ndarray:
    rows = np.arange(len(chosen))
    correction = np.where(
        chosen == log.action, (log.utility - log.direct[rows, log.action]) / log.propensity, 0.0
    )
    return log.direct[rows, chosen] + correction


_TERMS = {"ips": ips_terms, "dr": dr_terms}


def _interval(terms: np.ndarray, seed: int, n_resamples: int,
              groups: np.ndarray | None = None) -> tuple[float, float]:
    if len(terms) < 2 or np.ptp(terms) == 0:
        return float(terms.mean()), float(terms.mean())
    if groups is None:
        res = bootstrap((terms,), np.mean, n_resamples=n_resamples, method="percentile", random_state=seed)
    else:  # resample whole clusters: the mean is their summed terms over their summed sizes
        _, cluster = np.unique(groups, return_inverse=True)
        sums, sizes = np.bincount(cluster, weights=terms), np.bincount(cluster).astype(float)
        if len(sums) < 2:
            return float(terms.mean()), float(terms.mean())
        res = bootstrap((sums, sizes), lambda s, n, axis=-1: s.sum(axis=axis) / n.sum(axis=axis), paired=True,
                        vectorized=True, n_resamples=n_resamples, method="percentile", random_state=seed)
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def policy_value(log: Logged, chosen: np.ndarray, estimator: str = "dr", *, seed: int = 0,
                 n_resamples: int = 2000, groups: np.ndarray | None = None) -> PolicyValue:
    """The estimated mean utility of a policy that picks ``chosen`` (N,) on the logged queries."""
    terms = _TERMS[estimator](log, np.asarray(chosen))
    low, high = _interval(terms, seed, n_resamples, groups)
    return PolicyValue(estimator, float(terms.mean()), low, high, len(terms),
                       int(np.count_nonzero(np.asarray(chosen) == log.action)))


def value_difference(log: Logged, chosen_a: np.ndarray, chosen_b: np.ndarray, estimator: str = "dr", *,
                     seed: int = 0, n_resamples: int = 2000, groups: np.ndarray | None = None) -> PolicyValue:
    """Value of policy A minus policy B, paired per decision."""
    terms = _TERMS[estimator](log, np.asarray(chosen_a)) - _TERMS[estimator](log, np.asarray(chosen_b))
    low, high = _interval(terms, seed, n_resamples, groups)
    return PolicyValue(f"{estimator} difference", float(terms.mean()), low, high, len(terms),
                       int(np.count_nonzero(np.asarray(chosen_a) == np.asarray(chosen_b))))
