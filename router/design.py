"""Choosing the LightGBM router's success design by cross-validated routing utility.

The designs are the group prior alone (``prior``), one booster over query x candidate rows
(``conditioned``) and one booster per candidate (``per-candidate``), simplest first. Each is
fitted ``folds`` times, every time on all train queries but one fold and scored on that fold by
the utility its choices realise over the lambda sweep, so every train query is scored once by a
fit that never saw it: the query map, the priors, the early-stopping fold and the boosters are
all learned without it. A single valid fold both early-stopped the boosters and scored them,
which favoured boosting over the prior it starts from; a fold of 20% was also noisy enough to
pick designs that differed in the third decimal.

The simplest design whose mean utility is within one standard error (of the paired per-query
differences) of the best is kept (the one-standard-error rule): boosting must earn its place
against its own prior by more than the noise of the comparison.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from flowfront.router.base import OutcomeMatrix, expected_utility
from flowfront.router.select import Scale, lambda_sweep
from flowfront.spec import Execution

__all__ = ["SIMPLEST_FIRST", "choose_design"]

SIMPLEST_FIRST = ("prior", "conditioned", "per-candidate")


def choose_design(
    router: Any,
    X: np.ndarray,
    Y: OutcomeMatrix,
    designs: list[str],
    candidate_features: np.ndarray | None,
    groups: np.ndarray | None,
) -> tuple[str, dict[str, Any]]:
    """The design to fit, and the cross-validation record (per design: mean utility, SE of its
    difference to the best). ``router`` is the unfitted ``LightGBMRouter`` whose parameters the
    fold fits copy (this module sits below it: it takes the class from the instance)."""
    n = len(X)
    folds = np.array_split(np.random.default_rng(router.seed + 4).permutation(n), router.design_folds)
    per_query = {d: np.empty(n) for d in designs}
    for held in folds:
        rest = np.setdiff1d(np.arange(n), held)
        sub = Y.rows(rest)
        scale, lambdas = _sweep(sub, router.execution)
        for design in designs:
            # Without latency/cost regressors: every design then selects on the same latency and
            # cost estimates (the priors), so the comparison is of success designs alone, and faster.
            clone = type(router)(
                **{
                    **router.get_params(),
                    "design": design,
                    "design_folds": 0,
                    "ood_fallback": False,
                    "variation_threshold": float("inf"),
                }
            )
            clone.fit(X[rest], sub, candidate_features, None if groups is None else groups[rest])
            per_query[design][held] = expected_utility(
                clone, X[held], Y.rows(held), scale, lambdas, router.execution
            )
    means = {d: float(v.mean()) for d, v in per_query.items()}
    best = max(means, key=means.__getitem__)
    se = {
        d: float(np.std(per_query[best] - per_query[d], ddof=1) / np.sqrt(n)) if n > 1 else 0.0
        for d in designs
    }
    chosen = next(d for d in SIMPLEST_FIRST if d in means and means[best] - means[d] <= se[d])
    return chosen, {
        "cv_folds": router.design_folds,
        "cv_utility": means,
        "cv_best": best,
        "cv_se_of_gap_to_best": se,
        "rule": "simplest design within one standard error of the best",
    }


def _sweep(Y: OutcomeMatrix, execution: Execution) -> tuple[Scale, np.ndarray]:
    means = (Y.correct.mean(axis=0), Y.latency(execution).mean(axis=0), Y.cost_usd.mean(axis=0))
    scale = Scale.from_estimates(means[1], means[2])
    return scale, lambda_sweep(scale, *means)
