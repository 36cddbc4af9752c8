"""The LightGBM router: per-query success, latency and cost for every frontier candidate.

Training splits the train queries (seeded) into *fit* (everything is learned here), *valid*
(early stopping, the design choice, the regressors' keep-or-drop test) and *calib* (the
probability calibration map). Three stages:

1. :class:`QueryMap` projects the embedding on its top principal components, standardises them
   with the text statistics, and gives each query a distribution over *groups*: the task labels
   passed to ``fit`` (known at train time only; at serve time the map predicts them from the
   text), or k-means clusters of the embedding when there are none.
2. The *prior*: per group and candidate, the fit fold's mean correctness, latency and cost,
   shrunk towards the candidate's overall mean by ``prior_strength`` pseudo-queries; a query's
   prior is the mixture over its group distribution (empirical Bayes). With ~2k train queries
   per benchmark most of the routing signal is here (docs/router.md).
3. LightGBM boosts from the prior (its logit is the init score) with early stopping, so where
   the features hold nothing beyond the groups it stops after a few trees instead of fitting
   noise. ``design="auto"`` picks by validation routing utility between ``per-candidate`` (one booster
   per candidate) and ``conditioned`` (one booster over query x candidate rows with candidate
   features: a one-hot of the configuration's settings, its fit-fold means, optional
   ``candidate_features`` such as proxy estimates, and the query's prior for it). Above
   ``max_per_candidate`` candidates it is always ``conditioned``, whose fit time barely grows
   with the candidate count. Latency and cost get one conditioned regressor each on
   log(value / prior), kept only when it beats the prior on the valid fold.

Fractional scores (F1 in (0, 1)) are soft labels (LightGBM's cross-entropy objective).
"""

from __future__ import annotations

import time
from typing import Any, Literal

import numpy as np

from flowfront.errors import RoutingError
from flowfront.router.base import Hints, OutcomeMatrix, Predictions, Router
from flowfront.router.boosting import Boosting, raw_success, regress, rows, valid_utility_scorer
from flowfront.router.candidates import candidate_features
from flowfront.router.design import choose_design
from flowfront.router.querymap import (
    QueryMap,
    apply_calibration,
    choose_calibration,
    group_means,
    nn_cosine_distance,
    soft_log_loss,
    unit_rows,
)
from flowfront.spec import Execution

__all__ = ["LightGBMRouter", "candidate_features", "nn_cosine_distance"]

Design = Literal["auto", "per-candidate", "conditioned", "prior"]
_CLIP = 1e-3  # priors stay inside (0.001, 0.999) so their logits are finite init scores


# --- the router ------------------------------------------------------------------------------


MIN_TRAIN_QUERIES = 15  # 5 validation + 5 calibration rows at the least, and some to fit on


