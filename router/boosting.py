"""The LightGBM half of :class:`~flowfront.router.model.LightGBMRouter`: the rows its boosters see,
how one is trained, and how the success, latency and cost boosters are fitted and applied.

``Q`` is the router's per-query parts (``Z`` the query map's components, ``G`` the group
distribution, ``acc`` / ``latency`` / ``cost`` the group priors, each (n, K) for the last
three); ``cf`` (K, C) the candidate features. Every booster starts from the prior (its logit or
log is the init score), so early stopping leaves it at the prior where the features add nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from flowfront.router.querymap import logit, sigmoid
from flowfront.router.select import Preference, Scale, lambda_sweep, select, utility

__all__ = ["Boosting", "pair_rows", "raw_success", "regress", "rows", "valid_utility_scorer"]

Parts = dict[str, np.ndarray]


def rows(Q: Parts, index: np.ndarray) -> Parts:
    """The parts of some queries."""
    return {name: value[index] for name, value in Q.items()}


def pair_rows(Q: Parts, cf: np.ndarray, prior: str) -> np.ndarray:
    """(n*K, F): row q*K + k is query q's map features, candidate k's features and their prior."""
    n, k = len(Q["Z"]), len(cf)
    head = np.hstack([Q["Z"], Q["G"]]).astype(np.float32)
    p = Q[prior]
    own = logit(p) if prior == "acc" else np.log(np.maximum(p, 1e-12))
    return np.hstack([np.repeat(head, k, axis=0), np.tile(cf, (n, 1)), own.reshape(-1, 1).astype(np.float32)])


def single_rows(Q: Parts, k: int) -> np.ndarray:
    """(n, F): the rows of candidate ``k``'s own booster (per-candidate design)."""
    return np.hstack([Q["Z"], Q["G"], logit(Q["acc"][:, k : k + 1])]).astype(np.float32)


def predict_kwargs(n_rows: int) -> dict[str, int]:
    # A few rows gain nothing from threads, and OpenMP spin-waiting on busy cores costs ~100 ms a call.
    return {"num_threads": 1} if n_rows <= 256 else {}


def raw_success(Q: Parts, cf: np.ndarray, design: str, models: list[Any]) -> np.ndarray:
    """(n, K) uncalibrated success of ``design``'s boosters (a float stands in for a constant one)."""
    n, k = Q["acc"].shape
    if design == "prior":
        return Q["acc"].copy()
    if design == "conditioned":
        m = models[0]
        if isinstance(m, float):
            return np.full((n, k), m)
        return sigmoid(m.predict(pair_rows(Q, cf, "acc"), raw_score=True, **predict_kwargs(n * k))
                       .reshape(n, k) + logit(Q["acc"]))
    out = np.empty((n, k))
    for j, m in enumerate(models):  # K boosters, each vectorised over the queries
        out[:, j] = m if isinstance(m, float) else sigmoid(
            m.predict(single_rows(Q, j), raw_score=True, **predict_kwargs(n)) + logit(Q["acc"][:, j]))
    return out


def regress(Q: Parts, cf: np.ndarray, model: Any, name: str) -> np.ndarray:
    """(n, K) latency or cost: the prior, times the regressor's correction when one was kept."""
    if model is None:
        return Q[name]
    n, k = Q[name].shape
    return Q[name] * np.exp(model.predict(pair_rows(Q, cf, name), **predict_kwargs(n * k)).reshape(n, k))


