"""Baseline routers behind the :class:`router.base.Router` contract.

Every strategy the eval harness compares against the frontier router lives here (the two
REINFORCE policies are in :mod:`router.baselines_rl`): static selection, FlowCompile-style
k-nearest neighbours, random, the best single configuration, the per-query oracle, and the
factorised full-space router. All follow scikit-learn conventions: ``__init__`` stores
parameters, ``fit(X, Y)`` returns ``self``, learned attributes end in ``_``.

Latency means the ``execution`` model the router was built for (``"parallel"`` or
``"sequential"``). When a router needs to score utility during ``fit`` it normalises with the
``scale`` it was given, else with the range of the candidates' train-mean outcomes (the same
construction static selection uses on frontier estimates).
"""

from __future__ import annotations

import numpy as np

from flowfront.compile.artifact import Frontier
from flowfront.errors import RoutingError
from flowfront.router.base import Hints, OutcomeMatrix, Policy, Predictions, Router
from flowfront.router.features import EMBEDDING_DIM
from flowfront.router.select import Preference, Scale, SelectionResult, lambda_sweep, select, utility
from flowfront.spec import Execution

__all__ = [
    "BestSinglePolicy",
    "FactorisedPolicy",
    "KNNRouter",
    "OraclePolicy",
    "RandomPolicy",
    "StaticRouter",
    "config_factors",
    "realised_utility",
]


# --- shared helpers --------------------------------------------------------------------------


def realised_utility(
    Y: OutcomeMatrix,
    index: np.ndarray,
    lam: float,
    scale: Scale,
    execution: Execution = "parallel",
    objective: str = "latency",
) -> float:
    """Mean over queries of ``correct - lam * normalised(objective)`` of the chosen candidates."""
    rows = np.arange(len(index))
    axis = Y.latency(execution) if objective == "latency" else Y.cost_usd
    return float(np.mean(utility(Y.correct[rows, index], axis[rows, index], lam, scale, objective)))


def _train_means(Y: OutcomeMatrix, execution: Execution) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return Y.correct.mean(axis=0), Y.latency(execution).mean(axis=0), Y.cost_usd.mean(axis=0)


def _broadcast(means: tuple[np.ndarray, np.ndarray, np.ndarray], q: int) -> Predictions:
    # Copies, so a caller editing one row's predictions never edits the others.
    return Predictions(*(np.tile(m, (q, 1)) for m in means))


def _default_scale(means: tuple[np.ndarray, np.ndarray, np.ndarray], scale: Scale | None) -> Scale:
    return scale if scale is not None else Scale.from_estimates(means[1], means[2])


def _lex_argmin(keys: list[np.ndarray]) -> np.ndarray:
    """Per row, the first column minimising keys[0], ties by keys[1], ..., then lowest index."""
    tied = np.ones(keys[0].shape, dtype=bool)
    for key in keys:
        masked = np.where(tied, key, np.inf)
        tied &= masked == masked.min(axis=1, keepdims=True)
    return tied.argmax(axis=1)


def _meets_limits(acc: np.ndarray, lat: np.ndarray, cost: np.ndarray, pref: Preference) -> np.ndarray:
    ok = np.ones(np.broadcast_shapes(acc.shape, lat.shape, cost.shape), dtype=bool)
    if pref.max_latency_s is not None:
        ok &= lat <= pref.max_latency_s
    if pref.max_cost_usd is not None:
        ok &= cost <= pref.max_cost_usd
    if pref.min_accuracy:
        ok &= acc >= pref.min_accuracy
    return ok


def _check_rows(X: np.ndarray, Y: OutcomeMatrix) -> None:
    if X.ndim != 2 or X.shape[0] != len(Y.query_ids):
        raise RoutingError(
            f"features have shape {X.shape} but the outcome matrix has {len(Y.query_ids)} queries",
            hint="featurize exactly the queries of the outcome matrix, in its order",
        )


def _choice_label(setting: dict | list | None) -> str:
    if setting is None:
        return "absent"
    calls = setting if isinstance(setting, list) else [setting]
    return ";".join(f"{c['model']}@{c.get('budget') or 'unlimited'}" for c in calls)


