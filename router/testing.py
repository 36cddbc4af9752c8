"""Contract tests for every router strategy: one contract, two seeds (Optuna's shared sampler
tests, for routers).

The data is a small synthetic outcome matrix with a planted signal: queries sit in two clusters
of the embedding space; cluster 0 is answered by model "a" in either mode, cluster 1 only by the
slow "careful" mode. A router that reads the features can learn this; random cannot.

Use from a test module with ``from flowfront.router.testing import *``; the tests run over every
strategy of the one registry (``flowfront.router.registry.STRATEGIES``), a new one included.
Needs pytest (the ``dev`` extra); nothing at run time imports this module.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from flowfront.errors import RoutingError
from flowfront.router.base import Hints, OutcomeMatrix, Policy, Predictions, Router
from flowfront.router.baselines import realised_utility
from flowfront.router.registry import STRATEGIES, TEST_EMBEDDING_DIM
from flowfront.router.select import Preference, Scale, SelectionResult

# A narrow embedding keeps every fit fast; routers that slice X take the width as a parameter.
DIM = TEST_EMBEDDING_DIM
CANDIDATES = [{"knobs": {"mode": mode}, "nodes": {"answer": {"model": m, "budget": None}}}
              for mode in ("fast", "careful") for m in ("a", "b", "c")]


def _build(name: str, seed: int) -> Router:
    """A registry strategy sized for the synthetic data (its ``test_params``)."""
    return STRATEGIES[name].factory(seed, for_tests=True)  # type: ignore[return-value]


def synthetic(n: int, seed: int, swap: bool = False) -> tuple[np.ndarray, OutcomeMatrix]:
    """Features (n, DIM + 2) and outcomes with the planted two-cluster signal (``swap`` flips it)."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(99).normal(size=(2, DIM))
    cluster = rng.integers(0, 2, size=n)
    emb = centres[cluster] + rng.normal(scale=0.15, size=(n, DIM))
    X = np.hstack([emb / np.linalg.norm(emb, axis=1, keepdims=True), rng.random((n, 2))]).astype(np.float32)
    careful = np.array([c["knobs"]["mode"] == "careful" for c in CANDIDATES])
    model_a = np.array([c["nodes"]["answer"]["model"] == "a" for c in CANDIDATES])
    good = np.where((cluster == 1) ^ swap, 1, 0)[:, None]
    p = np.where(good == 0, np.where(model_a, 0.95, 0.2), np.where(careful, 0.95, 0.1))
    correct = (rng.random(p.shape) < p).astype(float)
    base_latency = 1.0 + 2.0 * careful + 0.2 * (np.arange(len(CANDIDATES)) % 3)
    latency = base_latency * rng.uniform(0.9, 1.1, size=p.shape)
    cost = 1e-3 * latency
    ids = [f"c{j}" for j in range(len(CANDIDATES))]
    Y = OutcomeMatrix(
        [f"q{i}" for i in range(n)],
        [f"cluster {c} query {i}" for i, c in enumerate(cluster)],
        ids,
        CANDIDATES,
        correct,
        latency,
        latency,
        cost,
        source_hash="synthetic",
        tasks=[f"task-{c}" for c in cluster],
    )  # labelled: a router that learns groups takes hints
    return X, Y


@pytest.fixture(scope="module")
def data() -> dict[str, tuple[np.ndarray, OutcomeMatrix]]:
    return {"train": synthetic(400, 1), "test": synthetic(200, 2), "other": synthetic(400, 3, swap=True)}


@pytest.fixture(scope="module")
def scale(data: dict) -> Scale:
    Y = data["train"][1]
    return Scale.from_estimates(Y.latency_parallel_s.mean(axis=0), Y.cost_usd.mean(axis=0))


_FITTED: dict[tuple[str, int], tuple[Router, np.ndarray, OutcomeMatrix]] = {}


def _fitted(name: str, seed: int, data: dict) -> tuple[Router, np.ndarray, OutcomeMatrix]:
    """A fit shared by the read-only tests (fitting is the slow part); tests that refit use _fit."""
    if (name, seed) not in _FITTED:
        _FITTED[name, seed] = _fit(name, seed, data)
    return _FITTED[name, seed]


def _fit(name: str, seed: int, data: dict, split: str = "train") -> tuple[Router, np.ndarray, OutcomeMatrix]:
    X_eval, Y_eval = data["test"] if split == "train" else data[split]
    X_fit, Y_fit = (X_eval, Y_eval) if STRATEGIES[name].fits_on_eval else data[split]
    router = _build(name, seed)
    assert router.fit(X_fit, Y_fit) is router
    return router, X_eval, Y_eval


