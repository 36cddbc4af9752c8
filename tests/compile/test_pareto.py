"""pareto_mask, StreamingFront and hypervolume against brute-force references."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowfront.compile.pareto import StreamingFront, hypervolume, pareto_mask
from flowfront.errors import CompileError


def beats(A: np.ndarray, a_index: np.ndarray, B: np.ndarray, b_index: np.ndarray) -> np.ndarray:
    """beats[i, j]: A[i] strictly dominates B[j], or equals it and comes earlier (minimised)."""
    no_worse = (A[:, None, :] <= B[None]).all(axis=2)
    better = (A[:, None, :] < B[None]).any(axis=2)
    repeat = (A[:, None, :] == B[None]).all(axis=2) & (a_index[:, None] < b_index[None, :])
    return (no_worse & better) | repeat


def brute_mask(F: np.ndarray, maximize) -> np.ndarray:
    """O(n^2) reference: drop rows strictly dominated by any row or equal to an earlier one."""
    G = np.where(np.asarray(maximize), -F, F)
    index = np.arange(len(G))
    return ~beats(G, index, G, index).any(axis=0)


def assert_mask_correct(F: np.ndarray, maximize, mask: np.ndarray) -> None:
    """brute_mask's verdict in O(n k) for k kept rows: nothing beats a kept row, and a kept
    row beats every dropped one (by transitivity a beaten row is beaten by a kept row)."""
    G = np.where(np.asarray(maximize), -F, F)
    index = np.arange(len(G))
    kept, dropped = index[mask], index[~mask]
    assert not beats(G, index, G[kept], kept).any()
    for part in np.array_split(dropped, max(1, len(dropped) // 2048)):
        assert beats(G[kept], kept, G[part], part).any(axis=0).all()


@st.composite
def objectives(draw, min_rows: int = 0, max_rows: int = 60):
    """Small integer grids, so ties and exact duplicates are common."""
    d = draw(st.sampled_from([2, 3]))
    n = draw(st.integers(min_rows, max_rows))
    levels = draw(st.integers(1, 6))
    values = draw(st.lists(st.integers(0, levels), min_size=n * d, max_size=n * d))
    maximize = tuple(draw(st.lists(st.booleans(), min_size=d, max_size=d)))
    return np.asarray(values, dtype=np.float64).reshape(n, d), maximize


@settings(max_examples=300, deadline=None)
@given(objectives())
def test_mask_matches_brute_force_with_ties(case):
    F, maximize = case
    assert np.array_equal(pareto_mask(F, maximize), brute_mask(F, maximize))


@pytest.mark.parametrize("d", [2, 3])
@pytest.mark.parametrize("decimals", [None, 1, 2])
def test_mask_matches_brute_force_above_prefilter_size(d, decimals):
    # 20000 rows is past the sampled-front prefilter threshold, so that path is exercised too.
    rng = np.random.default_rng(d * 10 + (decimals or 0))
    F = rng.random((20000, d))
    if decimals is not None:
        F = np.round(F, decimals)
    maximize = (True,) + (False,) * (d - 1)
    assert_mask_correct(F, maximize, pareto_mask(F, maximize))


def test_mask_on_a_front_where_nothing_is_dominated():
    # accuracy = latency + cost: every row trades one for another, so all 6000 survive.
    rng = np.random.default_rng(3)
    x = rng.random((6000, 2))
    F = np.column_stack([x[:, 0] + x[:, 1], x[:, 0], x[:, 1]])
    assert pareto_mask(F).all()


def test_mask_handles_infinities_and_signed_zero():
    F = np.array([[0.5, np.inf, 1.0], [0.5, np.inf, 1.0], [-0.0, 0.0, 0.0], [0.0, -0.0, 0.0],
                  [np.inf, 5.0, 5.0], [0.1, -np.inf, 2.0]])
    maximize = (True, False, False)
    assert np.array_equal(pareto_mask(F, maximize), brute_mask(F, maximize))
    big = np.tile(F, (1000, 1))  # the large path must agree too
    assert np.array_equal(
        pareto_mask(big, maximize), brute_mask(F, maximize).tolist() + [False] * (len(big) - len(F))
    )


def test_duplicates_keep_the_lowest_index():
    F = np.array([[0.9, 2.0], [0.5, 1.0], [0.9, 2.0], [0.5, 1.0], [0.1, 3.0]])
    assert pareto_mask(F).tolist() == [True, True, False, False, False]


@settings(max_examples=100, deadline=None)
@given(objectives(min_rows=1), st.randoms(use_true_random=False))
def test_permuted_input_keeps_same_values_and_first_occurrences(case, rnd):
    F, maximize = case
    perm = np.arange(len(F))
    rnd.shuffle(perm)
    kept = np.flatnonzero(pareto_mask(F[perm], maximize))
    base = F[pareto_mask(F, maximize)]
    assert sorted(map(tuple, F[perm][kept])) == sorted(map(tuple, base))
    for i in kept:  # each kept row is the first occurrence of its value in the permuted order
        first = np.flatnonzero((F[perm] == F[perm][i]).all(axis=1))[0]
        assert first == i


def test_single_objective_keeps_first_best():
    assert pareto_mask(np.array([[0.2], [0.7], [0.7]])).tolist() == [False, True, False]


def test_empty_input():
    assert pareto_mask(np.zeros((0, 3))).shape == (0,)


@pytest.mark.parametrize(
    ("F", "maximize"),
    [
        (np.array([[np.nan, 1.0]]), None),
        (np.zeros((3, 4)), None),
        (np.zeros(3), None),
        (np.zeros((3, 2)), (True,)),
    ],
)
def test_mask_rejects_bad_input(F, maximize):
    with pytest.raises(CompileError):
        pareto_mask(F, maximize)


@settings(max_examples=150, deadline=None)
@given(objectives(max_rows=80), st.lists(st.integers(1, 30), min_size=1, max_size=10))
def test_streaming_front_equals_mask_over_concatenation(case, sizes):
    F, maximize = case
    ids = np.arange(100, 100 + len(F), dtype=np.int64)
    front = StreamingFront(maximize)
    start = 0
    for size in itertools.cycle(sizes):
        if start >= len(F):
            break
        front.add(F[start:start + size], ids[start:start + size])
        start += size
    keep = pareto_mask(F, maximize)
    if len(F):
        assert np.array_equal(front.ids, ids[keep])
        assert np.array_equal(front.F, F[keep])


def test_streaming_front_large_chunks_and_read_only():
    rng = np.random.default_rng(7)
    F = np.round(rng.random((30000, 3)), 2)
    front = StreamingFront()
    for start in range(0, len(F), 7000):
        front.add(F[start:start + 7000], np.arange(start, min(start + 7000, len(F))))
    assert np.array_equal(front.ids, np.flatnonzero(pareto_mask(F)))
    assert len(front) == len(front.ids)
    with pytest.raises(ValueError):
        front.F[0, 0] = 1.0


def test_streaming_front_rejects_mismatched_chunks():
    front = StreamingFront()
    with pytest.raises(CompileError):
        front.add(np.zeros((2, 2)), np.arange(3))
    front.add(np.zeros((2, 2)), np.arange(2))
    with pytest.raises(CompileError):
        front.add(np.zeros((2, 3)), np.arange(2))


def grid_volume(G: np.ndarray, ref: np.ndarray) -> float:
    """Exact dominated volume (minimised) by coordinate compression: cut space at every
    point's coordinates, and add each grid cell whose lower corner some point dominates."""
    edges = [np.unique(np.append(G[:, k], ref[k])) for k in range(len(ref))]
    lower = np.array(list(itertools.product(*(e[:-1] for e in edges)))).reshape(-1, len(ref))
    sizes = np.array(list(itertools.product(*(np.diff(e) for e in edges)))).reshape(-1, len(ref))
    covered = np.zeros(len(lower), dtype=bool)
    for g in G:
        covered |= (lower >= g).all(axis=1)
    return float(sizes[covered].prod(axis=1).sum())


