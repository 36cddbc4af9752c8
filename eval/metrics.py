"""Evaluation metrics over realised outcomes: pure numpy, vectorised over queries and resamples.

Conventions: per-query values have shape (..., Q) with queries on the last axis; a curve is a set
of operating points (x = latency or cost, y = accuracy). ``NaN`` marks "undefined" (a strategy
that never reaches a target accuracy, a budget no point fits under); the report layer turns it
into ``null``, so no number is ever invented.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from flowfront.compile.pareto import hypervolume
from flowfront.errors import SpecError
from flowfront.router.select import Scale, utility

__all__ = [
    "HV_REFERENCE",
    "Interval",
    "bootstrap_ci",
    "bootstrap_weights",
    "expected_utility",
    "matched_ratio",
    "monotone_hull",
    "normalised_hypervolume",
    "reach",
    "value_at_budget",
]

# Hypervolume reference point on normalised axes: accuracy 0 and a normalised latency (or cost) of
# 2, i.e. one full frontier range beyond the frontier's slowest (dearest) estimate. Measured
# operating points overshoot the proxy's range, and full-space strategies can pick configurations
# slower than any frontier one; a reference at 1 would give them no credit at all.
HV_REFERENCE = (0.0, 2.0)


@dataclass(frozen=True)
class Interval:
    """Point estimate and percentile bootstrap interval, each of the values' leading shape."""

    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray


def bootstrap_weights(n_queries: int, n_boot: int, seed: int = 0) -> np.ndarray:
    """(n_boot, n_queries) resampling weights: multinomial counts over queries divided by Q.

    ``values @ weights.T`` gives every resample's mean at once. Sharing one weight matrix across
    strategies makes the bootstrap paired: the difference of two strategies is evaluated on the
    same resampled queries, so it gets its own (narrower, correct) interval.
    """
    if n_queries < 1 or n_boot < 1:
        raise SpecError(f"bootstrap needs at least one query and one resample, got Q={n_queries}, B={n_boot}",
                        hint="evaluate on a non-empty test split with n_boot >= 1")
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n_queries, np.full(n_queries, 1.0 / n_queries), size=n_boot)
    return counts / float(n_queries)


def bootstrap_ci(values: np.ndarray, weights: np.ndarray, level: float = 0.95) -> Interval:
    """Mean over queries (last axis) with a percentile interval from the resampling ``weights``."""
    V = np.asarray(values, dtype=np.float64)
    if V.shape[-1] != weights.shape[1]:
        raise SpecError(f"values cover {V.shape[-1]} queries but the bootstrap weights {weights.shape[1]}",
                        hint="draw the weights for the same test split")
    flat = V.reshape(-1, V.shape[-1])
    resampled = flat @ weights.T  # (M, B)
    tail = 50.0 * (1.0 - level)
    low, high = np.percentile(resampled, [tail, 100.0 - tail], axis=1)
    lead = V.shape[:-1]
    return Interval(flat.mean(axis=1).reshape(lead), low.reshape(lead), high.reshape(lead))


def expected_utility(
    correct: np.ndarray, latency_s: np.ndarray, lambdas: np.ndarray, scale: Scale
) -> np.ndarray:
    """Per-query utility averaged over the λ sweep: mean_λ (correct − λ · normalised latency).

    ``correct`` and ``latency_s`` are (L, Q): the realised outcome of the candidate chosen for
    each query at each of the L lambdas. Same definition as ``router.base.expected_utility``.
    """
    lam = np.asarray(lambdas, dtype=np.float64)
    C, T = np.asarray(correct, dtype=np.float64), np.asarray(latency_s, dtype=np.float64)
    if C.shape != T.shape or C.ndim != 2 or C.shape[0] != len(lam):
        raise SpecError(
            f"correct {C.shape} and latency {T.shape} must both be (L, Q) with L = {len(lam)} lambdas",
            hint="pass one row of realised outcomes per lambda",
        )
    return utility(C, T, lam[:, None], scale).mean(axis=0)


def monotone_hull(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The non-decreasing hull of a curve: the best y reachable at cost at most x.

    Returns its vertices sorted by x, y strictly increasing: every point no other point beats
    with x no larger and y no smaller. Between vertices the hull is a step (taking a slower
    operating point never lowers what is reachable), so it is what a caller with a budget gets.
    """
    x, y = np.asarray(x, dtype=np.float64).ravel(), np.asarray(y, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise SpecError(f"curve has {x.size} x values and {y.size} y values", hint="pass one y per x")
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if x.size == 0:
        return x, y
    order = np.lexsort((-y, x))  # by x, the best y first among equal x
    xs, ys = x[order], y[order]
    best_before = np.concatenate([[-np.inf], np.maximum.accumulate(ys)[:-1]])
    vertex = ys > best_before
    return xs[vertex], ys[vertex]


def value_at_budget(hull_x: np.ndarray, hull_y: np.ndarray, budgets: np.ndarray) -> np.ndarray:
    """Best y of the hull at x <= each budget; NaN where no point fits under the budget."""
    b = np.asarray(budgets, dtype=np.float64)
    if len(hull_x) == 0:
        return np.full(b.shape, np.nan)
    pos = np.searchsorted(hull_x, b, side="right") - 1  # last vertex with x <= budget
    return np.where(pos >= 0, hull_y[np.maximum(pos, 0)], np.nan)


def reach(hull_x: np.ndarray, hull_y: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Smallest x at which the hull reaches y >= each target; NaN when it never does."""
    t = np.asarray(targets, dtype=np.float64)
    if len(hull_y) == 0:
        return np.full(t.shape, np.nan)
    pos = np.searchsorted(hull_y, t, side="left")  # hull_y increases: first vertex with y >= t
    return np.where(pos < len(hull_y), hull_x[np.minimum(pos, len(hull_y) - 1)], np.nan)


def matched_ratio(base: tuple[np.ndarray, np.ndarray], other: tuple[np.ndarray, np.ndarray],
                  targets: np.ndarray) -> np.ndarray:
    """Speed-up (or cost-down) at matched accuracy: base's x to reach each target / other's.

    Both are hulls (x, y) from :func:`monotone_hull`. A ratio > 1 means ``other`` reaches the
    target accuracy faster (cheaper). NaN where either never reaches the target, or where
    ``other`` reaches it at x = 0 (an infinite ratio is not a number to report).
    """
    xb, xo = reach(*base, targets), reach(*other, targets)
    ok = np.isfinite(xb) & np.isfinite(xo) & (xo > 0)
    return np.where(ok, xb / np.where(ok, xo, 1.0), np.nan)


def normalised_hypervolume(accuracy: np.ndarray, x_normalised: np.ndarray,
                           reference: tuple[float, float] = HV_REFERENCE) -> float:
    """Area dominated by the operating points (accuracy up, normalised x down) up to ``reference``.

    ``reference`` = (accuracy, normalised x); points not strictly better than it on both axes
    add nothing. With accuracy in [0, 1] and x normalised by the frontier's ``Scale``, the
    largest possible value is ``(1 - ref_acc) * (ref_x - min x)``.
    """
    F = np.column_stack([np.asarray(accuracy, dtype=np.float64).ravel(),
                         np.asarray(x_normalised, dtype=np.float64).ravel()])
    F = F[np.isfinite(F).all(axis=1)]
    if len(F) == 0:
        return 0.0
    return hypervolume(F, reference, (True, False))
