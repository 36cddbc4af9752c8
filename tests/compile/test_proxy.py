"""Proxy properties: identity on one node, monotonicity, parallel bounds, vote semantics."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowfront.artifacts import Provenance
from flowfront.compile.artifact import ChoiceProfile, GroupProfile, NodeProfile, Profiles
from flowfront.compile.proxy import Proxy
from flowfront.compile.search import search
from flowfront.compile.vote import vote_table
from flowfront.spec import load_workflow
from tests.helpers import CONFIGS

CASCADE = load_workflow(CONFIGS / "workflows" / "qa-cascade.yaml")
VOTE = load_workflow(CONFIGS / "workflows" / "qa-vote.yaml")
ROUTE = load_workflow(CONFIGS / "workflows" / "model-route.yaml")


def make_profiles(wf, acc, lat, cost, joint=None) -> Profiles:
    """Synthetic profiles: every llm node gets the same per-model (acc, lat, cost)."""
    nodes, members = {}, list(wf.llm_nodes())
    models = wf.llm_nodes()[members[0]].models
    choices = [
        ChoiceProfile(
            model=m,
            budget=None,
            n=100,
            accuracy=float(a),
            latency_mean_s=float(lt),
            latency_p90_s=float(lt),
            cost_mean_usd=float(c),
            prompt_tokens_mean=10,
            completion_tokens_mean=5,
        )
        for m, a, lt, c in zip(models, acc, lat, cost, strict=True)
    ]
    group = "+".join(members)
    for name in members:
        nodes[name] = NodeProfile(group=group, induced_n=100, choices=choices)
    return Profiles(
        workflow=wf.name,
        provenance=Provenance(workflow_hash=wf.content_hash, data_hash="x"),
        benchmark=wf.name,
        data_source="test",
        split="train",
        seed=0,
        n_queries=100,
        n_reference_correct=90,
        reference={},
        nodes=nodes,
        groups={group: GroupProfile(nodes=members, n_inputs=100, joint=joint)},
    )


def cascade_digits(a: int, b: int, c: int) -> tuple:
    return np.array([[a, b, c]])


def on_structure(proxy: Proxy, **knobs):
    return next(s for s in proxy.structures() if s.knobs == knobs)


probs = st.lists(st.floats(0.05, 0.95), min_size=11, max_size=11)
lats = st.lists(st.floats(0.1, 5.0), min_size=11, max_size=11)


def test_identity_on_one_node() -> None:
    acc, lat, cost = np.linspace(0.3, 0.9, 9), np.linspace(1, 3, 9), np.linspace(1e-4, 1e-3, 9)
    proxy = Proxy(ROUTE, make_profiles(ROUTE, acc, lat, cost))
    structure = proxy.structures()[0]
    est = proxy.evaluate(structure, np.arange(9)[:, None])
    np.testing.assert_allclose(est["accuracy"], acc)
    np.testing.assert_allclose(est["latency_sequential_s"], lat)
    np.testing.assert_allclose(est["latency_parallel_s"], lat)
    np.testing.assert_allclose(est["cost_usd"], cost)


@settings(max_examples=40, deadline=None)
@given(acc=probs, lat=lats, node=st.integers(0, 2), bump=st.floats(0.01, 0.5))
def test_cascade_is_monotone_in_every_calls_accuracy_and_latency(acc, lat, node, bump) -> None:
    acc, lat = np.array(acc), np.array(lat)
    base = Proxy(CASCADE, make_profiles(CASCADE, acc, lat, np.full(11, 1e-4)))
    s = on_structure(base, checker="on")
    digits = np.array([[0, 1, 2]])
    before = base.evaluate(s, digits)
    better_acc, slower = acc.copy(), lat.copy()
    better_acc[node] = min(1.0, acc[node] + bump)
    slower[node] = lat[node] + bump
    after_acc = Proxy(CASCADE, make_profiles(CASCADE, better_acc, lat, np.full(11, 1e-4))).evaluate(s, digits)
    after_lat = Proxy(CASCADE, make_profiles(CASCADE, acc, slower, np.full(11, 1e-4))).evaluate(s, digits)
    assert after_acc["accuracy"][0] >= before["accuracy"][0] - 1e-12
    for key in ("latency_sequential_s", "latency_parallel_s"):
        assert after_lat[key][0] >= before[key][0] - 1e-12


@settings(max_examples=40, deadline=None)
@given(
    acc=probs, lat=lats, picks=st.lists(st.integers(0, 10), min_size=5, max_size=5), which=st.integers(0, 4)
)
def test_vote_bounds_and_monotonicity(acc, lat, picks, which) -> None:
    acc, lat = np.array(acc), np.array(lat)
    proxy = Proxy(VOTE, make_profiles(VOTE, acc, lat, np.full(11, 1e-4)))
    s = on_structure(proxy, k=5)
    est = proxy.evaluate(s, np.array([picks]))
    chosen = lat[picks]
    # parallel composition: the critical path is the slowest sample, the sum is the sequential
    # model; a model picked twice is one call (identical prompt), made and paid once
    assert est["latency_parallel_s"][0] == pytest.approx(chosen.max())
    assert est["latency_sequential_s"][0] == pytest.approx(lat[sorted(set(picks))].sum())
    assert est["cost_usd"][0] == pytest.approx(1e-4 * len(set(picks)))
    assert 0.0 <= est["accuracy"][0] <= 1.0
    better = acc.copy()
    better[picks[which]] = min(1.0, better[picks[which]] + 0.2)
    again = Proxy(VOTE, make_profiles(VOTE, better, lat, np.full(11, 1e-4))).evaluate(s, np.array([picks]))
    assert again["accuracy"][0] >= est["accuracy"][0] - 1e-12


def test_vote_tables() -> None:
    # one wrong option: wrong samples always agree, so a plain majority decides
    assert vote_table(3, 1)[2, 0] == 1.0 and vote_table(3, 1)[1, 1] == 0.0
    # many wrong options: one right answer against two different wrong ones is a three-way tie
    assert vote_table(3, 6)[1, 1] == pytest.approx(5 / 6)
    assert vote_table(3, 6)[1, 0] == 0.0
    assert vote_table(5, 2)[3, 0] == 1.0


def test_correlated_vote_of_one_model_repeated_is_that_model() -> None:
    """Deterministic replay: the same model five times always agrees with itself."""
    acc = np.linspace(0.4, 0.9, 11)
    both = np.minimum.outer(acc, acc)  # comonotone: as correlated as the marginals allow
    joint = {"both_correct": both.tolist(), "same_wrong": (1 - np.maximum.outer(acc, acc)).tolist(),
             "disagree_ratio": np.ones((11, 11)).tolist()}
    profiles = make_profiles(VOTE, acc, np.ones(11), np.full(11, 1e-4), joint=joint)
    s = on_structure(Proxy(VOTE, profiles), k=5)
    indep = Proxy(VOTE, profiles, mode="independent").evaluate(s, np.full((1, 5), 3))["accuracy"][0]
    corr = Proxy(VOTE, profiles, mode="correlated").evaluate(s, np.full((1, 5), 3))["accuracy"][0]
    # identical calls give identical outputs: no Condorcet gain, whichever mode composes the rest
    assert corr == pytest.approx(acc[3], abs=1e-9) and indep == pytest.approx(acc[3], abs=1e-12)
    two = Proxy(VOTE, profiles, mode="independent").evaluate(on_structure(Proxy(VOTE, profiles), k=3),
                                                             np.array([[3, 3, 5]]))["accuracy"][0]
    assert 0.0 <= two <= 1.0


def test_a_check_by_the_answering_model_is_the_answer_alone() -> None:
    """Answer and check by one model on one prompt always agree when its answer parses (here: it
    always does), so the configuration realises the answer alone: equal estimates, not just close
    ones, so the twin filter drops the dearer of the two."""
    acc, lat, cost = np.linspace(0.4, 0.9, 11), np.linspace(1, 3, 11), np.linspace(1e-4, 1e-3, 11)
    both = np.minimum.outer(acc, acc)
    joint = {"both_correct": both.tolist(), "same_wrong": (1 - np.maximum.outer(acc, acc)).tolist(),
             "disagree_ratio": np.ones((11, 11)).tolist()}
    for mode in ("independent", "correlated"):
        proxy = Proxy(CASCADE, make_profiles(CASCADE, acc, lat, cost, joint=joint), mode=mode)
        alone = proxy.evaluate(on_structure(proxy, checker="off"), np.array([[4]]))
        checked = proxy.evaluate(on_structure(proxy, checker="on"), np.array([[4, 4, 9]]))
        assert {k: float(v[0]) for k, v in checked.items()} == {k: float(v[0]) for k, v in alone.items()}
        # a repeated escalation adds nothing but keeps the compared answer
        again = proxy.evaluate(on_structure(proxy, checker="on"), np.array([[4, 7, 4]]))
        assert again["cost_usd"][0] == pytest.approx(cost[4] + cost[7])
        assert again["accuracy"][0] == pytest.approx(acc[4])


def test_pruned_search_equals_brute_force() -> None:
    rng = np.random.default_rng(0)
    profiles = make_profiles(
        CASCADE, rng.uniform(0.4, 0.95, 11), rng.uniform(0.2, 2, 11), rng.uniform(1e-4, 1e-2, 11)
    )
    proxy = Proxy(CASCADE, profiles)
    found = {(str(p.structure.knobs), tuple(proxy.config(p.structure, p.digits)["nodes"].items().__repr__()))
             for p in search(proxy, objective="latency").points}
    from flowfront.compile.enumeration import decode
    from flowfront.compile.pareto import pareto_mask

    rows, labels = [], []
    for s in proxy.structures():
        digits = decode(np.arange(s.size), s.radices)
        est = proxy.evaluate(s, digits)
        rows.append(np.stack([est["accuracy"], est["latency_parallel_s"]], axis=1))
        labels += [(str(s.knobs), tuple(proxy.config(s, d)["nodes"].items().__repr__())) for d in digits]
    F = np.concatenate(rows)
    brute = {labels[i] for i in np.flatnonzero(pareto_mask(F, (True, False)))}
    assert found == brute


BEST_OF = {
    "name": "best-of", "knobs": {"k": {"values": [1, 2, 3], "default": 2}},
    "nodes": {"gen": {"kind": "llm", "messages": [{"role": "user", "content": "{query}"}], "parser": "code",
                      "models": [f"m{i}" for i in range(11)]},
              "pick": {"kind": "code", "fn": "first_passing", "inputs": ["gen"]}},
    "flow": [{"sample": "gen", "k": {"knob": "k"}}, "pick"], "output": "pick",
}


@settings(max_examples=40, deadline=None)
@given(acc=probs, picks=st.lists(st.integers(0, 10), min_size=3, max_size=3))
def test_at_least_one_selector_bounds(acc, picks) -> None:
    from flowfront.spec import Workflow, parse_model

    wf = parse_model(Workflow, BEST_OF, "test")
    acc = np.array(acc)
    proxy = Proxy(wf, make_profiles(wf, acc, np.ones(11), np.full(11, 1e-4)))
    s = on_structure(proxy, k=3)
    got = proxy.evaluate(s, np.array([picks]))["accuracy"][0]
    chosen = acc[picks]
    assert chosen.max() - 1e-12 <= got <= min(1.0, chosen.sum()) + 1e-12


def test_loop_is_unrolled_by_the_probability_it_keeps_running() -> None:
    wf = load_workflow(CONFIGS / "workflows" / "gsm8k-verify.yaml")
    acc = np.array([0.6, 0.9])  # per model (the synthetic profiles ignore budgets)
    proxy = Proxy(wf, make_profiles(wf, acc, np.array([1.0, 2.0]), np.full(2, 1e-4)))
    lat = {}
    for rounds in (0, 1, 2):
        s = on_structure(proxy, rounds=rounds)
        est = proxy.evaluate(s, np.zeros((1, len(s.slots)), dtype=int))
        lat[rounds] = est["latency_sequential_s"][0]
        assert 0 <= est["accuracy"][0] <= 1
    # each extra round adds the verify call, weighted by the chance the loop is still running
    assert lat[0] < lat[1] < lat[2]
    assert lat[2] - lat[1] < lat[1] - lat[0]


def test_every_code_function_declares_a_proxy_rule_and_an_undeclared_one_is_refused(monkeypatch) -> None:
    from flowfront import codefns
    from flowfront.errors import CompileError

    assert set(codefns.PROXY_RULES) == set(codefns.CODE_FUNCTIONS)
    acc, lat, cost = np.linspace(0.3, 0.9, 11), np.linspace(1, 3, 11), np.linspace(1e-4, 1e-3, 11)
    proxy = Proxy(CASCADE, make_profiles(CASCADE, acc, lat, cost))
    structure = on_structure(proxy, checker="on")
    choices = np.zeros((1, len(structure.slots)), dtype=np.int64)
    assert np.isfinite(proxy.evaluate(structure, choices)["accuracy"]).all()
    # a registered function whose rule was never declared: the proxy says so instead of guessing
    monkeypatch.delitem(codefns.PROXY_RULES, "agree")
    with pytest.raises(CompileError, match="code node 'agree': function 'agree' declares no proxy rule"):
        Proxy(CASCADE, make_profiles(CASCADE, acc, lat, cost)).evaluate(structure, choices)
