"""Selection on a frontier: preference validation, the ranking and tie rules, hard limits,
infeasible handling, (Q, K) vectorisation and the lambda sweep, checked against a plain
Python reference."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from flowfront.errors import InfeasibleError, RoutingError
from flowfront.router.select import Preference, Scale, lambda_sweep, select

LAMBDAS = [0.0, 0.05, 0.1, 0.3, 1.0, 3.0, 10.0, 1e6]


def make_pref(**kwargs) -> Preference:
    return Preference.model_validate(kwargs)


def reference(acc, lat, cost, pref: Preference, scale: Scale) -> tuple[int | None, bool]:
    """The documented rules, one candidate at a time; (None, False) means "raise". Ties: cost, latency,
    then accuracy (higher first), then index."""
    axis = lat if pref.objective == "latency" else cost
    norm = scale.normalise(axis, pref.objective)

    def score(i: int) -> float:
        if pref.lambda_ is not None:
            return acc[i] - pref.lambda_ * norm[i]
        if pref.max_latency_s is not None or pref.max_cost_usd is not None:
            return acc[i]
        return -axis[i]

    def violation(i: int) -> float:
        v = 0.0
        if pref.max_latency_s is not None:
            v += max(lat[i] - pref.max_latency_s, 0.0) / pref.max_latency_s
        if pref.max_cost_usd is not None:
            v += max(cost[i] - pref.max_cost_usd, 0.0) / pref.max_cost_usd
        if pref.min_accuracy:
            v += max(pref.min_accuracy - acc[i], 0.0) / pref.min_accuracy
        return v

    def meets(i: int) -> bool:
        return (
            (pref.max_latency_s is None or lat[i] <= pref.max_latency_s)
            and (pref.max_cost_usd is None or cost[i] <= pref.max_cost_usd)
            and (not pref.min_accuracy or acc[i] >= pref.min_accuracy)
        )

    feasible = [i for i in range(len(acc)) if meets(i)]
    if feasible:
        return min(feasible, key=lambda i: (-score(i), cost[i], lat[i], -acc[i], i)), True
    if pref.on_infeasible == "error":
        return None, False
    return min(range(len(acc)), key=lambda i: (violation(i), -score(i), cost[i], lat[i], -acc[i], i)), False


@st.composite
def frontiers(draw, max_k: int = 8, k: int | None = None):
    """Small value grids, so ties in every column are common."""
    k = draw(st.integers(1, max_k)) if k is None else k
    acc = draw(st.lists(st.sampled_from([0.2, 0.5, 0.6, 0.7, 0.8, 0.9]), min_size=k, max_size=k))
    lat = draw(st.lists(st.sampled_from([0.5, 1.0, 1.5, 2.0, 4.0]), min_size=k, max_size=k))
    cost = draw(st.lists(st.sampled_from([0.001, 0.002, 0.005, 0.01]), min_size=k, max_size=k))
    return np.array(acc), np.array(lat), np.array(cost)


@st.composite
def preferences(draw):
    fields = {
        "lambda": draw(st.none() | st.sampled_from(LAMBDAS)),
        "max_latency_s": draw(st.none() | st.sampled_from([0.4, 1.0, 1.5, 3.0])),
        "max_cost_usd": draw(st.none() | st.sampled_from([0.0005, 0.002, 0.006])),
        "min_accuracy": draw(st.none() | st.sampled_from([0.0, 0.5, 0.75, 0.95])),
        "objective": draw(st.sampled_from(["latency", "cost"])),
        "on_infeasible": draw(st.sampled_from(["error", "nearest"])),
    }
    return make_pref(**fields)


def chosen(acc, lat, cost, pref, scale=None) -> int:
    scale = scale or Scale.from_estimates(lat, cost)
    return int(select(acc, lat, cost, pref, scale).index)


# --- Preference ----------------------------------------------------------------------------


def test_empty_preference_means_most_accurate():
    assert make_pref().lambda_ == 0.0
    assert make_pref(objective="cost").lambda_ == 0.0
    assert make_pref(max_latency_s=2.0).lambda_ is None
    assert make_pref(**{"lambda": 0.4}).lambda_ == Preference(lambda_=0.4).lambda_ == 0.4


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"lambda": -0.1}, "lambda"),
        ({"max_latency_s": 0.0}, "max_latency_s"),
        ({"max_cost_usd": -1.0}, "max_cost_usd"),
        ({"min_accuracy": 1.5}, "min_accuracy"),
        ({"min_accuracy": float("nan")}, "min_accuracy"),
        ({"max_latency_s": float("inf")}, "max_latency_s"),
        ({"objective": "tokens"}, "objective"),
        ({"on_infeasible": "ignore"}, "on_infeasible"),
        ({"max_tokens": 3}, "max_tokens"),
    ],
)
def test_invalid_preference_names_the_field(payload, field):
    with pytest.raises(ValidationError) as info:
        make_pref(**payload)
    assert [e["loc"] for e in info.value.errors()] == [(field,)]


def test_preference_is_frozen():
    pref = make_pref(max_cost_usd=0.01)
    with pytest.raises(ValidationError):
        pref.max_cost_usd = 1.0  # type: ignore[misc]


# --- Scale ---------------------------------------------------------------------------------


def test_scale_maps_the_frontier_onto_unit_interval():
    lat, cost = np.array([2.0, 0.5, 4.0]), np.array([0.003, 0.001, 0.002])
    scale = Scale.from_estimates(lat, cost)
    assert np.allclose(scale.normalise_latency(lat), [1.5 / 3.5, 0.0, 1.0])
    assert np.allclose(scale.normalise_cost(cost), [1.0, 0.0, 0.5])
    flat = Scale.from_estimates(np.full(3, 2.0), np.zeros(3))
    assert np.array_equal(flat.normalise_latency(np.full(3, 2.0)), np.zeros(3))
    assert np.array_equal(flat.normalise_cost(np.zeros(3)), np.zeros(3))
    assert np.isfinite(flat.normalise_latency(np.array([1.0, 3.0]))).all()


def test_bad_estimates_raise_routing_error():
    with pytest.raises(RoutingError, match="latency"):
        Scale.from_estimates(np.array([1.0, np.nan]), np.array([0.1, 0.2]))
    with pytest.raises(RoutingError, match="empty"):
        Scale.from_estimates(np.array([]), np.array([]))
    scale = Scale(0.0, 1.0, 0.0, 1.0)
    with pytest.raises(RoutingError, match="incompatible shapes"):
        select(np.ones(3), np.ones(4), np.ones(3), make_pref(), scale)
    with pytest.raises(RoutingError, match="accuracy"):
        select(np.array([0.5, np.nan]), np.ones(2), np.ones(2), make_pref(), scale)
    with pytest.raises(RoutingError, match="K >= 1"):
        select(np.ones((2, 0)), np.ones((2, 0)), np.ones((2, 0)), make_pref(), scale)


# --- ranking -------------------------------------------------------------------------------


def test_lambda_zero_picks_most_accurate_and_cheaper_on_ties():
    acc = np.array([0.9, 0.7, 0.9, 0.9])
    lat = np.array([1.0, 0.5, 3.0, 2.0])
    cost = np.array([0.01, 0.001, 0.004, 0.004])
    # 2 and 3 tie on accuracy and cost; 3 is faster.
    assert chosen(acc, lat, cost, make_pref(**{"lambda": 0.0})) == 3
    assert chosen(acc, lat, cost, make_pref()) == 3


@pytest.mark.parametrize("objective", ["latency", "cost"])
@settings(max_examples=100, deadline=None)
@given(frontier=frontiers())
def test_huge_lambda_picks_fastest_or_cheapest(objective, frontier):
    acc, lat, cost = frontier
    axis = lat if objective == "latency" else cost
    i = chosen(acc, lat, cost, make_pref(**{"lambda": 1e6, "objective": objective}))
    assert axis[i] == axis.min()
    assert acc[i] == acc[axis == axis.min()].max()


@pytest.mark.parametrize("objective", ["latency", "cost"])
@settings(max_examples=100, deadline=None)
@given(frontier=frontiers())
def test_growing_lambda_never_raises_objective_or_accuracy(objective, frontier):
    acc, lat, cost = frontier
    axis = lat if objective == "latency" else cost
    picks = [chosen(acc, lat, cost, make_pref(**{"lambda": lam, "objective": objective})) for lam in LAMBDAS]
    assert np.all(np.diff(axis[picks]) <= 0)
    assert np.all(np.diff(acc[picks]) <= 0)


@settings(max_examples=300, deadline=None)
@given(frontier=frontiers(), pref=preferences())
def test_select_matches_reference_rules(frontier, pref):
    acc, lat, cost = frontier
    scale = Scale.from_estimates(lat, cost)
    expected, ok = reference(acc, lat, cost, pref, scale)
    if expected is None:
        with pytest.raises(InfeasibleError):
            select(acc, lat, cost, pref, scale)
        return
    result = select(acc, lat, cost, pref, scale)
    assert (int(result.index), bool(result.feasible)) == (expected, ok)
    assert result.index.shape == ()
    assert (result.violation == 0.0) == ok


@settings(max_examples=120, deadline=None)
@given(frontier=frontiers(), pref=preferences())
def test_hard_limits_are_respected(frontier, pref):
    acc, lat, cost = frontier
    pref = pref.model_copy(update={"on_infeasible": "nearest"})
    result = select(acc, lat, cost, pref, Scale.from_estimates(lat, cost))
    i = int(result.index)
    meets = np.ones(len(acc), dtype=bool)
    if pref.max_latency_s is not None:
        meets &= lat <= pref.max_latency_s
    if pref.max_cost_usd is not None:
        meets &= cost <= pref.max_cost_usd
    if pref.min_accuracy is not None:
        meets &= acc >= pref.min_accuracy
    assert bool(result.feasible) == bool(np.any(meets))
    if result.feasible:
        assert meets[i]
        if pref.lambda_ is None and (pref.max_latency_s or pref.max_cost_usd):
            assert acc[i] == acc[meets].max()


def test_only_min_accuracy_picks_cheapest_on_objective_axis():
    acc = np.array([0.95, 0.85, 0.8, 0.6])
    lat = np.array([3.0, 1.0, 2.0, 0.5])
    cost = np.array([0.01, 0.006, 0.002, 0.001])
    assert chosen(acc, lat, cost, make_pref(min_accuracy=0.8)) == 1
    assert chosen(acc, lat, cost, make_pref(min_accuracy=0.8, objective="cost")) == 2
    # With a cap, the most accurate candidate under it; with lambda, lambda ranks instead.
    assert chosen(acc, lat, cost, make_pref(max_latency_s=2.5)) == 1
    assert chosen(acc, lat, cost, make_pref(max_latency_s=2.5, **{"lambda": 3.0})) == 3


# --- infeasible ----------------------------------------------------------------------------


def test_infeasible_error_names_limit_and_nearest():
    acc = np.array([0.9, 0.6, 0.5])
    lat = np.array([4.0, 1.0, 0.8])
    cost = np.array([0.01, 0.002, 0.003])
    with pytest.raises(InfeasibleError) as info:
        select(acc, lat, cost, make_pref(max_latency_s=0.5), Scale.from_estimates(lat, cost))
    err = info.value
    assert "max_latency_s=0.5" in err.message and "fastest candidate: 0.8" in err.message
    assert err.nearest == {
        "index": 2,
        "accuracy": 0.5,
        "latency_s": 0.8,
        "cost_usd": 0.003,
        "violation": pytest.approx(0.6),
    }
    assert "on_infeasible='nearest'" in err.hint


def test_nearest_mode_takes_least_relative_excess():
    acc = np.array([0.9, 0.6, 0.5])
    lat = np.array([4.0, 1.0, 0.8])
    cost = np.array([0.01, 0.002, 0.003])
    pref = make_pref(max_latency_s=0.5, max_cost_usd=0.0015, on_infeasible="nearest")
    # Excess: candidate 1 = 1.0 + 1/3, candidate 2 = 0.6 + 1.0; candidate 1 is nearer.
    result = select(acc, lat, cost, pref, Scale.from_estimates(lat, cost))
    assert int(result.index) == 1 and not result.feasible
    assert result.violation == pytest.approx(4 / 3)


def test_batch_error_counts_infeasible_queries():
    lat, cost = np.array([1.0, 2.0]), np.array([0.001, 0.002])
    acc = np.array([[0.9, 0.95], [0.5, 0.6], [0.4, 0.7]])
    with pytest.raises(InfeasibleError, match="2 of 3 queries") as info:
        select(acc, lat, cost, make_pref(min_accuracy=0.8), Scale.from_estimates(lat, cost))
    assert info.value.nearest["row"] == 1 and info.value.nearest["n_infeasible"] == 2
    assert info.value.nearest["index"] == 1


# --- vectorisation and determinism ---------------------------------------------------------


@settings(max_examples=120, deadline=None)
@given(
    rows=st.integers(1, 6).flatmap(lambda k: st.lists(frontiers(k=k), min_size=1, max_size=6)),
    pref=preferences(),
)
def test_batch_equals_row_by_row(rows, pref):
    pref = pref.model_copy(update={"on_infeasible": "nearest"})
    acc, lat, cost = (np.stack([r[j] for r in rows]) for j in range(3))
    scale = Scale.from_estimates(lat, cost)
    batch = select(acc, lat, cost, pref, scale)
    single = [select(acc[q], lat[q], cost[q], pref, scale) for q in range(len(rows))]
    assert batch.index.shape == (len(rows),)
    assert batch.index.tolist() == [int(s.index) for s in single]
    assert batch.feasible.tolist() == [bool(s.feasible) for s in single]
    assert batch.violation.tolist() == [float(s.violation) for s in single]
    # Per-query accuracy against the frontier's static latency/cost broadcasts the same way.
    static = select(acc, lat[0], cost[0], pref, scale)
    assert static.index.tolist() == [int(select(a, lat[0], cost[0], pref, scale).index) for a in acc]


@settings(max_examples=100, deadline=None)
@given(frontier=frontiers(), pref=preferences(), seed=st.integers(0, 2**16))
def test_ties_resolve_to_the_same_estimates_in_any_order(frontier, pref, seed):
    acc, lat, cost = frontier
    pref = pref.model_copy(update={"on_infeasible": "nearest"})
    perm = np.random.default_rng(seed).permutation(len(acc))
    scale = Scale.from_estimates(lat, cost)
    i = int(select(acc, lat, cost, pref, scale).index)
    j = int(select(acc[perm], lat[perm], cost[perm], pref, scale).index)
    assert (acc[i], lat[i], cost[i]) == (acc[perm][j], lat[perm][j], cost[perm][j])


def test_exact_duplicates_resolve_to_lowest_index():
    acc, lat, cost = np.full(4, 0.8), np.full(4, 1.0), np.full(4, 0.002)
    for lam in LAMBDAS:
        assert chosen(acc, lat, cost, make_pref(**{"lambda": lam})) == 0


# --- lambda sweep --------------------------------------------------------------------------


def sweep_picks(acc, lat, cost, objective, n):
    scale = Scale.from_estimates(lat, cost)
    lams = lambda_sweep(scale, acc, lat, cost, n=n, objective=objective)
    prefs = [make_pref(**{"lambda": lam, "objective": objective}) for lam in lams]
    picks = np.array([int(select(acc, lat, cost, pref, scale).index) for pref in prefs])
    return lams, picks


@pytest.mark.parametrize("objective", ["latency", "cost"])
@settings(max_examples=100, deadline=None)
@given(frontier=frontiers(), n=st.integers(2, 12))
def test_sweep_is_increasing_monotone_and_spans_both_ends(objective, frontier, n):
    acc, lat, cost = frontier
    axis = lat if objective == "latency" else cost
    lams, picks = sweep_picks(acc, lat, cost, objective, n)
    assert lams.shape == (n,) and lams[0] == 0.0 and np.all(np.diff(lams) > 0)
    assert acc[picks[0]] == acc.max()
    assert axis[picks[-1]] == axis.min()
    assert np.all(np.diff(axis[picks]) <= 0) and np.all(np.diff(acc[picks]) <= 0)


@pytest.mark.parametrize("n", [3, 6, 9, 14])
def test_sweep_visits_every_hull_vertex_it_can(n):
    # A strictly concave frontier: every candidate wins for some lambda.
    x = np.linspace(0.0, 1.0, 9)
    acc, lat = 1.0 - (1.0 - x) ** 2, 0.5 + 3.0 * x
    cost = np.full(9, 0.002)
    lams, picks = sweep_picks(acc, lat, cost, "latency", n)
    assert len(set(picks.tolist())) == min(n, 9)
    assert picks[0] == 8 and picks[-1] == 0


def test_sweep_separates_accuracy_ties_broken_by_cost():
    # Candidates 0 and 1 tie on accuracy: lambda = 0 takes the cheaper (slower) 1, any small
    # positive lambda the faster 0; the sweep must show both.
    acc = np.array([0.9, 0.9, 0.6])
    lat = np.array([2.0, 3.0, 0.5])
    cost = np.array([0.01, 0.005, 0.001])
    _, picks = sweep_picks(acc, lat, cost, "latency", 3)
    assert picks.tolist() == [1, 0, 2]


def test_sweep_of_a_single_winner_and_bad_n():
    acc, lat, cost = np.array([0.9, 0.5]), np.array([1.0, 2.0]), np.array([0.001, 0.002])
    scale = Scale.from_estimates(lat, cost)
    lams = lambda_sweep(scale, acc, lat, cost, n=5)
    assert lams[0] == 0.0 and np.all(np.diff(lams) > 0)
    with pytest.raises(RoutingError, match="n >= 2"):
        lambda_sweep(scale, acc, lat, cost, n=1)
    with pytest.raises(RoutingError, match=r"shape \(K,\)"):
        lambda_sweep(scale, np.ones((2, 2)), lat, cost)
