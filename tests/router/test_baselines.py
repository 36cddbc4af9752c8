"""Strategy-specific checks of the baseline routers (the shared contract is in test_contract.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from flowfront.artifacts import Provenance
from flowfront.errors import RoutingError
from flowfront.router.base import OutcomeMatrix
from flowfront.router.baselines import (
    BestSinglePolicy,
    FactorisedPolicy,
    KNNRouter,
    OraclePolicy,
    RandomPolicy,
    StaticRouter,
    config_factors,
    realised_utility,
)
from flowfront.router.baselines_rl import MaasStyle, MasRouterStyle
from flowfront.router.select import Preference, Scale, lambda_sweep
from flowfront.router.testing import CANDIDATES, DIM, synthetic


@pytest.fixture(scope="module")
def data() -> dict[str, tuple[np.ndarray, OutcomeMatrix]]:
    return {"train": synthetic(400, 1), "test": synthetic(200, 2)}


@pytest.fixture(scope="module")
def scale(data: dict) -> Scale:
    Y = data["train"][1]
    return Scale.from_estimates(Y.latency_parallel_s.mean(axis=0), Y.cost_usd.mean(axis=0))


def _matrix(correct: np.ndarray, latency: np.ndarray, candidates: list[dict] | None = None) -> OutcomeMatrix:
    q, k = correct.shape
    cands = candidates or [
        {"knobs": {}, "nodes": {"n": {"model": f"m{j}", "budget": None}}} for j in range(k)
    ]
    return OutcomeMatrix(
        [f"q{i}" for i in range(q)],
        [f"t{i}" for i in range(q)],
        [f"c{j}" for j in range(k)],
        cands,
        correct.astype(float),
        latency,
        latency,
        latency * 1e-3,
        "h",
    )


def test_config_factors_marks_nodes_a_knob_turns_off() -> None:
    cands = [{"knobs": {"checker": "off"}, "nodes": {"answer": {"model": "a", "budget": None}}},
             {"knobs": {"checker": "on"}, "nodes": {"answer": {"model": "a", "budget": None},
                                                     "check": {"model": "b", "budget": 64}}}]
    names, labels, codes = config_factors(cands)
    assert names == ["knob:checker", "node:answer", "node:check"]
    assert labels[2] == ["absent", "b@64"]
    assert codes.tolist() == [[0, 0, 0], [1, 0, 1]]


def test_knn_with_k1_returns_the_nearest_train_querys_outcomes(data: dict) -> None:
    X, Y = data["train"]
    router = KNNRouter(k_grid=(1,), weighted=False, embedding_dim=DIM).fit(X, Y)
    assert router.k_ == 1
    np.testing.assert_allclose(router.predict(X[:50]).accuracy, Y.correct[:50])


def test_knn_picks_k_by_held_out_utility(data: dict) -> None:
    router = KNNRouter(k_grid=(1, 5, 25), embedding_dim=DIM).fit(*data["train"])
    assert set(router.k_scores_) == {1, 5, 25}
    assert router.k_scores_[router.k_] == max(router.k_scores_.values())


def test_random_is_uniform_and_keeps_to_limits(data: dict, scale: Scale) -> None:
    X, Y = data["train"]
    router = RandomPolicy(seed=3).fit(X, Y)
    counts = np.bincount(router.select(X, Preference(), scale).index, minlength=len(CANDIDATES))
    assert counts.min() > 0.5 * len(X) / len(CANDIDATES)
    limit = float(np.median(Y.latency_parallel_s.mean(axis=0)))
    chosen = router.select(X, Preference(max_latency_s=limit), scale).index
    assert (Y.latency_parallel_s.mean(axis=0)[chosen] <= limit).all()
    other = RandomPolicy(seed=4).fit(X, Y).select(X, Preference(), scale).index
    assert not np.array_equal(other, router.select(X, Preference(), scale).index)


def test_best_single_breaks_accuracy_ties_by_cost() -> None:
    correct = np.array([[1, 1, 0], [0, 0, 0], [1, 1, 1]])
    Y = _matrix(correct, np.array([[2.0, 1.0, 0.5]] * 3))
    router = BestSinglePolicy().fit(np.zeros((3, 1)), Y)
    assert router.best_ == 1
    scale = Scale(0.5, 2.0, 5e-4, 2e-3)
    assert (router.select(np.zeros((3, 1)), Preference(**{"lambda": 9.0}), scale).index == 1).all()


def test_oracle_takes_the_fastest_correct_candidate_and_refuses_other_queries() -> None:
    correct = np.array([[1, 1, 0], [0, 0, 0], [0, 1, 1]])
    Y = _matrix(correct, np.array([[3.0, 2.0, 1.0]] * 3))
    X = np.arange(6.0).reshape(3, 2)
    router = OraclePolicy().fit(X, Y)
    scale = Scale(1.0, 3.0, 1e-3, 3e-3)
    assert router.select(X, Preference(), scale).index.tolist() == [1, 2, 2]
    with pytest.raises(RoutingError, match="only answers"):
        router.predict(X + 1)


def test_static_uses_frontier_estimates_only_for_matching_candidates(data: dict) -> None:
    from flowfront.compile.artifact import Candidate, Estimates, Frontier

    X, Y = data["train"]
    est = [
        Estimates(accuracy=0.1 * j, latency_sequential_s=j + 1.0, latency_parallel_s=j + 0.5, cost_usd=1e-3)
        for j in range(len(CANDIDATES))
    ]
    frontier = Frontier(
        workflow="w",
        provenance=Provenance(workflow_hash="h", data_hash="p"),
        benchmark="b",
        objective="latency",
        execution="parallel",
        proxy_mode="independent",
        method="exact",
        filters={},
        space_size=6,
        n_evaluated=6,
        search_seconds=0.0,
        candidates=[
            Candidate(id=i, config=c, estimates=e)
            for i, c, e in zip(Y.candidate_ids, CANDIDATES, est, strict=True)
        ],
    )
    pred = StaticRouter(frontier=frontier).fit(X, Y).predict(X[:3])
    np.testing.assert_allclose(pred.latency_s[2], [e.latency_parallel_s for e in est])
    reordered = frontier.model_copy(update={"candidates": frontier.candidates[::-1]})
    with pytest.raises(RoutingError, match="differ from the outcome matrix"):
        StaticRouter(frontier=reordered).fit(X, Y)


def test_factorised_composes_per_factor_and_maps_to_nearest_candidate(data: dict, scale: Scale) -> None:
    X, Y = data["train"]
    missing = [j for j, c in enumerate(CANDIDATES) if c != CANDIDATES[0]]  # drop ("fast", "a")
    Xt, Yt = data["test"]
    sub = OutcomeMatrix(
        Y.query_ids,
        Y.texts,
        [Y.candidate_ids[j] for j in missing],
        [CANDIDATES[j] for j in missing],
        Y.correct[:, missing],
        Y.latency_sequential_s[:, missing],
        Y.latency_parallel_s[:, missing],
        Y.cost_usd[:, missing],
        "sub",
    )
    full = FactorisedPolicy().fit(X, Y)
    assert full.factors_ == ["knob:mode", "node:answer"]
    pick = full.select(Xt, Preference(**{"lambda": 0.5}), scale).index
    cluster0 = np.array(
        [t.startswith("cluster 0") for t in Yt.texts]
    )  # model "a" answers these: fast "a" wins
    assert np.mean(pick[cluster0] == 0) > 0.7
    # Without ("fast", "a") the composed configuration maps to a candidate one factor away.
    pick_sub = FactorisedPolicy().fit(X, sub).select(Xt, Preference(**{"lambda": 0.5}), scale).index
    codes = config_factors(sub.candidates)[2]
    assert (np.array([0, 1]) != codes[pick_sub[cluster0]]).sum(axis=1).max() <= 1


@pytest.mark.parametrize("cls", [MasRouterStyle, MaasStyle])
def test_reinforce_improves_training_reward(cls: type, data: dict) -> None:
    router = cls(seed=0, steps=300, embedding_dim=DIM).fit(*data["train"])
    history = router.reward_history_
    assert history[-30:].mean() > history[:30].mean() + 0.05


def test_masrouter_embeds_item_descriptions_and_refuses_another_objective(data: dict, scale: Scale) -> None:
    seen: list[str] = []

    def embed(texts: list[str]) -> np.ndarray:
        seen.extend(texts)
        return np.array([[len(t), t.count("a"), 1.0] for t in texts])

    router = MasRouterStyle(embed=embed, steps=50, embedding_dim=DIM).fit(*data["train"])
    assert "node answer uses model a with unlimited budget" in seen and "knob mode set to careful" in seen
    with pytest.raises(RoutingError, match="trained for objective"):
        router.select(data["test"][0], Preference(objective="cost", **{"lambda": 1.0}), scale)


def test_maas_ranges_over_one_candidate_per_structure(data: dict) -> None:
    router = MaasStyle(model="b", steps=50, embedding_dim=DIM).fit(*data["train"])
    assert router.factors_ == ["knob:mode"]
    assert [CANDIDATES[j]["nodes"]["answer"]["model"] for j in router.columns_] == ["b", "b"]


# --- real data: qa-cascade train/test matrices from the recorded RouterBench outcomes ----------


@pytest.fixture(scope="module")
def real(compiled_settings, tmp_path_factory: pytest.TempPathFactory) -> tuple:
    """A subsample of the real matrices (embedding is the slow part on 2 cores)."""
    from flowfront.benchmarks import load_benchmark
    from flowfront.compile.artifact import Frontier
    from flowfront.router.features import Embedder, FeatureConfig, featurize
    from flowfront.router.matrix import build_outcomes
    from flowfront.runtime import benchmark_queries, load_cards, make_backend, open_store, prepare_data

    settings = compiled_settings
    frontier = Frontier.load(settings.workspace.benchmark("qa-cascade").frontier())
    bench = load_benchmark("qa-cascade", settings.configs_dir)
    configs, ids = [c.config for c in frontier.candidates], [c.id for c in frontier.candidates]
    mats = []
    with open_store(settings) as store:
        prepared = prepare_data(bench, store, settings)
        backend = make_backend(
            "replay", store, load_cards(settings), settings, models=bench.workflow.all_models()
        )
        for split, n in (("train", 240), ("test", 160)):
            queries = benchmark_queries(bench, store, prepared, split)[:n]
            mats.append(build_outcomes(bench, configs, ids, queries, backend, settings,
                                       source_hash=frontier.content_hash()))
    config = FeatureConfig()
    embedder = Embedder(config, Path(tmp_path_factory.mktemp("emb")))
    features = [featurize(m.texts, config, embedder) for m in mats]
    return mats[0], features[0], mats[1], features[1], frontier


@pytest.mark.slow
def test_real_qa_cascade_oracle_bounds_every_strategy(real: tuple) -> None:
    Ytr, Xtr, Yte, Xte, frontier = real
    est = [c.estimates for c in frontier.candidates]
    acc, lat, cost = (
        np.array([getattr(e, n) for e in est]) for n in ("accuracy", "latency_parallel_s", "cost_usd")
    )
    scale = Scale.from_estimates(lat, cost)
    lams = lambda_sweep(scale, acc, lat, cost, n=9)
    routers = {
        "static": StaticRouter(),
        "knn": KNNRouter(),
        "random": RandomPolicy(),
        "best": BestSinglePolicy(),
        "factorised": FactorisedPolicy(),
        "masrouter": MasRouterStyle(steps=200),
        "maas": MaasStyle(steps=200),
    }
    rows = np.arange(len(Yte.query_ids))
    oracle = OraclePolicy().fit(Xte, Yte)
    oracle_acc = Yte.correct[rows, oracle.select(Xte, Preference(), scale).index].mean()
    oracle_eu = np.mean([realised_utility(Yte, oracle.select(Xte, Preference(**{"lambda": lam}), scale).index,
                                          lam, scale) for lam in lams])
    for name, router in routers.items():
        router.fit(Xtr, Ytr)
        assert Yte.correct[rows, router.select(Xte, Preference(), scale).index].mean() <= oracle_acc, name
        eu = np.mean([realised_utility(Yte, router.select(Xte, Preference(**{"lambda": lam}), scale).index,
                                       lam, scale) for lam in lams])
        assert eu <= oracle_eu, name