class LightGBMRouter(Router):
    """Per-candidate success (calibrated), latency and cost; OOD queries fall back to static.

    ``select`` applies the frontier rules to the predictions, except for rows whose embedding is
    farther from every training query than ``ood_threshold_`` (cosine distance): those get the
    static choice, i.e. the same rules applied to the candidates' train-mean accuracy, latency
    and cost. ``predict(X).fallback`` marks the rows that fell back to the train means.

    >>> router = LightGBMRouter(n_estimators=50)  # doctest: +SKIP
    >>> router.fit(X_train, Y_train, groups=tasks).predict(X_test).accuracy.shape  # doctest: +SKIP
    (Q, K)
    """

    def __init__(
        self,
        *,
        execution: Execution = "parallel",
        design: Design = "auto",
        max_per_candidate: int = 32,
        n_components: int = 32,
        n_clusters: int = 16,
        prior_strength: float = 5.0,
        n_estimators: int = 400,
        early_stopping_rounds: int = 30,
        num_leaves: int = 7,
        min_data_in_leaf: int = 100,
        learning_rate: float = 0.05,
        feature_fraction: float = 0.7,
        lambda_l2: float = 10.0,
        num_threads: int = 2,
        seed: int = 0,
        valid_fraction: float = 0.2,
        calib_fraction: float = 0.0,
        variation_threshold: float = 0.05,
        ood_fallback: bool = True,
        ood_quantile: float = 0.99,
        embedding_dim: int = 384,
        reference_size: int = 2000,
        max_conditioned_rows: int = 1_000_000,
        design_folds: int = 3,
    ) -> None:
        self.execution = execution
        self.design = design
        self.max_per_candidate = max_per_candidate
        self.n_components = n_components
        self.n_clusters = n_clusters
        self.prior_strength = prior_strength
        self.n_estimators = n_estimators
        self.early_stopping_rounds = early_stopping_rounds
        self.num_leaves = num_leaves
        self.min_data_in_leaf = min_data_in_leaf
        self.learning_rate = learning_rate
        self.feature_fraction = feature_fraction
        self.lambda_l2 = lambda_l2
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
        self.design_folds = design_folds

    # --- fit ------------------------------------------------------------------------------------

    def fit(self, X: np.ndarray, Y: OutcomeMatrix, candidate_features: np.ndarray | None = None,
            groups: np.ndarray | list[str] | None = None) -> LightGBMRouter:
        """Learn from the train split.

        ``candidate_features`` (K, C): extra per-candidate columns for the conditioned design, e.g.
        the frontier's proxy estimates. ``groups`` (Q,): a label per train query, e.g. its task;
        defaults to ``Y.tasks`` when the matrix carries them, else k-means clusters are used.
        """
        started = time.perf_counter()
        X = self._check_fit_inputs(X, Y, candidate_features)
        groups = self._groups(Y, groups, len(X))
        fit, valid, calib = self._folds(len(X))
        s = np.asarray(Y.correct, dtype=np.float64)
        lat, cost = (
            np.asarray(Y.latency(self.execution), dtype=np.float64),
            np.asarray(Y.cost_usd, dtype=np.float64),
        )
        self.n_features_, self.candidate_ids_, self.source_hash_ = (
            X.shape[1],
            list(Y.candidate_ids),
            Y.source_hash,
        )
        self.static_accuracy_, self.static_latency_s_, self.static_cost_usd_ = (
            s.mean(0),
            lat.mean(0),
            cost.mean(0),
        )
        designs, cv = self._designs(X, Y, candidate_features, groups)
        # The prior alone has nothing to early-stop and its group means are frequencies already:
        # its map and means learn from every train query (one group is then exactly static).
        learn = np.arange(len(X)) if designs == ["prior"] else fit
        self.query_map_ = QueryMap(
            n_components=self.n_components,
            embedding_dim=self.embedding_dim,
            n_clusters=self.n_clusters,
            seed=self.seed,
        ).fit(X[learn], _take(groups, learn))
        self._fit_priors(s[learn], lat[learn], cost[learn])
        self.candidate_features_ = self._candidate_matrix(Y, s[fit], lat[fit], cost[fit], candidate_features)
        Q = self._query_parts(X)
        metrics = self._fit_success(Q, s, fit, valid, lat, cost, designs) | cv
        cal = calib if len(calib) else valid  # without its own fold, calibration shares the valid fold
        metrics |= self._fit_calibration(rows(Q, cal), s[cal])
        boosting, cf = self._boosting(), self.candidate_features_
        self.latency_model_, lat_meta = boosting.fit_regressor(Q, cf, lat, fit, valid, "latency")
        self.cost_model_, cost_meta = boosting.fit_regressor(Q, cf, cost, fit, valid, "cost")
        self.regressor_meta_ = {"latency": lat_meta, "cost": cost_meta}
        self._fit_ood(X, fit, np.concatenate([valid, calib]).astype(np.int64))
        routed = (np.asarray(groups).astype(str) if groups is not None
                  else np.asarray(self.query_map_.groups_, dtype=object)[Q["G"].argmax(axis=1)])
        names, counts = np.unique(routed, return_counts=True)
        self.validation_metrics_ = metrics | {"groups": len(self.query_map_.groups_),
                                              "group_source": "labels" if groups is not None else "k-means",
                                              # the training mix, which drift compares served traffic with
                                              "group_mix": {str(n): float(c) / len(routed)
                                                            for n, c in zip(names, counts, strict=True)}}
        self.fit_seconds_ = time.perf_counter() - started
        return self

    def describe(self) -> dict[str, Any]:
        """The success design the fit chose, and the validation evidence for it."""
        self._check_fitted()
        vm = self.validation_metrics_
        keys = (
            "valid_utility",
            "valid_utility_prior",
            "valid_log_loss",
            "valid_log_loss_prior",
            "calibration",
            "cv_utility",
            "cv_se_of_gap_to_best",
            "rule",
            "group_mix",
        )
        return {"design": self.design_, **{k: vm.get(k) for k in keys if k in vm or k == "calibration"}}

    def _check_fit_inputs(self, X: np.ndarray, Y: OutcomeMatrix, extra: np.ndarray | None) -> np.ndarray:
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[0] != len(Y.query_ids):
            raise RoutingError(
                f"features have shape {X.shape} but the outcome matrix has {len(Y.query_ids)} queries",
                hint="featurize exactly the outcome matrix's texts, in order",
            )
        if X.shape[1] < self.embedding_dim:
            raise RoutingError(
                f"features have {X.shape[1]} columns, fewer than embedding_dim={self.embedding_dim}",
                hint="pass router.features.featurize output or set embedding_dim",
            )
        if not np.isfinite(X).all():
            raise RoutingError("features contain NaN or infinite values", hint="featurize the texts again")
        if extra is not None and np.asarray(extra).shape[0] != len(Y.candidate_ids):
            raise RoutingError(
                f"candidate_features has {np.asarray(extra).shape[0]} rows for {len(Y.candidate_ids)} "
                "candidates",
                hint="pass one row per outcome-matrix column, in order",
            )
        if len(X) < MIN_TRAIN_QUERIES:
            raise RoutingError(f"{len(X)} train queries are too few to fit and validate a router",
                               hint=f"use a train split with at least {MIN_TRAIN_QUERIES} queries")
        return X

    @staticmethod
    def _groups(Y: OutcomeMatrix, groups: Any, n: int) -> np.ndarray | None:
        groups = getattr(Y, "tasks", None) if groups is None else groups
        if groups is None:
            return None
        labels = np.asarray([str(g) for g in groups])
        if labels.shape != (n,):
            raise RoutingError(f"groups has {labels.size} labels for {n} train queries",
                               hint="pass one label (e.g. the task) per outcome-matrix row, in order")
        return None if len(set(labels.tolist())) < 2 else labels  # one label says nothing

    def _folds(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        order = np.random.default_rng(self.seed).permutation(n)
        n_valid = max(int(round(self.valid_fraction * n)), 5)
        n_calib = max(int(round(self.calib_fraction * n)), 5) if self.calib_fraction > 0 else 0
        return (
            np.sort(order[n_valid + n_calib :]),
            np.sort(order[:n_valid]),
            np.sort(order[n_valid : n_valid + n_calib]),
        )

    def _fit_priors(self, s: np.ndarray, lat: np.ndarray, cost: np.ndarray) -> None:
        """Per group and candidate: shrunk means of correctness, latency and cost (fit rows)."""
        qm = self.query_map_
        hard = (qm.labels_[:, None] == np.asarray(qm.groups_)[None, :]).astype(np.float64)
        self.prior_accuracy_ = group_means(s, hard, self.prior_strength)
        self.prior_latency_s_ = group_means(lat, hard, self.prior_strength)
        self.prior_cost_usd_ = group_means(cost, hard, self.prior_strength)

    def _candidate_matrix(self, Y: OutcomeMatrix, s: np.ndarray, lat: np.ndarray, cost: np.ndarray,
                          extra: np.ndarray | None) -> np.ndarray:
        onehot, _ = candidate_features(Y.candidates)
        means = np.stack(
            [s.mean(axis=0), np.log1p(lat.mean(axis=0)), np.log1p(1e3 * cost.mean(axis=0))], axis=1
        )
        parts = [onehot, means] + ([np.asarray(extra, dtype=np.float64)] if extra is not None else [])
        return np.concatenate(parts, axis=1).astype(np.float32)

    # --- the boosters ---------------------------------------------------------------------------

    @property
    def hint_groups(self) -> tuple[str, ...]:
        """The task labels the groups were learned from (none when the groups are k-means clusters)."""
        self._check_fitted()
        return (
            tuple(self.query_map_.groups_) if self.validation_metrics_.get("group_source") == "labels" else ()
        )

    def hint_mask(self, hints: Hints, n: int) -> np.ndarray:
        """(n,) rows whose hint names a group seen in training; the others are routed from the text."""
        if hints is None:
            return np.zeros(n, dtype=bool)
        if len(hints) != n:
            raise RoutingError(
                f"{len(hints)} hints for {n} queries", hint="pass one hint (or None) per query"
            )
        known = set(self.hint_groups)
        return np.array([h in known for h in hints], dtype=bool)

    def _query_parts(self, X: np.ndarray, hints: Hints = None) -> dict[str, np.ndarray]:
        """Per query: map features Z, group probabilities G and the priors (Q, K) they imply.

        A known hint replaces the predicted group distribution by that group: the caller's label
        is what the prior was learned from, and the text only guesses it."""
        Z, G = self.query_map_.transform(X)
        used = self.hint_mask(hints, len(X))
        if used.any():
            index = {g: i for i, g in enumerate(self.query_map_.groups_)}
            G = G.copy()
            G[used] = np.eye(len(index))[[index[h] for h, u in zip(hints, used, strict=True) if u]]
        return {"Z": Z, "G": G, "hinted": used, "acc": np.clip(G @ self.prior_accuracy_, _CLIP, 1.0 - _CLIP),
                "latency": G @ self.prior_latency_s_, "cost": G @ self.prior_cost_usd_}

    def _boosting(self) -> Boosting:
        params = {
            "num_leaves": self.num_leaves,
            "min_data_in_leaf": self.min_data_in_leaf,
            "learning_rate": self.learning_rate,
            "feature_fraction": self.feature_fraction,
            "lambda_l2": self.lambda_l2,
            "num_threads": self.num_threads,
            "verbose": -1,
            "deterministic": True,
            "force_row_wise": True,
            "seed": self.seed,
        }
        return Boosting(params, self.n_estimators, self.early_stopping_rounds, self.max_conditioned_rows,
                        self.variation_threshold, self.seed)

    def _designs(self, X: np.ndarray, Y: OutcomeMatrix, candidate_features: np.ndarray | None,
                 groups: np.ndarray | None) -> tuple[list[str], dict[str, Any]]:
        """The designs to fit on the fit fold: the given one (``design`` not "auto"), the one
        cross-validation chose, the prior when there are too few queries to cross-validate, or
        (above ``max_per_candidate`` candidates, where CV would cost minutes) the two to score on
        the valid fold."""
        if self.design != "auto":
            return [self.design], {}
        if Y.correct.shape[1] > self.max_per_candidate:
            return ["conditioned", "prior"], {}  # per candidate costs minutes at this size, CV thrice that
        designs = ["per-candidate", "conditioned", "prior"]
        if self.design_folds < 2:
            return designs, {}
        if len(X) < self.design_folds * MIN_TRAIN_QUERIES:  # each fold fit needs MIN_TRAIN_QUERIES
            # No way to show boosting beats its prior, so the simplest design stands (the 1-SE rule
            # with no evidence); a 5-query valid fold picked boosting by chance on live-math.
            return ["prior"], {"rule": f"{len(X)} train queries are too few to cross-validate the design "
                                       f"({self.design_folds * MIN_TRAIN_QUERIES} needed): the prior"}
        chosen, record = choose_design(self, X, Y, designs, candidate_features, groups)
        return [chosen], record

    def _fit_success(self, Q: dict[str, np.ndarray], s: np.ndarray, fit: np.ndarray, valid: np.ndarray,
                     lat: np.ndarray, cost: np.ndarray, designs: list[str]) -> dict[str, Any]:
        """Fit the success boosters of ``designs``; of several, keep the one that routes best on valid.

        Designs are scored by the utility their choices realise on the valid fold over a 9-value
        lambda sweep (the quantity routing is for); log-loss is reported beside it. A better
        log-loss spread over candidates that are never close contenders does not make a better
        choice, and on model-route the two criteria disagreed.
        """
        score_utility = valid_utility_scorer(s, lat, cost, fit, valid, Q)
        boosting, cf = self._boosting(), self.candidate_features_
        fitted, losses, utilities, seconds = {}, {}, {}, {}
        for design in designs:  # at most three
            started = time.perf_counter()
            fitted[design] = boosting.fit_design(design, Q, cf, s, fit, valid)
            seconds[design] = time.perf_counter() - started
            p = raw_success(rows(Q, valid), cf, design, fitted[design])
            losses[design], utilities[design] = soft_log_loss(p, s[valid]), score_utility(p)
        # Boosting is kept only when it routes better than the prior it starts from; a tie keeps the prior.
        self.design_ = max(utilities, key=lambda d: (utilities[d], d == "prior", -losses[d]))
        self.success_models_ = fitted[self.design_]
        prior_loss = soft_log_loss(Q["acc"][valid], s[valid])
        return {"valid_utility": utilities, "valid_utility_prior": score_utility(Q["acc"][valid]),
                "valid_log_loss": losses, "valid_log_loss_prior": prior_loss, "design_seconds": seconds,
                "valid_rows": int(len(valid)), "fit_rows": int(len(fit))}

    def _fit_calibration(self, Q_cal: dict[str, np.ndarray], s_cal: np.ndarray) -> dict[str, Any]:
        """Choose identity / Platt / isotonic by 2-fold cross-fitted Brier on the calib fold."""
        learned = ~self._constant_columns()
        if self.design_ == "prior" or not learned.any() or len(s_cal) < 2:  # nothing boosted to calibrate
            self.calibration_ = {"method": "identity"}
            return {"calibration": "identity", "calib_rows": int(len(s_cal))}
        p = raw_success(Q_cal, self.candidate_features_, self.design_, self.success_models_)[:, learned]
        self.calibration_, metrics = choose_calibration(p, s_cal[:, learned], self.seed + 1)
        return metrics

    def _fit_ood(self, X: np.ndarray, fit: np.ndarray, held_out: np.ndarray) -> None:
        rng = np.random.default_rng(self.seed + 2)
        ref_rows = (
            fit if len(fit) <= self.reference_size else rng.choice(fit, self.reference_size, replace=False)
        )
        # Stored as float16 in the artifact; learning the threshold on the rounded set keeps it exact.
        self.reference_embeddings_ = X[np.sort(ref_rows), : self.embedding_dim].astype(np.float16)
        dist = nn_cosine_distance(X[held_out, : self.embedding_dim], self.reference_embeddings_)
        self.ood_threshold_ = float(np.quantile(dist, self.ood_quantile))

    # --- predict --------------------------------------------------------------------------------

    def predict(self, X: np.ndarray, *, hints: Hints = None) -> Predictions:
        """Calibrated success, latency (``self.execution``) and cost, each (Q, K); with
        ``ood_fallback``, out-of-distribution rows carry the candidates' train means instead, or
        their hinted task's prior when a known hint came with them."""
        X = self._check_X(X)
        Q = self._query_parts(X, hints)
        hinted = Q["hinted"] if hints is not None else None
        cf = self.candidate_features_
        raw = raw_success(Q, cf, self.design_, self.success_models_)
        # A candidate that was always right (or wrong) keeps its constant: calibration is for boosters.
        acc = np.where(
            self._constant_columns(), raw, np.clip(apply_calibration(raw, self.calibration_), 0.0, 1.0)
        )
        lat, cost = regress(Q, cf, self.latency_model_, "latency"), regress(Q, cf, self.cost_model_, "cost")
        groups = np.asarray(self.query_map_.groups_, dtype=object)[Q["G"].argmax(axis=1)]
        if not self.ood_fallback:
            return Predictions(acc, lat, cost, hinted=hinted, groups=groups)
        mask = self.ood_mask(X)
        if mask.any():
            m, h = mask[:, None], Q["hinted"][:, None]
            fallback = ((np.where(h, Q["acc"], self.static_accuracy_), acc),
                        (np.where(h, Q["latency"], self.static_latency_s_), lat),
                        (np.where(h, Q["cost"], self.static_cost_usd_), cost))
            acc, lat, cost = (np.where(m, back, est) for back, est in fallback)
        return Predictions(acc, lat, cost, fallback=mask, hinted=hinted, groups=groups)

    def ood_mask(self, X: np.ndarray) -> np.ndarray:
        """Rows farther (cosine, on the embedding columns) from every train query than the threshold."""
        X = self._check_X(X)
        ref = getattr(self, "_reference_unit", None)
        if ref is None or len(ref) != len(self.reference_embeddings_):  # unit rows once, not per call
            ref = self._reference_unit = unit_rows(self.reference_embeddings_.astype(np.float32))
        q = unit_rows(X[:, : self.embedding_dim])
        return 1.0 - (q @ ref.T).max(axis=1) > self.ood_threshold_

    def _constant_columns(self) -> np.ndarray:
        if self.design_ == "prior":
            return np.zeros(len(self.candidate_ids_), dtype=bool)
        if self.design_ == "conditioned":
            return np.full(len(self.candidate_ids_), isinstance(self.success_models_[0], float))
        return np.array([isinstance(m, float) for m in self.success_models_])

    def _check_X(self, X: np.ndarray) -> np.ndarray:
        self._check_fitted()
        X = np.asarray(X, dtype=np.float32)
        if X.ndim == 1:
            X = X[None, :]
        if X.ndim != 2 or X.shape[1] != self.n_features_:
            raise RoutingError(
                f"features have shape {X.shape}, the router was trained on {self.n_features_} columns",
                hint="featurize with the FeatureConfig stored in the router artifact",
            )
        if not np.isfinite(X).all():
            raise RoutingError("features contain NaN or infinite values", hint="featurize the texts again")
        return X


def _take(groups: np.ndarray | None, index: np.ndarray) -> np.ndarray | None:
    return None if groups is None else groups[index]
