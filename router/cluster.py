"""The field's simplest strong router: clusters of train queries (Avengers-Pro style).

k-means over the same MiniLM embeddings the other routers use; per cluster and candidate the
mean train outcome (accuracy, latency, cost). A query's estimate is the size-weighted mean over
its ``top`` nearest cluster centres (cosine), and selection is the contract's ``select`` on
those estimates: the best utility under the preference. The cluster count and ``top`` are
chosen on a held-out fraction of the train split (seeded) by realised utility averaged over a
lambda sweep, then the router is refitted on the whole train split. Training-free apart from
k-means: no boosting, no gradient steps.

>>> # router = ClusterRouter(seed=0).fit(X_train, Y_train)
>>> # router.select(X_test, Preference(lambda_=0.2), scale).index
"""

from __future__ import annotations

import numpy as np

from flowfront.errors import RoutingError
from flowfront.router.base import Hints, OutcomeMatrix, Predictions, Router
from flowfront.router.baselines import _check_rows, _default_scale, _unit, realised_utility
from flowfront.router.features import EMBEDDING_DIM
from flowfront.router.select import Preference, Scale, lambda_sweep, select
from flowfront.spec import Execution

__all__ = ["ClusterRouter"]


class ClusterRouter(Router):
    """Avengers-Pro-style cluster router (see the module docstring)."""

    def __init__(
        self,
        n_clusters_grid: tuple[int, ...] = (4, 8, 16, 32, 64),
        top_grid: tuple[int, ...] = (1, 3),
        min_cluster_queries: int = 3,
        embedding_dim: int = EMBEDDING_DIM,
        holdout: float = 0.2,
        seed: int = 0,
        scale: Scale | None = None,
        execution: Execution = "parallel",
    ) -> None:
        self.n_clusters_grid = n_clusters_grid
        self.top_grid = top_grid
        self.min_cluster_queries = min_cluster_queries
        self.embedding_dim = embedding_dim
        self.holdout = holdout
        self.seed = seed
        self.scale = scale
        self.execution = execution

    def fit(self, X: np.ndarray, Y: OutcomeMatrix) -> ClusterRouter:
        _check_rows(X, Y)
        if X.shape[1] < self.embedding_dim:
            raise RoutingError(
                f"features have {X.shape[1]} columns, fewer than embedding_dim={self.embedding_dim}",
                hint="pass router.features.featurize output or lower embedding_dim",
            )
        emb = _unit(X[:, : self.embedding_dim])
        outcomes = np.stack([Y.correct, Y.latency(self.execution), Y.cost_usd], axis=-1)  # (N, K, 3)
        self.grid_scores_ = self._score_grid(emb, outcomes, Y)
        (self.n_clusters_, self.top_), _ = max(
            self.grid_scores_.items(), key=lambda kv: (kv[1], -kv[0][0], -kv[0][1])
        )
        self.centres_, self.sizes_, self.means_ = self._clusters(emb, outcomes, self.n_clusters_)
        return self

    def _usable(self, n: int) -> list[int]:
        return sorted({c for c in self.n_clusters_grid if c * self.min_cluster_queries <= n} or {1})

    def _clusters(self, emb: np.ndarray, outcomes: np.ndarray, k: int):
        """Unit centres (k, D), cluster sizes (k,) and per-cluster mean outcomes (k, K, 3)."""
        from sklearn.cluster import KMeans

        k = min(k, len(emb))
        labels = (
            KMeans(n_clusters=k, n_init=4, random_state=self.seed).fit_predict(emb)
            if k > 1
            else np.zeros(len(emb), int)
        )
        sizes = np.bincount(labels, minlength=k).astype(float)
        onehot = np.eye(k)[labels]  # (N, k)
        means = np.einsum("nc,nkm->ckm", onehot, outcomes) / np.maximum(sizes, 1.0)[:, None, None]
        centres = _unit(onehot.T @ emb / np.maximum(sizes, 1.0)[:, None])
        return centres, sizes, means

    def _estimate(self, emb: np.ndarray, centres, sizes, means, top: int) -> np.ndarray:
        """(Q, K, 3): size-weighted mean outcomes of each query's ``top`` nearest centres."""
        sims = emb @ centres.T  # (Q, k)
        top = min(top, len(centres))
        nearest = np.argsort(-sims, axis=1, kind="stable")[:, :top]
        w = sizes[nearest]
        w = w / w.sum(axis=1, keepdims=True)
        return np.einsum("qt,qtkm->qkm", w, means[nearest])

    def _score_grid(
        self, emb: np.ndarray, outcomes: np.ndarray, Y: OutcomeMatrix
    ) -> dict[tuple[int, int], float]:
        n = len(emb)
        n_val = int(round(self.holdout * n))
        grid = [(c, t) for c in self._usable(n) for t in self.top_grid if t <= c]
        if n_val < 1 or n - n_val < self.min_cluster_queries:
            return {grid[0]: 0.0}
        perm = np.random.default_rng(self.seed).permutation(n)
        val, fit = perm[:n_val], perm[n_val:]
        means = tuple(outcomes[fit].mean(axis=0).T)
        scale = _default_scale(means, self.scale)
        lams = lambda_sweep(scale, *means)
        Yval = Y.rows(val)
        scores = {}
        for c in sorted({c for c, _ in grid}):
            if c * self.min_cluster_queries > len(fit):
                continue
            fitted = self._clusters(emb[fit], outcomes[fit], c)
            for t in (t for cc, t in grid if cc == c):
                acc, lat, cost = np.moveaxis(self._estimate(emb[val], *fitted, t), -1, 0)
                scores[(c, t)] = float(np.mean([
                    realised_utility(Yval, select(acc, lat, cost, Preference(**{"lambda": lam}), scale).index,
                                     lam, scale, self.execution) for lam in lams]))
        return scores or {grid[0]: 0.0}

    def predict(self, X: np.ndarray, *, hints: Hints = None) -> Predictions:
        self._check_fitted()
        emb = _unit(X[:, : self.embedding_dim])
        acc, lat, cost = np.moveaxis(
            self._estimate(emb, self.centres_, self.sizes_, self.means_, self.top_), -1, 0
        )
        return Predictions(np.clip(acc, 0.0, 1.0), lat, cost)
