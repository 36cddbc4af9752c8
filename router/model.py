"""The LightGBM router: per-query success, latency and cost for every frontier candidate.

Training splits the train queries (seeded) into three folds: *fit* (boosters learn here),
*valid* (early stopping, the choice between the two success designs, the regressors' keep-or-mean
test) and *calib* (the probability calibration map). The out-of-distribution threshold is learned
from valid + calib queries against the fit queries' embeddings.

Success designs (``design="auto"`` picks by validation log-loss; the winner is ``design_``):

* ``per-candidate``: one binary classifier per candidate on X (fast per-query prediction);
* ``conditioned``: one classifier over rows ``X ⊕ candidate features``; candidate features are a
  one-hot of every ``node.model`` / ``node.budget`` / ``knob`` value in the configuration, the
  fit fold's mean correctness, log latency and log cost per candidate, and optionally the
  frontier's proxy estimates passed to ``fit`` as ``candidate_features`` (K, C).

Fractional scores (F1 in (0, 1)) are soft labels: a row with score s appears once as a positive
with weight s and once as a negative with weight 1 - s. A candidate whose fit-fold scores are
constant gets that constant as its prediction instead of a booster.
"""

from __future__ import annotations

import time
from typing import Any, Literal

import numpy as np

from compile.select import Preference, Scale, SelectionResult, select
from flowfront.errors import RoutingError
from router.base import OutcomeMatrix, Predictions, Router

__all__ = ["LightGBMRouter", "apply_calibration", "candidate_features", "nn_cosine_distance"]

Design = Literal["auto", "per-candidate", "conditioned"]
_EPS = 1e-6


def candidate_features(candidates: list[dict]) -> tuple[np.ndarray, list[str]]:
    """One-hot (K, C) of every node setting and knob value, with the column names.

    A node given per call (a list of settings) contributes ``node[i].model=...`` columns; a node
    a configuration does not use contributes nothing, which is itself informative to the trees.
    """
    tokens = [_config_tokens(c) for c in candidates]
    vocab = sorted(set().union(*tokens))
    col = {t: i for i, t in enumerate(vocab)}
    out = np.zeros((len(candidates), len(vocab)), dtype=np.float32)
    for k, toks in enumerate(tokens):  # K configurations, each a handful of tokens
        out[k, [col[t] for t in toks]] = 1.0
    return out, vocab


def _config_tokens(config: dict) -> set[str]:
    toks: set[str] = set()
    for node, setting in (config.get("nodes") or {}).items():
        calls = setting if isinstance(setting, list) else [setting]
        for i, call in enumerate(calls):
            name = f"{node}[{i}]" if isinstance(setting, list) else node
            toks |= {f"{name}.{key}={call.get(key)}" for key in ("model", "budget")}
    toks |= {f"knob.{k}={v}" for k, v in (config.get("knobs") or {}).items()}
    return toks


