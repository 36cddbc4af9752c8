"""The router's query-side parts: the query map (principal components of the embedding, text
statistics, a group distribution), empirical-Bayes group means, probability calibration maps
and the small numeric helpers they share. Everything learned is plain arrays, so the artifact
stores it as JSON (no pickle).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "QueryMap",
    "apply_calibration",
    "brier",
    "fit_calibration_map",
    "group_means",
    "logit",
    "nn_cosine_distance",
    "sigmoid",
    "soft_log_loss",
    "unit_rows",
]

_EPS = 1e-6


# --- small numeric helpers -------------------------------------------------------------------


def logit(p: np.ndarray, eps: float = _EPS) -> np.ndarray:
    p = np.clip(p, eps, 1.0 - eps)
    return np.log(p / (1.0 - p))


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def soft_log_loss(p: np.ndarray, s: np.ndarray) -> float:
    """Mean cross-entropy of probabilities p against soft labels s."""
    p = np.clip(p, _EPS, 1.0 - _EPS)
    return float(-np.mean(s * np.log(p) + (1.0 - s) * np.log(1.0 - p)))


def brier(p: np.ndarray, s: np.ndarray) -> float:
    """Mean squared error of probabilities against (soft) outcomes."""
    return float(np.mean((p - s) ** 2))


# --- calibration -----------------------------------------------------------------------------


def apply_calibration(p: np.ndarray, calibration: dict[str, Any]) -> np.ndarray:
    """Map raw probabilities through a stored calibration (``identity``, ``platt``, ``isotonic``)."""
    method = calibration["method"]
    if method == "isotonic":
        return np.interp(p, calibration["x"], calibration["y"])
    if method == "platt":
        return sigmoid(calibration["a"] * logit(p) + calibration["b"])
    return p


def fit_calibration_map(method: str, p: np.ndarray, s: np.ndarray) -> dict[str, Any]:
    """A calibration map as plain numbers, so it serialises to JSON."""
    if method == "isotonic":
        from sklearn.isotonic import IsotonicRegression

        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(p, s)
        return {"method": "isotonic", "x": iso.X_thresholds_.tolist(), "y": iso.y_thresholds_.tolist()}
    if method == "platt":
        from sklearn.linear_model import LogisticRegression

        pos, neg = s > 0.0, s < 1.0  # soft labels: a positive row weighted s, a negative row 1 - s
        z = np.concatenate([logit(p[pos]), logit(p[neg])])[:, None]
        labels = np.concatenate([np.ones(pos.sum()), np.zeros(neg.sum())])
        if len(np.unique(labels)) < 2:  # one class only: nothing to rescale
            return {"method": "identity"}
        lr = LogisticRegression(C=1e6).fit(z, labels, sample_weight=np.concatenate([s[pos], 1.0 - s[neg]]))
        return {"method": "platt", "a": float(lr.coef_[0, 0]), "b": float(lr.intercept_[0])}
    return {"method": "identity"}


# --- the query map ---------------------------------------------------------------------------


class QueryMap:
    """Learned query features: standardised principal components of the embedding plus the text
    statistics (``Z``), and a distribution over groups (``G``) from a multinomial logistic model.

    Everything it learns is plain arrays, so :meth:`state` is JSON-ready and :meth:`from_state`
    rebuilds it exactly; transforming a query is two small matrix products.
    """

    def __init__(self, *, n_components: int = 32, embedding_dim: int = 384, n_clusters: int = 16,
                 seed: int = 0, min_cluster_queries: int = 10) -> None:
        self.n_components = n_components
        self.embedding_dim = embedding_dim
        self.n_clusters = n_clusters
        self.seed = seed
        self.min_cluster_queries = min_cluster_queries

    def fit(self, X: np.ndarray, groups: np.ndarray | None) -> QueryMap:
        """Learn the projection and the group model; ``groups`` None means k-means clusters."""
        d = self.embedding_dim
        E = X[:, :d].astype(np.float64)
        self.center_ = E.mean(axis=0)
        k = min(self.n_components, *E.shape)
        # Right singular vectors are the principal axes; one SVD of a (Q, 384) matrix is cheap.
        self.components_ = np.linalg.svd(E - self.center_, full_matrices=False)[2][:k]
        raw = np.hstack([(E - self.center_) @ self.components_.T, X[:, d:]])
        self.mu_, self.sd_ = raw.mean(axis=0), raw.std(axis=0) + 1e-6
        Z = (raw - self.mu_) / self.sd_
        labels = self._cluster(raw[:, :k]) if groups is None else np.asarray(groups).astype(str)
        self.labels_ = labels  # fit rows only; not part of the state
        self.groups_ = sorted(set(labels.tolist()))
        self.coef_, self.intercept_ = self._fit_classifier(Z, labels)
        return self

    def _cluster(self, P: np.ndarray) -> np.ndarray:
        from sklearn.cluster import KMeans

        # A cluster needs queries enough for its mean to be one: 16 clusters of 23 live-math queries
        # made the prior a per-query memory that did not carry to new queries.
        n = min(self.n_clusters, max(1, len(P) // self.min_cluster_queries))
        km = KMeans(n_clusters=n, n_init=3, random_state=self.seed).fit(P)
        return np.array([f"cluster{c:02d}" for c in km.labels_])

    def _fit_classifier(self, Z: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if len(self.groups_) == 1:  # one group: every query belongs to it
            return np.zeros((1, Z.shape[1])), np.zeros(1)
        from sklearn.linear_model import LogisticRegression

        clf = LogisticRegression(C=1.0, max_iter=500).fit(Z, labels)
        coef, intercept = clf.coef_, clf.intercept_
        if len(self.groups_) == 2:  # sklearn keeps one logit for two classes; make it a softmax pair
            coef, intercept = np.vstack([np.zeros_like(coef), coef]), np.concatenate([[0.0], intercept])
        return coef, intercept

    def transform(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(Z, G): standardised features (Q, n_components + stats) and group probabilities (Q, groups)."""
        d = self.embedding_dim
        raw = np.hstack([(X[:, :d] - self.center_) @ self.components_.T, X[:, d:]])
        Z = (raw - self.mu_) / self.sd_
        return Z, _softmax(Z @ self.coef_.T + self.intercept_)

    def state(self) -> dict[str, Any]:
        """Parameters and learned arrays as JSON-ready lists."""
        params = {
            "n_components": self.n_components,
            "embedding_dim": self.embedding_dim,
            "n_clusters": self.n_clusters,
            "seed": self.seed,
            "min_cluster_queries": self.min_cluster_queries,
        }
        arrays = {
            name: getattr(self, name).tolist()
            for name in ("center_", "components_", "mu_", "sd_", "coef_", "intercept_")
        }
        return {"params": params, "groups": list(self.groups_), **arrays}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> QueryMap:
        qmap = cls(**state["params"])
        qmap.groups_ = list(state["groups"])
        for name in ("center_", "components_", "mu_", "sd_", "coef_", "intercept_"):
            setattr(qmap, name, np.asarray(state[name], dtype=np.float64))
        k, d, g = len(qmap.components_), qmap.embedding_dim, len(qmap.groups_)
        width = len(qmap.mu_)
        shapes = {
            "center_": (d,),
            "components_": (k, d),
            "sd_": (width,),
            "coef_": (g, width),
            "intercept_": (g,),
        }
        bad = [n for n, shape in shapes.items() if getattr(qmap, n).shape != shape]
        if bad or width < k:
            raise ValueError(
                f"query map arrays {bad or ['mu_']} do not fit {k} components, {d} dims, {g} groups"
            )
        return qmap


