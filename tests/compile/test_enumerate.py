"""Mixed-radix codes, exhaustive enumeration, exact composition and NSGA-II."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.compile_search import naive_front, sequential_evaluate, synthetic_slots
from flowfront.compile.enumeration import (
    FrontTable,
    combine,
    compose_front,
    decode,
    encode,
    enumerate_front,
    nsga2_front,
    prune_dominated_choices,
    space_size,
)
from flowfront.compile.pareto import pareto_mask
from flowfront.errors import CompileError

radices_st = st.lists(st.integers(1, 9), min_size=1, max_size=6)


@settings(max_examples=200, deadline=None)
@given(radices_st, st.data())
def test_encode_decode_round_trip(radices, data):
    size = space_size(radices)
    codes = np.asarray(data.draw(st.lists(st.integers(0, size - 1), min_size=1, max_size=20)))
    choices = decode(codes, radices)
    assert choices.shape == (len(codes), len(radices))
    assert ((choices >= 0) & (choices < np.asarray(radices))).all()
    assert np.array_equal(encode(choices, radices), codes)


def test_code_order_is_lexicographic_order():
    radices = [3, 1, 4, 2]
    expected = np.array(list(itertools.product(*(range(r) for r in radices))))
    assert np.array_equal(decode(np.arange(space_size(radices)), radices), expected)


def test_huge_spaces_are_detected():
    last = decode(np.array([2**63 - 1]), [2] * 63)  # exactly 2**63 configurations still fit
    assert last.tolist() == [[1] * 63]
    assert space_size([10] * 30) == 10**30
    with pytest.raises(CompileError, match="2\\*\\*63"):
        decode(np.array([0]), [2] * 64)
    with pytest.raises(CompileError):
        enumerate_front(lambda c: np.zeros((len(c), 2)), [1000] * 7)


@pytest.mark.parametrize(
    "call",
    [
        lambda: decode(np.array([0]), [3, 0]),
        lambda: decode(np.array([6]), [2, 3]),
        lambda: decode(np.array([-1]), [2, 3]),
        lambda: encode(np.array([[0, 3]]), [2, 3]),
        lambda: encode(np.array([[0, 1, 0]]), [2, 3]),
    ],
)
def test_bad_codes_and_choices_raise(call):
    with pytest.raises(CompileError):
        call()


def table_evaluate(tables, ops=("prod", "sum", "sum")):
    """evaluate() of a chain of per-slot tables."""

    def evaluate(choices):
        F = tables[0][choices[:, 0]]
        for k in range(1, len(tables)):
            F = combine(F, tables[k][choices[:, k]], ops[: F.shape[1]])
        return F

    return evaluate


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 5), min_size=1, max_size=4), st.integers(1, 40), st.integers(0, 2**16))
def test_enumerate_front_equals_brute_force(radices, chunk, seed):
    rng = np.random.default_rng(seed)
    d = int(rng.integers(2, 4))
    tables = [np.round(rng.random((r, d)), 1) for r in radices]  # coarse values: many ties
    evaluate = table_evaluate(tables)
    all_codes = np.arange(space_size(radices))
    F_all = evaluate(decode(all_codes, radices))
    keep = pareto_mask(F_all)
    advanced = []
    F, codes = enumerate_front(evaluate, radices, chunk=chunk, progress=advanced.append)
    assert np.array_equal(codes, all_codes[keep])
    assert np.array_equal(F, F_all[keep])
    assert sum(advanced) == len(all_codes)


@pytest.mark.parametrize("bad", [lambda c: np.zeros(len(c)), lambda c: np.full((len(c), 2), np.nan),
                                 lambda c: np.zeros((len(c) + 1, 2))])
def test_enumerate_front_rejects_bad_evaluate(bad):
    with pytest.raises(CompileError):
        enumerate_front(bad, [2, 2])


def random_tree(rng, slots):
    """A nested ("seq"|"par", children) tree over contiguous slot ranges."""
    if len(slots) == 1:
        return slots[0]
    k = int(rng.integers(2, min(3, len(slots)) + 1))
    cuts = np.sort(rng.choice(np.arange(1, len(slots)), size=k - 1, replace=False))
    return (
        str(rng.choice(["seq", "par"])),
        [random_tree(rng, list(p)) for p in np.split(np.array(slots), cuts)],
    )


def at_least_one(a, b):
    return 1.0 - (1.0 - a) * (1.0 - b)


# The operator definitions, written out independently of compile.enumeration.
DEFINITIONS = {"seq": (np.multiply, np.add, np.add), "par": (at_least_one, np.maximum, np.add)}


def tree_evaluate(tree, tables, lat_op):
    """Brute-force evaluate() folding the tree left to right with the operator definitions."""

    def value(node, choices):
        if not isinstance(node, tuple):
            return tables[int(node)][choices[:, int(node)]]
        op, children = node
        fns = list(DEFINITIONS[op])
        if lat_op == "sum":
            fns[1] = np.add
        out = value(children[0], choices)
        for child in children[1:]:
            other = value(child, choices)
            out = np.column_stack([fns[c](out[:, c], other[:, c]) for c in range(out.shape[1])])
        return out

    return lambda choices: value(tree, choices)


def tree_compose(tree, tables, lat_op, max_pairs=1 << 20):
    if not isinstance(tree, tuple):
        return FrontTable.leaf(tables[int(tree)])
    op, children = tree
    return compose_front([tree_compose(c, tables, lat_op, max_pairs) for c in children], op,
                         lat_op=lat_op, max_pairs=max_pairs)


def test_operators_follow_their_definitions():
    a = FrontTable(np.array([[0.5, 2.0, 0.25]]), np.array([[0]]))
    b = FrontTable(np.array([[0.8, 3.0, 0.5]]), np.array([[0]]))
    assert compose_front([a, b], "seq").F.tolist() == [[0.4, 5.0, 0.75]]
    assert compose_front([a, b], "par").F.tolist() == [[0.9, 3.0, 0.75]]
    assert compose_front([a, b], "par", lat_op="sum").F.tolist() == [[0.9, 5.0, 0.75]]
    assert compose_front([a, b], "seq", acc_op="any", lat_op="max").F.tolist() == [[0.9, 3.0, 0.75]]


@pytest.mark.parametrize("d", [2, 3])
@pytest.mark.parametrize("lat_op", [None, "sum"])  # parallel / sequential execution model
def test_compose_front_equals_enumeration_on_random_trees(d, lat_op):
    rng = np.random.default_rng(d * 7 + (lat_op is None))
    for _ in range(40):
        radices = [int(r) for r in rng.integers(1, 6, size=int(rng.integers(1, 6)))]
        tables = [np.column_stack([rng.random(r), rng.random((r, d - 1)) * 3]) for r in radices]
        tree = random_tree(rng, list(range(len(radices))))
        F_enum, codes_enum = enumerate_front(tree_evaluate(tree, tables, lat_op), radices, chunk=50)
        table = tree_compose(tree, tables, lat_op, max_pairs=int(rng.integers(1, 64)))
        assert np.array_equal(table.codes(radices), codes_enum), tree
        assert np.array_equal(table.F, F_enum), tree


def test_compose_front_with_ties_reaches_the_same_values():
    # Coarse values make exact ties everywhere (max latency, duplicate choices). The values
    # must match enumeration exactly and each row's configuration must really score them.
    rng = np.random.default_rng(11)
    for _ in range(40):
        radices = [int(r) for r in rng.integers(1, 6, size=int(rng.integers(2, 6)))]
        tables = [np.round(rng.random((r, 3)), 1) for r in radices]
        tree = random_tree(rng, list(range(len(radices))))
        evaluate = tree_evaluate(tree, tables, None)
        F_enum, _ = enumerate_front(evaluate, radices)
        table = tree_compose(tree, tables, None)
        assert sorted(map(tuple, table.F)) == sorted(map(tuple, F_enum))
        assert np.array_equal(evaluate(table.choices), table.F)


def test_compose_front_cost_column_and_operator_overrides():
    rng = np.random.default_rng(5)
    tables = [np.column_stack([rng.random(4), rng.random(4)]) for _ in range(3)]
    leaves = [FrontTable.leaf(t) for t in tables]
    table = compose_front(leaves, "par", acc_op="prod", columns=("accuracy", "cost"))

    def evaluate(choices):  # product accuracy, summed cost
        F = tables[0][choices[:, 0]]
        for k in (1, 2):
            F = combine(F, tables[k][choices[:, k]], ("prod", "sum"))
        return F

    F_enum, codes_enum = enumerate_front(evaluate, [4, 4, 4])
    assert np.array_equal(table.codes([4, 4, 4]), codes_enum)
    assert np.array_equal(table.F, F_enum)


@pytest.mark.parametrize(
    "kwargs",
    [{"op": "loop"}, {"op": "seq", "acc_op": "mean"}, {"op": "seq", "columns": ("accuracy", "quality")}],
)
def test_compose_front_rejects_unknown_operators(kwargs):
    leaf = FrontTable.leaf(np.array([[0.5, 1.0], [0.7, 2.0]]))
    with pytest.raises(CompileError):
        compose_front([leaf, leaf], **kwargs)


def test_compose_front_rejects_non_monotone_inputs_and_empty_children():
    bad = FrontTable(np.array([[1.5, 1.0]]), np.array([[0]]))
    good = FrontTable.leaf(np.array([[0.5, 1.0]]))
    with pytest.raises(CompileError, match="\\[0, 1\\]"):
        compose_front([good, bad], "par")
    with pytest.raises(CompileError):
        compose_front([])


def test_prune_dominated_choices_keeps_enumeration_exact():
    rng = np.random.default_rng(2)
    tables = [np.round(rng.random((6, 3)), 1) for _ in range(3)]
    kept = [prune_dominated_choices(t) for t in tables]
    for t, k in zip(tables, kept, strict=True):
        assert np.array_equal(k, np.flatnonzero(pareto_mask(t)))
    F_full, _ = enumerate_front(table_evaluate(tables), [6, 6, 6])
    pruned = [t[k] for t, k in zip(tables, kept, strict=True)]
    F_pruned, _ = enumerate_front(table_evaluate(pruned), [len(k) for k in kept])
    assert sorted(map(tuple, F_pruned)) == sorted(map(tuple, F_full))
    with pytest.raises(CompileError):
        prune_dominated_choices(np.zeros((0, 3)))


def test_nsga2_front_is_non_dominated_in_space_and_deterministic():
    tables = synthetic_slots(4, 6, seed=3)
    evaluate = sequential_evaluate(tables)
    radices = [6] * 4
    F, codes = nsga2_front(evaluate, radices, n_trials=240, seed=7, population_size=40)
    assert len(F) > 0 and pareto_mask(F).all()
    assert ((codes >= 0) & (codes < space_size(radices))).all()
    assert np.array_equal(evaluate(decode(codes, radices)), F)
    F_true, codes_true = enumerate_front(evaluate, radices)
    # No returned point may beat a true frontier point: the true front bounds any search.
    merged = np.concatenate([F_true, F])
    assert pareto_mask(merged)[: len(F_true)].all()
    F_again, codes_again = nsga2_front(evaluate, radices, n_trials=240, seed=7, population_size=40)
    assert np.array_equal(codes, codes_again) and np.array_equal(F, F_again)
    F_probe, _ = nsga2_front(evaluate, radices, n_trials=10, seed=1, maximize=None)
    assert F_probe.shape[1] == 3


def test_naive_scan_equals_enumeration_on_small_space():
    tables = synthetic_slots(4, 7, seed=4)
    F_naive, codes_naive, _ = naive_front(tables)
    F_enum, codes_enum = enumerate_front(sequential_evaluate(tables), [7] * 4)
    composed = compose_front([FrontTable.leaf(t) for t in tables])
    assert np.array_equal(codes_naive, codes_enum) and np.array_equal(F_naive, F_enum)
    assert np.array_equal(composed.codes([7] * 4), codes_enum) and np.array_equal(composed.F, F_enum)