def nn_cosine_distance(queries: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Per query row, 1 - the largest cosine similarity to any reference row (both (n, d))."""
    q = _unit_rows(queries.astype(np.float32, copy=False))
    r = _unit_rows(reference.astype(np.float32, copy=False))
    return 1.0 - (q @ r.T).max(axis=1)


def _unit_rows(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def apply_calibration(p: np.ndarray, calibration: dict[str, Any]) -> np.ndarray:
    """Map raw probabilities through a stored calibration (``identity``, ``platt``, ``isotonic``)."""
    method = calibration["method"]
    if method == "isotonic":
        return np.interp(p, calibration["x"], calibration["y"])
    if method == "platt":
        z = calibration["a"] * _logit(p) + calibration["b"]
        return 1.0 / (1.0 + np.exp(-z))
    return p


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, _EPS, 1.0 - _EPS)
    return np.log(p / (1.0 - p))


def _soft_rows(X: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows, labels and weights for soft labels s in [0, 1] (module docstring)."""
    pos, neg = s > 0.0, s < 1.0
    rows = np.concatenate([X[pos], X[neg]])
    labels = np.concatenate([np.ones(pos.sum()), np.zeros(neg.sum())])
    weights = np.concatenate([s[pos], 1.0 - s[neg]])
    return rows, labels, weights


def soft_log_loss(p: np.ndarray, s: np.ndarray) -> float:
    """Mean cross-entropy of probabilities p against soft labels s."""
    p = np.clip(p, _EPS, 1.0 - _EPS)
    return float(-np.mean(s * np.log(p) + (1.0 - s) * np.log(1.0 - p)))


def brier(p: np.ndarray, s: np.ndarray) -> float:
    """Mean squared error of probabilities against (soft) outcomes."""
    return float(np.mean((p - s) ** 2))


class LightGBMRouter(Router):
    """Per-candidate success (calibrated), latency and cost from LightGBM; OOD queries fall back.

    ``select`` applies the frontier rules to the predictions, except for rows whose embedding is
    farther from every training query than ``ood_threshold_`` (cosine distance): those get the
    static choice, i.e. the same rules applied to the candidates' train-mean accuracy, latency
    and cost. ``last_ood_count`` says how many rows of the last ``select`` call fell back.

    >>> router = LightGBMRouter(n_estimators=50)  # doctest: +SKIP
    >>> router.fit(X_train, Y_train).predict(X_test).accuracy.shape  # doctest: +SKIP
    (Q, K)
    """

    def __init__(
        self,
        *,
        execution: str = "parallel",
        design: Design = "auto",
        n_estimators: int = 200,
        early_stopping_rounds: int = 20,
        num_leaves: int = 15,
        min_data_in_leaf: int = 20,
        learning_rate: float = 0.05,
        feature_fraction: float = 0.8,
        num_threads: int = 2,
        seed: int = 0,
        valid_fraction: float = 0.15,
        calib_fraction: float = 0.15,
        variation_threshold: float = 0.05,
        ood_fallback: bool = True,
        ood_quantile: float = 0.99,
        embedding_dim: int = 384,
        reference_size: int = 2000,
        max_conditioned_rows: int = 200_000,
    ) -> None:
        self.execution = execution
        self.design = design
        self.n_estimators = n_estimators
        self.early_stopping_rounds = early_stopping_rounds
        self.num_leaves = num_leaves
        self.min_data_in_leaf = min_data_in_leaf
        self.learning_rate = learning_rate
        self.feature_fraction = feature_fraction
        self.num_threads = num_threads
        self.seed = seed
        self.valid_fraction = valid_fraction
        self.calib_fraction = calib_fraction
        self.variation_threshold = variation_threshold
        self.ood_fallback = ood_fallback
        self.ood_quantile = ood_quantile
        self.embedding_dim = embedding_dim
        self.reference_size = reference_size
        self.max_conditioned_rows = max_conditioned_rows
        self.last_ood_count = 0

    def get_params(self) -> dict[str, Any]:
        """The constructor parameters (sklearn convention); JSON-serialisable."""
        import inspect

        return {name: getattr(self, name) for name in inspect.signature(type(self).__init__).parameters
                if name != "self"}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> LightGBMRouter:
        """Rebuild a fitted router from validated artifact state (``router.artifact.load_router``)."""
        router = cls(**state["params"])
        router.design_ = state["design"]
        router.candidate_ids_ = list(state["candidate_ids"])
        router.n_features_ = int(state["n_features"])
        router.source_hash_ = state["outcomes_hash"]
        router.candidate_features_ = state["candidate_features"]
        router.static_accuracy_ = np.asarray(state["static"]["accuracy"])
        router.static_latency_s_ = np.asarray(state["static"]["latency_s"])
        router.static_cost_usd_ = np.asarray(state["static"]["cost_usd"])
        router.calibration_ = state["calibration"]
        router.ood_threshold_ = float(state["ood_threshold"])
        router.reference_embeddings_ = state["reference"]
        router.success_models_ = state["success_models"]
        router.latency_models_, router.latency_mean_ = state["latency_models"], state["latency_mean"]
        router.cost_models_, router.cost_mean_ = state["cost_models"], state["cost_mean"]
        router.regressor_meta_ = state["regressors"]
        router.fit_seconds_ = float(state["fit_seconds"])
        router.validation_metrics_ = state["validation_metrics"]
        return router

    # --- fit ------------------------------------------------------------------------------------

    def fit(self, X: np.ndarray, Y: OutcomeMatrix, candidate_features: np.ndarray | None = None) -> LightGBMRouter:
        """Learn from the train split. ``candidate_features`` (K, C): extra per-candidate columns
        for the conditioned design, e.g. the frontier's proxy estimates; stored for ``predict``."""
        started = time.perf_counter()
        X = self._check_fit_inputs(X, Y, candidate_features)
        fit, valid, calib = self._folds(len(X))
        s = np.asarray(Y.correct, dtype=np.float64)
        self.n_features_ = X.shape[1]
        self.candidate_ids_ = list(Y.candidate_ids)
        self.source_hash_ = Y.source_hash
        self.static_accuracy_ = s.mean(axis=0)
        self.static_latency_s_ = Y.latency(self.execution).mean(axis=0)
        self.static_cost_usd_ = Y.cost_usd.mean(axis=0)
        self.candidate_features_ = self._candidate_matrix(Y, fit, candidate_features)
        metrics = self._fit_success(X, s, fit, valid)
        metrics |= self._fit_calibration(X[calib], s[calib])
        self.latency_models_, self.latency_mean_, lat_meta = self._fit_regressors(X, Y.latency(self.execution), fit, valid)
        self.cost_models_, self.cost_mean_, cost_meta = self._fit_regressors(X, Y.cost_usd, fit, valid)
        self.regressor_meta_ = {"latency": lat_meta, "cost": cost_meta}
        self._fit_ood(X, fit, np.concatenate([valid, calib]))
        self.validation_metrics_ = metrics
        self.fit_seconds_ = time.perf_counter() - started
        return self

    def _check_fit_inputs(self, X: np.ndarray, Y: OutcomeMatrix, extra: np.ndarray | None) -> np.ndarray:
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[0] != len(Y.query_ids):
            raise RoutingError(f"features have shape {X.shape} but the outcome matrix has {len(Y.query_ids)} queries",
                               hint="featurize exactly the outcome matrix's texts, in order")
        if X.shape[1] < self.embedding_dim:
            raise RoutingError(f"features have {X.shape[1]} columns, fewer than embedding_dim={self.embedding_dim}",
                               hint="pass router.features.featurize output or set embedding_dim")
        if extra is not None and np.asarray(extra).shape[0] != len(Y.candidate_ids):
            raise RoutingError(f"candidate_features has {np.asarray(extra).shape[0]} rows for {len(Y.candidate_ids)} "
                               "candidates", hint="pass one row per outcome-matrix column, in order")
        if len(X) < 20:
            raise RoutingError(f"{len(X)} train queries are too few to fit and validate a router",
                               hint="use a train split with at least 20 queries")
        return X

    def _folds(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        order = np.random.default_rng(self.seed).permutation(n)
        n_valid = max(int(round(self.valid_fraction * n)), 5)
        n_calib = max(int(round(self.calib_fraction * n)), 5)
        return order[n_valid + n_calib :], order[:n_valid], order[n_valid : n_valid + n_calib]

    def _candidate_matrix(self, Y: OutcomeMatrix, fit: np.ndarray, extra: np.ndarray | None) -> np.ndarray:
        onehot, _ = candidate_features(Y.candidates)
        means = np.stack([Y.correct[fit].mean(axis=0), np.log1p(Y.latency(self.execution)[fit].mean(axis=0)),
                          np.log1p(1e3 * Y.cost_usd[fit].mean(axis=0))], axis=1)
        parts = [onehot, means] + ([np.asarray(extra, dtype=np.float64)] if extra is not None else [])
        return np.concatenate(parts, axis=1).astype(np.float32)

    def _params(self, objective: str) -> dict[str, Any]:
        return {"objective": objective, "num_leaves": self.num_leaves, "min_data_in_leaf": self.min_data_in_leaf,
                "learning_rate": self.learning_rate, "feature_fraction": self.feature_fraction,
                "num_threads": self.num_threads, "verbose": -1, "deterministic": True, "force_row_wise": True,
                "seed": self.seed}

    def _train(self, objective: str, train: tuple, valid: tuple) -> Any:
        """One booster with early stopping on ``valid``, trimmed to its best iteration."""
        import lightgbm as lgb

        dtrain = lgb.Dataset(train[0], train[1], weight=train[2], free_raw_data=True)
        dvalid = lgb.Dataset(valid[0], valid[1], weight=valid[2], reference=dtrain)
        booster = lgb.train(self._params(objective), dtrain, num_boost_round=self.n_estimators, valid_sets=[dvalid],
                            callbacks=[lgb.early_stopping(self.early_stopping_rounds, verbose=False)])
        # Re-parsing the trimmed text makes the in-memory model exactly what the artifact stores.
        return lgb.Booster(model_str=booster.model_to_string(num_iteration=booster.best_iteration))

    def _fit_success(self, X: np.ndarray, s: np.ndarray, fit: np.ndarray, valid: np.ndarray) -> dict[str, Any]:
        designs = ["per-candidate", "conditioned"] if self.design == "auto" else [self.design]
        if "conditioned" in designs and len(fit) * s.shape[1] > self.max_conditioned_rows and self.design == "auto":
            designs = ["per-candidate"]  # too many (query, candidate) rows to hold in memory
        fitted, losses = {}, {}
        for design in designs:  # at most two
            fitted[design] = self._fit_per_candidate(X, s, fit, valid) if design == "per-candidate" \
                else self._fit_conditioned(X, s, fit, valid)
            losses[design] = soft_log_loss(self._raw_success(X[valid], design, fitted[design]), s[valid])
        self.design_ = min(losses, key=losses.get)
        self.success_models_ = fitted[self.design_]
        return {"valid_log_loss": losses, "valid_rows": int(len(valid)), "fit_rows": int(len(fit))}

    def _fit_per_candidate(self, X: np.ndarray, s: np.ndarray, fit: np.ndarray, valid: np.ndarray) -> list[Any]:
        models: list[Any] = []
        for k in range(s.shape[1]):  # one booster per candidate
            y_fit = s[fit, k]
            if np.ptp(y_fit) == 0.0:
                models.append(float(y_fit[0]))
                continue
            models.append(self._train("binary", _soft_rows(X[fit], y_fit), _soft_rows(X[valid], s[valid, k])))
        return models

    def _fit_conditioned(self, X: np.ndarray, s: np.ndarray, fit: np.ndarray, valid: np.ndarray) -> list[Any]:
        if np.ptp(s[fit]) == 0.0:
            return [float(s[fit][0, 0])]
        return [self._train("binary", _soft_rows(self._pair_rows(X[fit]), s[fit].ravel()),
                            _soft_rows(self._pair_rows(X[valid]), s[valid].ravel()))]

    def _pair_rows(self, X: np.ndarray) -> np.ndarray:
        """(Q*K, F+C): row q*K + k is query q's features followed by candidate k's."""
        cf = self.candidate_features_
        k = len(cf)
        return np.concatenate([np.repeat(X, k, axis=0), np.tile(cf, (len(X), 1))], axis=1)

    def _fit_calibration(self, X_cal: np.ndarray, s_cal: np.ndarray) -> dict[str, Any]:
        """Choose identity / Platt / isotonic by 2-fold cross-fitted Brier on the calib fold."""
        learned = ~self._constant_columns()
        if not learned.any():
            self.calibration_ = {"method": "identity"}
            return {"calibration": "identity", "calib_rows": int(len(X_cal))}
        p = self._raw_success(X_cal, self.design_, self.success_models_)[:, learned]
        s_cal = s_cal[:, learned]
        half = np.random.default_rng(self.seed + 1).permutation(len(p)) < len(p) // 2
        scores = {}
        for method in ("identity", "platt", "isotonic"):
            out = np.empty_like(p)
            for part in (half, ~half):  # fit on one half of the queries, score on the other
                out[part] = apply_calibration(p[part], _fit_map(method, p[~part].ravel(), s_cal[~part].ravel()))
            scores[method] = brier(out, s_cal)
        method = min(scores, key=scores.get)
        self.calibration_ = _fit_map(method, p.ravel(), s_cal.ravel())
        return {"calib_brier": scores, "calibration": method, "calib_rows": int(len(p))}

    def _fit_regressors(self, X: np.ndarray, V: np.ndarray, fit: np.ndarray,
                        valid: np.ndarray) -> tuple[list[Any], np.ndarray, list[dict]]:
        """Boosters only where a candidate's value varies by query and the booster beats the mean."""
        V = np.asarray(V, dtype=np.float64)
        mean = V.mean(axis=0)
        cv = V.std(axis=0) / np.maximum(np.abs(mean), 1e-12)
        models: list[Any] = [None] * V.shape[1]
        meta = []
        for k in np.flatnonzero(cv > self.variation_threshold):  # only the query-varying candidates
            booster = self._train("regression", (X[fit], V[fit, k], None), (X[valid], V[valid, k], None))
            mse_model = float(np.mean((booster.predict(X[valid]) - V[valid, k]) ** 2))
            mse_mean = float(np.mean((V[fit, k].mean() - V[valid, k]) ** 2))
            models[k] = booster if mse_model < mse_mean else None
            meta.append({"candidate": int(k), "cv": float(cv[k]), "valid_mse": mse_model,
                         "valid_mse_mean": mse_mean, "used": models[k] is not None})
        return models, mean, meta

    def _fit_ood(self, X: np.ndarray, fit: np.ndarray, held_out: np.ndarray) -> None:
        rng = np.random.default_rng(self.seed + 2)
        ref_rows = fit if len(fit) <= self.reference_size else rng.choice(fit, self.reference_size, replace=False)
        # Stored as float16 in the artifact; learning the threshold on the rounded set keeps it exact.
        self.reference_embeddings_ = X[np.sort(ref_rows), : self.embedding_dim].astype(np.float16)
        dist = nn_cosine_distance(X[held_out, : self.embedding_dim], self.reference_embeddings_)
        self.ood_threshold_ = float(np.quantile(dist, self.ood_quantile))

    # --- predict --------------------------------------------------------------------------------

    def predict(self, X: np.ndarray) -> Predictions:
        """Calibrated success, latency (``self.execution``) and cost, each (Q, K)."""
        X = self._check_X(X)
        raw = self._raw_success(X, self.design_, self.success_models_)
        # A candidate that was always right (or wrong) keeps its constant: calibration is for boosters.
        acc = np.where(self._constant_columns(), raw, np.clip(apply_calibration(raw, self.calibration_), 0.0, 1.0))
        return Predictions(acc, self._regress(X, self.latency_models_, self.latency_mean_),
                           self._regress(X, self.cost_models_, self.cost_mean_))

    def ood_mask(self, X: np.ndarray) -> np.ndarray:
        """Rows farther (cosine, on the embedding columns) from every train query than the threshold."""
        X = self._check_X(X)
        return nn_cosine_distance(X[:, : self.embedding_dim], self.reference_embeddings_) > self.ood_threshold_

    def static_choice(self, preference: Preference, scale: Scale) -> SelectionResult:
        """What static selection on the candidates' train means picks (the OOD fallback)."""
        self._check_fitted()
        return select(self.static_accuracy_, self.static_latency_s_, self.static_cost_usd_, preference, scale)

    def select(self, X: np.ndarray, preference: Preference, scale: Scale) -> SelectionResult:
        """Router selection per row; out-of-distribution rows get :meth:`static_choice`."""
        result = super().select(X, preference, scale)
        if not self.ood_fallback:
            self.last_ood_count = 0
            return result
        mask = self.ood_mask(X)
        self.last_ood_count = int(mask.sum())
        if not mask.any():
            return result
        static = self.static_choice(preference, scale)
        return SelectionResult(np.where(mask, static.index, result.index),
                               np.where(mask, static.feasible, result.feasible),
                               np.where(mask, static.violation, result.violation))

    def _constant_columns(self) -> np.ndarray:
        if self.design_ == "conditioned":
            return np.full(len(self.candidate_ids_), isinstance(self.success_models_[0], float))
        return np.array([isinstance(m, float) for m in self.success_models_])

    def _check_X(self, X: np.ndarray) -> np.ndarray:
        self._check_fitted()
        X = np.asarray(X, dtype=np.float32)
        if X.ndim == 1:
            X = X[None, :]
        if X.ndim != 2 or X.shape[1] != self.n_features_:
            raise RoutingError(f"features have shape {X.shape}, the router was trained on {self.n_features_} columns",
                               hint="featurize with the FeatureConfig stored in the router artifact")
        return X

    def _raw_success(self, X: np.ndarray, design: str, models: list[Any]) -> np.ndarray:
        if design == "conditioned":
            m = models[0]
            flat = np.full(len(X) * len(self.candidate_features_), m) if isinstance(m, float) \
                else m.predict(self._pair_rows(X), **_predict_kwargs(len(X)))
            return flat.reshape(len(X), -1)
        out = np.empty((len(X), len(models)))
        for k, m in enumerate(models):  # K boosters, each vectorised over the queries
            out[:, k] = m if isinstance(m, float) else m.predict(X, **_predict_kwargs(len(X)))
        return out

    @staticmethod
    def _regress(X: np.ndarray, models: list[Any], mean: np.ndarray) -> np.ndarray:
        out = np.repeat(mean[None, :], len(X), axis=0)
        for k, m in enumerate(models):
            if m is not None:
                out[:, k] = np.maximum(m.predict(X, **_predict_kwargs(len(X))), 0.0)  # latency and cost are never negative
        return out


def _predict_kwargs(n_rows: int) -> dict[str, int]:
    # A few rows gain nothing from threads, and OpenMP spin-waiting on busy cores costs ~100 ms a call.
    return {"num_threads": 1} if n_rows <= 64 else {}


def _fit_map(method: str, p: np.ndarray, s: np.ndarray) -> dict[str, Any]:
    """A calibration map as plain numbers, so it serialises to JSON."""
    if method == "isotonic":
        from sklearn.isotonic import IsotonicRegression

        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(p, s)
        return {"method": "isotonic", "x": iso.X_thresholds_.tolist(), "y": iso.y_thresholds_.tolist()}
    if method == "platt":
        from sklearn.linear_model import LogisticRegression

        z, labels, weights = _soft_rows(_logit(p)[:, None], s)
        if len(np.unique(labels)) < 2:  # one class only: nothing to rescale
            return {"method": "identity"}
        lr = LogisticRegression(C=1e6).fit(z, labels, sample_weight=weights)
        return {"method": "platt", "a": float(lr.coef_[0, 0]), "b": float(lr.intercept_[0])}
    return {"method": "identity"}