def group_means(V: np.ndarray, G: np.ndarray, strength: float) -> np.ndarray:
    """(groups, K) means of V (Q, K) under soft memberships G (Q, groups), each shrunk towards the
    overall mean by ``strength`` pseudo-queries (empirical Bayes: small groups borrow strength)."""
    overall = V.mean(axis=0)
    mass = G.sum(axis=0)[:, None]
    return (G.T @ V + strength * overall) / (mass + strength)


def nn_cosine_distance(queries: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Per query row, 1 - the largest cosine similarity to any reference row (both (n, d))."""
    q = unit_rows(queries.astype(np.float32, copy=False))
    r = unit_rows(reference.astype(np.float32, copy=False))
    return 1.0 - (q @ r.T).max(axis=1)


def unit_rows(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def choose_calibration(p: np.ndarray, s: np.ndarray, seed: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Identity, Platt or isotonic, whichever has the lowest 2-fold cross-fitted Brier score on
    these (queries x candidates) probabilities ``p`` and outcomes ``s``; fitted on all of them."""
    half = np.random.default_rng(seed).permutation(len(p)) < len(p) // 2
    scores = {}
    for method in ("identity", "platt", "isotonic"):
        out = np.empty_like(p)
        for part in (half, ~half):  # fit on one half of the queries, score on the other
            out[part] = apply_calibration(
                p[part], fit_calibration_map(method, p[~part].ravel(), s[~part].ravel())
            )
        scores[method] = brier(out, s)
    method = min(scores, key=scores.get)
    return fit_calibration_map(method, p.ravel(), s.ravel()), {"calib_brier": scores, "calibration": method,
                                                              "calib_rows": int(len(p))}