def _utility(router: Router, X: np.ndarray, Y: OutcomeMatrix, scale: Scale) -> float:
    lams = (0.0, 0.2, 0.5)
    return float(np.mean([realised_utility(Y, router.select(X, Preference(**{"lambda": lam}), scale).index,
                                           lam, scale) for lam in lams]))


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("name", list(STRATEGIES))
class TestRouterContract:
    def test_init_stores_params_and_learns_nothing(self, name: str, seed: int) -> None:
        router = _build(name, seed)
        learned = [a for a in vars(router) if a.endswith("_") and not a.startswith("_")]
        assert learned == []
        for cls in type(router).__mro__:
            if cls in (Router, Policy) or not issubclass(cls, Policy):
                continue
            for param in list(inspect.signature(cls.__init__).parameters.values())[1:]:
                if param.kind not in (param.VAR_KEYWORD, param.VAR_POSITIONAL):
                    assert hasattr(router, param.name), (
                        f"{name} does not store __init__ parameter {param.name}"
                    )

    def test_fit_learns_attributes_with_trailing_underscore(self, name: str, seed: int, data: dict) -> None:
        router, _, _ = _fit(name, seed, data)
        assert any(a.endswith("_") and not a.startswith("_") for a in vars(router))

    def test_describe_is_json_ready(self, name: str, seed: int, data: dict) -> None:
        import json

        router, _, _ = _fitted(name, seed, data)
        described = router.describe()
        assert isinstance(described, dict) and json.loads(json.dumps(described)) == described

    def test_predict_shapes_and_ranges(self, name: str, seed: int, data: dict) -> None:
        router, X, Y = _fitted(name, seed, data)
        pred = router.predict(X)
        for arr in (pred.accuracy, pred.latency_s, pred.cost_usd):
            assert arr.shape == (len(X), len(Y.candidate_ids))
            assert np.isfinite(arr).all()
        assert (pred.accuracy >= 0).all() and (pred.accuracy <= 1).all()
        assert (pred.latency_s >= 0).all() and (pred.cost_usd >= 0).all()

    def test_select_returns_valid_indices(self, name: str, seed: int, data: dict, scale: Scale) -> None:
        router, X, Y = _fitted(name, seed, data)
        for pref in (
            Preference(),
            Preference(**{"lambda": 0.3}),
            Preference(**{"lambda": 5.0}, objective="cost"),
        ):
            if STRATEGIES[name].module.endswith("baselines_rl") and pref.objective == "cost":
                continue  # trained for latency; a cost preference is refused (test_baselines checks that)
            index = router.select(X, pref, scale).index
            assert index.shape == (len(X),)
            assert ((index >= 0) & (index < len(Y.candidate_ids))).all()

    def test_select_respects_hard_limits(self, name: str, seed: int, data: dict, scale: Scale) -> None:
        router, X, Y = _fitted(name, seed, data)
        pred = router.predict(X)
        limit = float(np.median(pred.latency_s))
        result = router.select(X, Preference(max_latency_s=limit, on_infeasible="nearest"), scale)
        rows = np.arange(len(X))
        if not STRATEGIES[name].honours_preferences:  # best single ignores preferences by definition
            assert (result.index == router.select(X, Preference(), scale).index).all()
            return
        chosen = pred.latency_s[rows, result.index]
        assert result.feasible.any()
        assert (chosen[result.feasible] <= limit).all()

    def test_hints_are_accepted_and_only_used_when_known(self, name: str, seed: int, data: dict,
                                                         scale: Scale) -> None:
        router, X, _ = _fitted(name, seed, data)
        unknown = ["never-seen-task"] * len(X)
        np.testing.assert_array_equal(router.predict(X, hints=unknown).accuracy, router.predict(X).accuracy)
        pref = Preference(**{"lambda": 0.3})
        np.testing.assert_array_equal(router.select(X, pref, scale, hints=unknown).index,
                                      router.select(X, pref, scale).index)
        assert not router.predict(X, hints=unknown).n_hinted
        for group in router.hint_groups:  # a known hint is used for every row that carries it
            assert router.predict(X, hints=[group] * len(X)).n_hinted == len(X)

    def test_deterministic_per_seed(self, name: str, seed: int, data: dict, scale: Scale) -> None:
        first, X, _ = _fitted(name, seed, data)
        second, _, _ = _fit(name, seed, data)
        np.testing.assert_array_equal(first.predict(X).accuracy, second.predict(X).accuracy)
        pref = Preference(**{"lambda": 0.3})
        np.testing.assert_array_equal(first.select(X, pref, scale).index, second.select(X, pref, scale).index)

    def test_refit_on_new_data_changes_the_fit(self, name: str, seed: int, data: dict) -> None:
        router, X, _ = _fit(name, seed, data)
        before = router.predict(X).accuracy
        if STRATEGIES[name].fits_on_eval:  # the oracle forgets the old queries and answers for the new ones
            X_new, Y_new = data["other"]
            router.fit(X_new, Y_new)
            np.testing.assert_array_equal(router.predict(X_new).accuracy, Y_new.correct)
            with pytest.raises(RoutingError, match="only answers for the queries it was fitted on"):
                router.predict(X)
            return
        router.fit(*data["other"])
        assert not np.allclose(before, router.predict(X).accuracy)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("name", [n for n, spec in STRATEGIES.items() if spec.reads_features])
def test_feature_routers_beat_random(name: str, seed: int, data: dict, scale: Scale) -> None:
    """Only the strategies that read query features: on planted-signal data they must beat random."""
    router, X, Y = _fitted(name, seed, data)
    random_router, _, _ = _fitted("random", seed, data)
    assert _utility(router, X, Y, scale) > _utility(random_router, X, Y, scale) + 0.05


def test_a_router_cannot_override_the_shared_selection() -> None:
    """Routers change what they predict; a choice rule of its own makes a Policy, not a Router."""
    with pytest.raises(TypeError, match="overrides Router.select"):
        class Sneaky(Router):  # noqa: F841 - defining it is the test
            def fit(self, X: np.ndarray, Y: OutcomeMatrix) -> Sneaky:
                return self

            def predict(self, X: np.ndarray, *, hints: Hints = None) -> Predictions:
                raise NotImplementedError

            def select(
                self, X: np.ndarray, preference: Preference, scale: Scale, *, hints: Hints = None
            ) -> SelectionResult:
                raise NotImplementedError