@settings(max_examples=150, deadline=None)
@given(objectives(max_rows=12))
def test_hypervolume_matches_cell_count(case):
    F, maximize = case
    ref = np.where(maximize, -1.0, 5.0)  # every point with a value inside counts
    G = np.where(np.asarray(maximize), -F, F)
    r = np.where(np.asarray(maximize), -ref, ref)
    G = G[(r > G).all(axis=1)]
    expected = grid_volume(G, r) if len(G) else 0
    assert hypervolume(F, ref, maximize) == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("d", [2, 3])
def test_hypervolume_matches_grid_on_continuous_points(d):
    rng = np.random.default_rng(d)
    for _ in range(20):
        F = rng.random((int(rng.integers(1, 30)), d))
        ref = np.array([0.1] + [0.9] * (d - 1))  # some points fall outside on some axis
        G = np.column_stack([-F[:, 0], F[:, 1:]])
        r = np.append(-ref[0], ref[1:])
        G = G[np.all(np.less(G, r), axis=1)]
        expected = grid_volume(G, r) if len(G) else 0.0
        assert hypervolume(F, ref) == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_hypervolume_simple_values_and_points_outside_ref():
    # One box 0.5 x 2 x 3 (accuracy 0.5 above ref 0, latency 1 below ref 3, cost 2 below 5).
    assert hypervolume(np.array([[0.5, 1.0, 2.0]]), [0.0, 3.0, 5.0]) == pytest.approx(3.0)
    # The second point is worse than ref on latency: it adds nothing.
    F = np.array([[0.5, 1.0, 2.0], [0.9, 4.0, 0.0]])
    assert hypervolume(F, [0.0, 3.0, 5.0]) == pytest.approx(3.0)
    # Two 2-D boxes overlapping: union is 0.5*2 + 0.3*1 = 1.3.
    assert hypervolume(np.array([[0.5, 1.0], [0.8, 2.0]]), [0.0, 3.0]) == pytest.approx(0.5 * 2 + 0.3 * 1)
    assert hypervolume(np.array([[0.5, 4.0]]), [0.0, 3.0]) == 0.0


def test_hypervolume_rejects_bad_reference():
    with pytest.raises(CompileError):
        hypervolume(np.zeros((2, 2)), [0.0, 1.0, 2.0])
    with pytest.raises(CompileError):
        hypervolume(np.zeros((2, 2)), [0.0, np.inf])