@dataclass(frozen=True)
class Boosting:
    """How the router's boosters are trained: LightGBM parameters and the limits around them."""

    params: dict[str, Any]
    n_estimators: int
    early_stopping_rounds: int
    max_conditioned_rows: int
    variation_threshold: float
    seed: int

    def train(self, objective: str, train: tuple, valid: tuple) -> Any:
        """One booster (rows, target, init score) with early stopping on ``valid``, trimmed to its
        best iteration."""
        import lightgbm as lgb

        dtrain = lgb.Dataset(train[0], train[1], init_score=train[2], free_raw_data=True)
        dvalid = lgb.Dataset(valid[0], valid[1], init_score=valid[2], reference=dtrain)
        booster = lgb.train(
            {**self.params, "objective": objective},
            dtrain,
            num_boost_round=self.n_estimators,
            valid_sets=[dvalid],
            callbacks=[lgb.early_stopping(self.early_stopping_rounds, verbose=False)],
        )
        # Re-parsing the trimmed text makes the in-memory model exactly what the artifact stores.
        return lgb.Booster(model_str=booster.model_to_string(num_iteration=booster.best_iteration))

    def cap_rows(self, fit: np.ndarray, k: int) -> np.ndarray:
        """At most ``max_conditioned_rows`` query x candidate rows: a seeded subset of the queries."""
        keep = max(self.max_conditioned_rows // k, 1)
        if len(fit) <= keep:
            return fit
        return np.sort(np.random.default_rng(self.seed + 3).choice(fit, keep, replace=False))

    def fit_design(self, design: str, Q: Parts, cf: np.ndarray, s: np.ndarray, fit: np.ndarray,
                   valid: np.ndarray) -> list[Any]:
        """The success boosters of one design (none for the prior)."""
        if design == "prior":
            return []  # the group prior alone: nothing to fit beyond it
        if design == "per-candidate":
            return self._per_candidate(Q, s, fit, valid)
        return self._conditioned(Q, cf, s, fit, valid)

    def _per_candidate(self, Q: Parts, s: np.ndarray, fit: np.ndarray, valid: np.ndarray) -> list[Any]:
        models: list[Any] = []
        for k in range(s.shape[1]):  # one booster per candidate
            if np.ptp(s[fit, k]) == 0.0:
                models.append(float(s[fit[0], k]))
                continue
            parts = [(single_rows(rows(Q, p), k), s[p, k], logit(Q["acc"][p, k])) for p in (fit, valid)]
            models.append(self.train("cross_entropy", *parts))
        return models

    def _conditioned(
        self, Q: Parts, cf: np.ndarray, s: np.ndarray, fit: np.ndarray, valid: np.ndarray
    ) -> list[Any]:
        if np.ptp(s[fit]) == 0.0:
            return [float(s[fit[0], 0])]
        fit = self.cap_rows(fit, s.shape[1])
        parts = [
            (pair_rows(rows(Q, p), cf, "acc"), s[p].ravel(), logit(Q["acc"][p]).ravel()) for p in (fit, valid)
        ]
        return [self.train("cross_entropy", *parts)]

    def fit_regressor(self, Q: Parts, cf: np.ndarray, V: np.ndarray, fit: np.ndarray, valid: np.ndarray,
                      name: str) -> tuple[Any, dict[str, Any]]:
        """One conditioned booster for log(value / prior), kept only when it beats the prior."""
        resid = np.log(np.maximum(V, 1e-12)) - np.log(np.maximum(Q[name], 1e-12))
        spread = float(resid[fit].std())
        meta: dict[str, Any] = {"log_residual_std": spread, "used": False}
        if spread <= self.variation_threshold:
            return None, meta
        part = self.cap_rows(fit, V.shape[1])
        booster = self.train("regression", *[(pair_rows(rows(Q, p), cf, name), resid[p].ravel(), None)
                                             for p in (part, valid)])
        pred = booster.predict(pair_rows(rows(Q, valid), cf, name)).reshape(len(valid), -1)
        mse, mse_prior = float(np.mean((pred - resid[valid]) ** 2)), float(np.mean(resid[valid] ** 2))
        meta |= {"valid_mse_log": mse, "valid_mse_log_prior": mse_prior, "used": mse < mse_prior}
        return (booster if mse < mse_prior else None), meta


def valid_utility_scorer(s: np.ndarray, lat: np.ndarray, cost: np.ndarray, fit: np.ndarray, valid: np.ndarray,
                         Q: Parts) -> Any:
    """``score(p)``: mean realised utility on the valid fold of choosing by success probabilities
    ``p`` (valid rows x K) and the group priors' latency and cost, over the lambda sweep of the fit
    fold's means (normalised like static selection)."""
    means = (s[fit].mean(axis=0), lat[fit].mean(axis=0), cost[fit].mean(axis=0))
    scale = Scale.from_estimates(means[1], means[2])
    lambdas = lambda_sweep(scale, *means)
    est_lat, est_cost = Q["latency"][valid], Q["cost"][valid]
    index = np.arange(len(valid))

    def score(p: np.ndarray) -> float:
        total = 0.0
        for lam in lambdas:
            idx = select(p, est_lat, est_cost, Preference(**{"lambda": float(lam)}), scale).index
            total += float(np.mean(utility(s[valid][index, idx], lat[valid][index, idx], float(lam), scale)))
        return total / len(lambdas)

    return score