def config_factors(candidates: list[dict]) -> tuple[list[str], list[list[str]], np.ndarray]:
    """Split configurations into factors: one per knob (``knob:NAME``), then one per node (``node:NAME``).

    Returns the factor names, each factor's choice labels (sorted) and ``codes`` (K, F): the
    choice index of every candidate per factor. A node a configuration does not run (e.g. the
    checker when the knob turns it off) has the choice ``"absent"``.
    """
    knobs = sorted({k for c in candidates for k in c.get("knobs", {})})
    nodes = sorted({n for c in candidates for n in c.get("nodes", {})})
    names = [f"knob:{k}" for k in knobs] + [f"node:{n}" for n in nodes]
    raw = [[str(c.get("knobs", {}).get(k, "absent")) for k in knobs]
           + [_choice_label(c.get("nodes", {}).get(n)) for n in nodes] for c in candidates]
    labels = [sorted({row[f] for row in raw}) for f in range(len(names))]
    codes = np.array([[labels[f].index(row[f]) for f in range(len(names))] for row in raw], dtype=np.int64)
    return names, labels, codes.reshape(len(candidates), len(names))


# --- static, random, best single -------------------------------------------------------------


class StaticRouter(Router):
    """One estimate per candidate for every query: the train-split means, or the frontier's proxy
    estimates when ``frontier`` is given. Selection is then exactly static frontier selection."""

    def __init__(self, frontier: Frontier | None = None, execution: Execution = "parallel") -> None:
        self.frontier = frontier
        self.execution = execution

    def fit(self, X: np.ndarray, Y: OutcomeMatrix) -> StaticRouter:
        _check_rows(X, Y)
        if self.frontier is None:
            self.means_ = _train_means(Y, self.execution)
            return self
        ids = [c.id for c in self.frontier.candidates]
        if ids != Y.candidate_ids:
            raise RoutingError("the frontier's candidates differ from the outcome matrix's columns",
                               hint="build the outcome matrix from this frontier")
        est = [c.estimates for c in self.frontier.candidates]
        lat = [e.latency_parallel_s if self.execution == "parallel" else e.latency_sequential_s for e in est]
        self.means_ = (
            np.array([e.accuracy for e in est]),
            np.array(lat),
            np.array([e.cost_usd for e in est]),
        )
        return self

    def predict(self, X: np.ndarray, *, hints: Hints = None) -> Predictions:
        self._check_fitted()
        return _broadcast(self.means_, X.shape[0])


class _TrainMeansPolicy(Policy):
    """Shared by the strategies whose predictions are the candidates' train means for every query."""

    def fit(self, X: np.ndarray, Y: OutcomeMatrix) -> _TrainMeansPolicy:
        _check_rows(X, Y)
        self.means_ = _train_means(Y, self.execution)
        return self

    def predict(self, X: np.ndarray, *, hints: Hints = None) -> Predictions:
        self._check_fitted()
        return _broadcast(self.means_, X.shape[0])


class RandomPolicy(_TrainMeansPolicy):
    """A uniformly random candidate per query, among those meeting the preference's hard limits by
    the train-mean estimates (which are also what ``predict`` returns). Deterministic per ``seed``:
    the same seed and the same number of queries give the same choices."""

    def __init__(self, seed: int = 0, execution: Execution = "parallel") -> None:
        self.seed = seed
        self.execution = execution

    def select(
        self, X: np.ndarray, preference: Preference, scale: Scale, *, hints: Hints = None
    ) -> SelectionResult:
        self._check_fitted()
        ok = _meets_limits(*self.means_, preference)
        if not ok.any():  # nothing meets the limits: the usual error or nearest fallback
            return self.select_by_estimates(X, preference, scale, hints=hints)
        allowed = np.flatnonzero(ok)
        rng = np.random.default_rng(self.seed)
        index = allowed[rng.integers(0, len(allowed), size=X.shape[0])]
        return SelectionResult(index, np.ones(len(index), dtype=bool), np.zeros(len(index)))


class BestSinglePolicy(_TrainMeansPolicy):
    """The candidate with the best train-mean accuracy (ties: cheaper, then faster) for every query,
    whatever the preference: the "best single configuration" baseline ignores lambda and limits."""

    def __init__(self, execution: Execution = "parallel") -> None:
        self.execution = execution

    def fit(self, X: np.ndarray, Y: OutcomeMatrix) -> BestSinglePolicy:
        super().fit(X, Y)
        acc, lat, cost = self.means_
        self.best_ = int(_lex_argmin([-acc[None], cost[None], lat[None]])[0])
        return self

    def select(
        self, X: np.ndarray, preference: Preference, scale: Scale, *, hints: Hints = None
    ) -> SelectionResult:
        self._check_fitted()
        q = X.shape[0]
        return SelectionResult(np.full(q, self.best_), np.ones(q, dtype=bool), np.zeros(q))


