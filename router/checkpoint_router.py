"""The checkpoint router: at one checkpoint of a workflow, how each candidate finishes from the
state the run is in (router.progressive uses one per checkpoint).

Its rows are *states* (a query and the calls made so far); its features are the state's
(``router.trajectories``) beside the upfront router's estimates for each candidate. Its success
booster starts from the upfront estimate (its logit is the init score) and early-stops, so where
what ran says nothing new it predicts what the upfront router did; latency and cost correct the
upfront estimates the same way.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from flowfront.router.base import Hints, OutcomeMatrix, Predictions, Router
from flowfront.router.querymap import logit, sigmoid
from flowfront.spec import Execution

__all__ = ["CheckpointRouter", "upfront_block", "upfront_of"]

_CLIP = 1e-3


def upfront_block(accuracy: np.ndarray, latency_s: np.ndarray, cost_usd: np.ndarray) -> np.ndarray:
    """(..., 3K): the upfront router's accuracy, log latency and log cost for every candidate."""
    return np.concatenate(
        [accuracy, np.log(np.maximum(latency_s, 1e-9)), np.log(np.maximum(cost_usd, 1e-12))], axis=-1
    ).astype(np.float32)


def upfront_of(pred: Predictions) -> np.ndarray:
    """:func:`upfront_block` of a router's predictions."""
    return upfront_block(pred.accuracy, pred.latency_s, pred.cost_usd)


class CheckpointRouter(Router):
    """At one checkpoint, per state and candidate: how the candidate finishes from there.

    ``X`` rows are states: their features (F) followed by the upfront block (3K, see
    :func:`upfront_block`). ``fit``'s ``members`` (n, K) marks the candidates each state may
    switch to (those are the rows learned from); every candidate is estimated at predict time.
    """

    def __init__(
        self,
        *,
        execution: Execution = "parallel",
        n_estimators: int = 150,
        learning_rate: float = 0.1,
        num_leaves: int = 7,
        min_data_in_leaf: int = 40,
        early_stopping_rounds: int = 20,
        valid_fraction: float = 0.2,
        seed: int = 0,
    ) -> None:
        self.execution = execution
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_data_in_leaf = min_data_in_leaf
        self.early_stopping_rounds = early_stopping_rounds
        self.valid_fraction = valid_fraction
        self.seed = seed

    def _pairs(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(n*K, ...) pair rows [state, candidate one-hot, its upfront estimates] and the three priors."""
        n, k = len(X), self.n_candidates_
        state, up = X[:, : X.shape[1] - 3 * k], X[:, X.shape[1] - 3 * k :]
        acc, lat, cost = up[:, :k], up[:, k : 2 * k], up[:, 2 * k :]
        rows = np.hstack(
            [
                np.repeat(state, k, axis=0),
                np.tile(np.eye(k, dtype=np.float32), (n, 1)),
                acc.reshape(-1, 1),
                lat.reshape(-1, 1),
                cost.reshape(-1, 1),
            ]
        )
        return rows, np.clip(acc, _CLIP, 1 - _CLIP).ravel(), lat.ravel(), cost.ravel()

    def fit(self, X: np.ndarray, Y: OutcomeMatrix, *, members: np.ndarray | None = None) -> CheckpointRouter:
        import lightgbm as lgb

        self.n_candidates_ = k = len(Y.candidate_ids)
        mask = np.ones((len(X), k), dtype=bool) if members is None else np.asarray(members, dtype=bool)
        rows, acc, lat, cost = self._pairs(X)
        keep = mask.ravel()
        query = np.repeat(np.arange(len(X)), k)[keep]
        rows, acc, lat, cost = rows[keep], acc[keep], lat[keep], cost[keep]
        y = Y.correct.ravel()[keep]
        ly = np.log(np.maximum(Y.latency(self.execution).ravel()[keep], 1e-9))
        cy = np.log(np.maximum(Y.cost_usd.ravel()[keep], 1e-12))
        rng = np.random.default_rng(self.seed + 11)
        held = rng.random(len(X)) < self.valid_fraction
        valid = held[query]
        params = {
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "verbose": -1,
            "min_data_in_leaf": self.min_data_in_leaf,
            "lambda_l2": 10.0,
            "seed": self.seed,
            "num_threads": 2,
            "deterministic": True,
            "max_bin": 63,
        }

        def boost(objective: str, target: np.ndarray, init: np.ndarray) -> Any | None:
            if valid.all() or not valid.any() or np.ptp(target[~valid]) == 0.0:
                return None
            dtrain = lgb.Dataset(rows[~valid], target[~valid], init_score=init[~valid], free_raw_data=True)
            dvalid = lgb.Dataset(rows[valid], target[valid], init_score=init[valid], reference=dtrain)
            booster = lgb.train(
                {**params, "objective": objective},
                dtrain,
                num_boost_round=self.n_estimators,
                valid_sets=[dvalid],
                callbacks=[lgb.early_stopping(self.early_stopping_rounds, verbose=False)],
            )
            if booster.best_iteration <= 0:
                return None
            return lgb.Booster(model_str=booster.model_to_string(num_iteration=booster.best_iteration))

        self.success_ = boost("cross_entropy", y, logit(acc))
        self.latency_ = boost("regression", ly, lat)
        self.cost_ = boost("regression", cy, cost)
        self.trees_ = {
            name: 0 if m is None else m.current_iteration()
            for name, m in (("success", self.success_), ("latency", self.latency_), ("cost", self.cost_))
        }
        return self

    def predict(self, X: np.ndarray, *, hints: Hints = None) -> Predictions:
        self._check_fitted()
        n, k = len(X), self.n_candidates_
        rows, acc, lat, cost = self._pairs(np.asarray(X, dtype=np.float32))
        kw = {"num_threads": 1} if len(rows) <= 256 else {}

        def corrected(model: Any | None, init: np.ndarray) -> np.ndarray:
            # Each booster was trained from the upfront estimate as its init score: its output adds to it.
            return init if model is None else init + model.predict(rows, raw_score=True, **kw)

        p = sigmoid(corrected(self.success_, logit(acc)))
        latency = np.exp(corrected(self.latency_, lat))
        spent = np.exp(corrected(self.cost_, cost))
        return Predictions(p.reshape(n, k), latency.reshape(n, k), spent.reshape(n, k))

    def describe(self) -> dict[str, Any]:
        return {"trees": dict(getattr(self, "trees_", {}))}
