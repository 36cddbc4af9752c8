"""eval.metrics on synthetic arrays whose answers are computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from flowfront.errors import SpecError
from flowfront.eval.metrics import (
    HV_REFERENCE,
    bootstrap_ci,
    bootstrap_weights,
    expected_utility,
    matched_ratio,
    monotone_hull,
    normalised_hypervolume,
    reach,
    value_at_budget,
)
from flowfront.router.base import OutcomeMatrix
from flowfront.router.baselines import StaticRouter
from flowfront.router.select import Preference, Scale
from flowfront.router.train import expected_utility as router_expected_utility


def test_bootstrap_weights_are_resampling_counts() -> None:
    W = bootstrap_weights(7, 50, seed=3)
    assert W.shape == (50, 7)
    np.testing.assert_allclose(W.sum(axis=1), 1.0)
    np.testing.assert_allclose(W * 7, np.round(W * 7))  # whole numbers of draws per query
    np.testing.assert_array_equal(W, bootstrap_weights(7, 50, seed=3))
    assert not np.array_equal(W, bootstrap_weights(7, 50, seed=4))
    with pytest.raises(SpecError, match="at least one query"):
        bootstrap_weights(0, 10)


def test_bootstrap_interval_matches_normal_theory() -> None:
    values = np.tile([0.0, 1.0], 200)  # p = 0.5 over 400 queries: standard error 0.025
    iv = bootstrap_ci(values, bootstrap_weights(400, 2000, seed=0))
    assert iv.mean == pytest.approx(0.5)
    assert iv.low < 0.5 < iv.high
    assert 0.040 < 0.5 * (iv.high - iv.low) < 0.060  # ≈ 1.96 × 0.025 = 0.049
    const = bootstrap_ci(np.full(30, 0.3), bootstrap_weights(30, 100))
    assert const.low == pytest.approx(0.3) and const.high == pytest.approx(0.3)


def test_paired_bootstrap_gives_differences_their_own_interval() -> None:
    rng = np.random.default_rng(0)
    a = rng.random(300)
    b = a + 0.03  # b beats a by exactly 0.03 on every query
    W = bootstrap_weights(300, 500)
    both = bootstrap_ci(np.stack([a, b]), W)
    assert both.high[0] > both.low[1]  # the separate intervals overlap ...
    diff = bootstrap_ci(b - a, W)
    assert diff.low == pytest.approx(0.03) and diff.high == pytest.approx(0.03)  # ... the paired one does not
    with pytest.raises(SpecError, match="same test split"):
        bootstrap_ci(a[:10], W)


def test_monotone_hull_keeps_the_best_reachable_accuracy() -> None:
    x = np.array([3.0, 1.0, 2.0, 2.0, 4.0, np.nan])
    y = np.array([0.5, 0.2, 0.4, 0.6, 0.55, 0.9])
    hx, hy = monotone_hull(x, y)
    np.testing.assert_array_equal(hx, [1.0, 2.0])
    np.testing.assert_array_equal(hy, [0.2, 0.6])
    hx, hy = monotone_hull([], [])
    assert hx.size == 0 and np.isnan(value_at_budget(hx, hy, [1.0])).all()


def test_budget_and_reach_lookups() -> None:
    hull = (np.array([1.0, 2.0, 4.0]), np.array([0.2, 0.6, 0.8]))
    np.testing.assert_array_equal(
        value_at_budget(*hull, [0.5, 1.0, 1.5, 2.0, 10.0]), [np.nan, 0.2, 0.2, 0.6, 0.8]
    )
    np.testing.assert_array_equal(reach(*hull, [0.1, 0.2, 0.3, 0.8, 0.81]), [1.0, 1.0, 2.0, 4.0, np.nan])


def test_speedup_at_matched_accuracy_is_null_when_never_reached() -> None:
    base = (np.array([2.0, 4.0]), np.array([0.5, 0.8]))
    other = (np.array([1.0, 3.0]), np.array([0.5, 0.7]))
    ratio = matched_ratio(base, other, base[1])
    assert ratio[0] == pytest.approx(2.0)  # 0.5 reached at 1 s instead of 2 s
    assert np.isnan(ratio[1])  # other never reaches 0.8: no number is invented
    free = (np.array([0.0]), np.array([0.9]))  # reached at zero cost: an infinite ratio is not reported
    assert np.isnan(matched_ratio(base, free, [0.5])).all()


def test_hypervolume_on_normalised_axes() -> None:
    acc = np.array([0.5, 1.0, 0.9])
    x = np.array([0.5, 1.5, 2.5])  # the last point lies beyond the reference and adds nothing
    # staircase to x = 2: width 1 at accuracy 0.5, then width 0.5 at accuracy 1.0
    assert normalised_hypervolume(acc, x, HV_REFERENCE) == pytest.approx(1.0 * 0.5 + 0.5 * 1.0)
    assert normalised_hypervolume(acc[:1], x[:1], (0.0, 1.0)) == pytest.approx(0.25)
    assert normalised_hypervolume([], [], HV_REFERENCE) == 0.0


def test_expected_utility_by_hand_and_as_the_router_defines_it() -> None:
    scale = Scale(latency_min=1.0, latency_max=3.0, cost_min=0.0, cost_max=1.0)
    correct = np.array([[1.0, 0.0], [1.0, 1.0]])
    latency = np.array([[1.0, 1.0], [3.0, 3.0]])  # normalised: 0 then 1
    np.testing.assert_allclose(expected_utility(correct, latency, np.array([0.0, 0.5]), scale), [0.75, 0.25])
    with pytest.raises(SpecError, match="one row of realised outcomes per lambda"):
        expected_utility(correct, latency, np.array([0.0]), scale)
    # Same number as router.train.expected_utility for a real router's choices.
    rng = np.random.default_rng(1)
    q, k = 40, 3
    lat = rng.uniform(1, 3, (q, k))
    Y = OutcomeMatrix([f"q{i}" for i in range(q)], ["t"] * q, ["a", "b", "c"], [{}, {}, {}],
                      (rng.random((q, k)) < 0.6).astype(float), lat, lat, rng.uniform(0, 1, (q, k)), "h")
    X = rng.normal(size=(q, 4))
    router = StaticRouter().fit(X, Y)
    lambdas = np.array([0.0, 0.3, 1.0, 3.0])
    rows = np.arange(q)
    picks = [np.asarray(router.select(X, Preference(lambda_=float(v)), scale).index) for v in lambdas]
    mine = expected_utility(
        np.stack([Y.correct[rows, p] for p in picks]), np.stack([lat[rows, p] for p in picks]), lambdas, scale
    )
    np.testing.assert_allclose(mine, router_expected_utility(router, X, Y, scale, lambdas))


def test_the_shared_weight_bootstrap_agrees_with_scipy() -> None:
    """bootstrap_ci keeps one resampling matrix for every strategy and metric (the pairing, and one
    matrix product instead of a resampling per comparison); its percentile interval must be
    scipy.stats.bootstrap's, up to Monte Carlo error."""
    from scipy.stats import bootstrap

    rng = np.random.default_rng(11)
    values = (rng.random(400) < 0.62).astype(float)
    ours = bootstrap_ci(values, bootstrap_weights(400, 4000, seed=1))
    theirs = bootstrap(
        (values,), np.mean, n_resamples=4000, method="percentile", random_state=2,
    ).confidence_interval
    assert abs(float(ours.low) - theirs.low) < 0.01 and abs(float(ours.high) - theirs.high) < 0.01
    # paired: a difference of two strategies on the same resamples, against scipy's paired mode
    other = np.clip(values + (rng.random(400) < 0.1), 0, 1)
    diff = bootstrap_ci(other - values, bootstrap_weights(400, 4000, seed=1))
    paired = bootstrap((other, values), lambda a, b: np.mean(a - b), paired=True, n_resamples=4000,
                       method="percentile", random_state=2).confidence_interval
    assert abs(float(diff.low) - paired.low) < 0.01 and abs(float(diff.high) - paired.high) < 0.01