# --- oracle ----------------------------------------------------------------------------------


class OraclePolicy(Policy):
    """Per-query oracle: an upper bound, NOT a deployable router.

    ``fit(X, Y_eval)`` takes the TRUE outcome matrix of the very queries it will be asked about
    (the evaluation split), and ``predict``/``select`` only answer for those exact features.
    Per query it picks the candidate maximising true ``correct - lambda * normalised(objective)``
    (lambda 0 when unset): at lambda 0 that is the cheapest candidate on the objective axis among
    those correct on that query, or the cheapest overall when none is; for lambda > 0 it is the
    per-query utility optimum, so no router can beat its expected utility. Hard limits are
    checked against the true outcomes.
    """

    def __init__(self, execution: Execution = "parallel") -> None:
        self.execution = execution

    def fit(self, X: np.ndarray, Y: OutcomeMatrix) -> OraclePolicy:
        _check_rows(X, Y)
        self.X_ = np.array(X, copy=True)
        self.truth_ = (Y.correct.copy(), Y.latency(self.execution).copy(), Y.cost_usd.copy())
        return self

    def _check_same_queries(self, X: np.ndarray) -> None:
        self._check_fitted()
        if X.shape != self.X_.shape or not np.array_equal(X, self.X_):
            raise RoutingError(
                "the oracle only answers for the queries it was fitted on",
                hint="fit OraclePolicy on the evaluation split's outcome matrix, then select on it",
            )

    def predict(self, X: np.ndarray, *, hints: Hints = None) -> Predictions:
        self._check_same_queries(X)
        return Predictions(*(a.copy() for a in self.truth_))

    def select(
        self, X: np.ndarray, preference: Preference, scale: Scale, *, hints: Hints = None
    ) -> SelectionResult:
        self._check_same_queries(X)
        acc, lat, cost = self.truth_
        axis = lat if preference.objective == "latency" else cost
        score = utility(acc, axis, preference.lambda_ or 0.0, scale, preference.objective)
        ok = _meets_limits(acc, lat, cost, preference)
        index = _lex_argmin([np.where(ok, -score, np.inf), axis, cost, lat])
        row_ok = ok.any(axis=1)
        if not row_ok.all():  # the usual InfeasibleError, or the nearest candidate
            fallback = select(acc, lat, cost, preference, scale)
            return SelectionResult(np.where(row_ok, index, fallback.index), row_ok,
                                   np.where(row_ok, 0.0, fallback.violation))
        return SelectionResult(index, row_ok, np.zeros(len(index)))


# --- k nearest neighbours --------------------------------------------------------------------


def _unit(E: np.ndarray) -> np.ndarray:
    E = np.asarray(E, dtype=np.float32)
    return E / np.maximum(np.linalg.norm(E, axis=1, keepdims=True), 1e-12)


class KNNRouter(Router):
    """FlowCompile-style router: mean outcomes of the k train queries most cosine-similar to the query.

    Only the first ``embedding_dim`` columns of X (the sentence embedding) are used. With
    ``weighted`` the neighbours are weighted by their (clipped-at-zero) cosine similarity. ``k``
    is chosen from ``k_grid`` on a held-out fraction ``holdout`` of the train split (seeded): the
    k whose selections give the highest realised utility, averaged over a 9-value lambda sweep
    of the train-mean estimates; the router is then refitted on the whole train split.
    """

    def __init__(self, k_grid: tuple[int, ...] = (1, 3, 5, 10, 20, 50), weighted: bool = True,
                 embedding_dim: int = EMBEDDING_DIM, holdout: float = 0.2, seed: int = 0,
                 scale: Scale | None = None, execution: Execution = "parallel") -> None:
        self.k_grid = k_grid
        self.weighted = weighted
        self.embedding_dim = embedding_dim
        self.holdout = holdout
        self.seed = seed
        self.scale = scale
        self.execution = execution

    def fit(self, X: np.ndarray, Y: OutcomeMatrix) -> KNNRouter:
        _check_rows(X, Y)
        if X.shape[1] < self.embedding_dim:
            raise RoutingError(
                f"features have {X.shape[1]} columns, fewer than embedding_dim={self.embedding_dim}",
                hint="pass router.features.featurize output or lower embedding_dim",
            )
        outcomes = np.stack([Y.correct, Y.latency(self.execution), Y.cost_usd], axis=-1)
        emb = _unit(X[:, : self.embedding_dim])
        self.k_scores_ = self._score_ks(emb, outcomes, Y)
        self.k_ = max(self.k_scores_, key=lambda k: (self.k_scores_[k], -k))
        self.embeddings_, self.outcomes_ = emb, outcomes
        return self

    def _score_ks(self, emb: np.ndarray, outcomes: np.ndarray, Y: OutcomeMatrix) -> dict[int, float]:
        n = len(emb)
        n_val = int(round(self.holdout * n))
        if n_val < 1 or n - n_val < 1:
            return {min(self.k_grid[0], n): 0.0}
        perm = np.random.default_rng(self.seed).permutation(n)
        val, fit = perm[:n_val], perm[n_val:]
        ks = sorted({min(k, len(fit)) for k in self.k_grid})
        means = tuple(outcomes[fit].mean(axis=0).T)
        scale = _default_scale(means, self.scale)
        lams = lambda_sweep(scale, *means)
        top, sims = self._neighbours(emb[val], emb[fit], max(ks))
        Yval = Y.rows(val)
        scores = {}
        for k in ks:
            pred = self._weights(top[:, :k], sims[:, :k], len(fit)) @ outcomes[fit].reshape(len(fit), -1)
            acc, lat, cost = np.moveaxis(pred.reshape(len(val), -1, 3), -1, 0)
            scores[k] = float(np.mean([
                realised_utility(Yval, select(acc, lat, cost, Preference(**{"lambda": lam}), scale).index,
                                 lam, scale, self.execution) for lam in lams]))
        return scores

    @staticmethod
    def _neighbours(query: np.ndarray, ref: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Indices and cosine similarities of the ``k`` nearest references, nearest first."""
        sims = query @ ref.T  # (Q, N); rows are unit vectors
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k] if k < sims.shape[1] else np.argsort(-sims, axis=1)
        top_sims = np.take_along_axis(sims, top, axis=1)
        order = np.argsort(-top_sims, axis=1, kind="stable")
        return np.take_along_axis(top, order, axis=1), np.take_along_axis(top_sims, order, axis=1)

    def _weights(self, top: np.ndarray, sims: np.ndarray, n_ref: int) -> np.ndarray:
        """Dense (Q, N) row-normalised neighbour weights, so a prediction is one matrix product."""
        w = np.maximum(sims, 0.0) + 1e-6 if self.weighted else np.ones_like(sims)
        W = np.zeros((len(top), n_ref))
        np.put_along_axis(W, top, w / w.sum(axis=1, keepdims=True), axis=1)
        return W

    def predict(self, X: np.ndarray, *, hints: Hints = None, chunk: int = 1024) -> Predictions:
        self._check_fitted()
        emb = _unit(X[:, : self.embedding_dim])
        n_ref = len(self.embeddings_)
        k = min(self.k_, n_ref)
        flat = self.outcomes_.reshape(n_ref, -1)
        parts = []
        for i in range(0, len(emb), chunk):  # chunks keep the (chunk, N) similarity block small
            top, sims = self._neighbours(emb[i : i + chunk], self.embeddings_, k)
            parts.append(self._weights(top, sims, n_ref) @ flat)
        acc, lat, cost = np.moveaxis(np.concatenate(parts).reshape(len(emb), -1, 3), -1, 0)
        return Predictions(np.clip(acc, 0.0, 1.0), lat, cost)  # clip: rounding of the weighted mean


# --- factorised full-space router ------------------------------------------------------------


class FactorisedPolicy(Policy):
    """Full-space router, factorised per node and per knob.

    Candidates are a uniform sample of the whole design space. For each factor (knob or node,
    :func:`config_factors`) and each of its choices, the per-query target is the mean outcome over
    the candidates making that choice (marginalising the other factors; near-unbiased because the
    sample is uniform). One multi-output ridge regression on standardised X (closed form, one
    solve; ``alpha`` fixed) learns every (factor, choice) target for accuracy, latency and cost.

    ``predict`` composes additively (main effects): a candidate's estimate is the query's overall
    mean plus, per factor, its choice's deviation from it. ``select`` under a lambda picks each
    factor's choice independently by ``acc - lambda * normalised(objective)``; when that composed
    configuration is not a column of the matrix it maps to the nearest one (fewest differing
    factors, ties: higher composed score). Under hard limits it uses the per-candidate estimates.
    """

    def __init__(self, alpha: float = 10.0, execution: Execution = "parallel") -> None:
        self.alpha = alpha
        self.execution = execution

    def fit(self, X: np.ndarray, Y: OutcomeMatrix) -> FactorisedPolicy:
        _check_rows(X, Y)
        self.factors_, self.labels_, self.codes_ = config_factors(Y.candidates)
        self.offsets_ = offsets = np.cumsum([0] + [len(v) for v in self.labels_])
        self.columns_ = self.codes_ + offsets[:-1]  # (K, F) column of each candidate's choice
        marg = np.zeros((len(Y.candidate_ids), offsets[-1] + 1))
        for f in range(len(self.factors_)):  # a loop over the few factors
            onehot = np.eye(len(self.labels_[f]))[self.codes_[:, f]]
            marg[:, offsets[f] : offsets[f + 1]] = onehot / onehot.sum(axis=0)
        marg[:, -1] = 1.0 / len(Y.candidate_ids)  # the overall mean
        targets = np.concatenate(
            [m @ marg for m in (Y.correct, Y.latency(self.execution), Y.cost_usd)], axis=1
        )
        self.mu_, self.sd_ = X.mean(axis=0), X.std(axis=0) + 1e-6
        Z = np.hstack([(X - self.mu_) / self.sd_, np.ones((len(X), 1))])
        reg = self.alpha * np.eye(Z.shape[1])
        reg[-1, -1] = 0.0  # the intercept is not shrunk
        self.coef_ = np.linalg.solve(Z.T @ Z + reg, Z.T @ targets)
        return self

    def _factor_estimates(self, X: np.ndarray) -> tuple[np.ndarray, ...]:
        """Per metric, (Q, T+1) estimates of every (factor, choice) mean plus the overall mean."""
        self._check_fitted()
        Z = np.hstack([(X - self.mu_) / self.sd_, np.ones((len(X), 1))])
        return tuple(np.split(Z @ self.coef_, 3, axis=1))

    def predict(self, X: np.ndarray, *, hints: Hints = None) -> Predictions:
        out = []
        for est in self._factor_estimates(X):
            overall = est[:, -1:]
            out.append(overall + (est[:, self.columns_] - overall[..., None]).sum(axis=2))
        acc, lat, cost = out
        return Predictions(np.clip(acc, 0.0, 1.0), np.maximum(lat, 0.0), np.maximum(cost, 0.0))

    def select(
        self, X: np.ndarray, preference: Preference, scale: Scale, *, hints: Hints = None
    ) -> SelectionResult:
        if preference.has_limits:
            return self.select_by_estimates(X, preference, scale, hints=hints)
        acc, lat, cost = self._factor_estimates(X)
        axis = lat if preference.objective == "latency" else cost
        score = utility(acc, axis, preference.lambda_, scale, preference.objective)  # (Q, T+1)
        bounds = zip(self.offsets_[:-1], self.offsets_[1:], strict=True)
        composed = np.array([np.argmax(score[:, lo:hi], axis=1) for lo, hi in bounds], dtype=np.int64)
        composed = composed.T.reshape(len(X), len(self.factors_))  # (Q, F) choice per factor
        distance = (self.codes_[None, :, :] != composed[:, None, :]).sum(axis=2)  # (Q, K) differing factors
        pred = self.predict(X)
        cand_axis = pred.latency_s if preference.objective == "latency" else pred.cost_usd
        cand_score = utility(pred.accuracy, cand_axis, preference.lambda_, scale, preference.objective)
        index = _lex_argmin([distance, -cand_score, pred.cost_usd, pred.latency_s])
        return SelectionResult(index, np.ones(len(index), dtype=bool), np.zeros(len(index)))
