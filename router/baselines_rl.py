"""MasRouter-style and MaAS-style baselines: factorised policies trained with REINFORCE, offline.

Both are trained OFFLINE from the outcome matrix: an episode samples a candidate for a train
query and looks its reward up in the matrix; nothing is executed. The reward is
``correct - lambda * normalised(objective)`` with lambda drawn per episode, log-uniformly from
``lambda_range`` (with probability 1/4 exactly 0), and fed to the policy as an input, so one policy
serves every preference. The baseline is a running mean of the reward.

The policy is log-linear over the matrix's candidates: each factor (a knob, or a node's
(model, budget) item) has logits ``u(q, lambda)^T W_f e_item`` (a bilinear form of the query
features and the item embedding, ``u`` = PCA-reduced query embedding, lambda and a bias), and a
candidate's probability is the normalised product of its factors' probabilities. Because the
normalisation runs over the candidates that exist, the exact score-function gradient for
``W_f`` is ``u (e_chosen - E_P[e])^T`` times the advantage; it is computed in closed form with
numpy, and Adam takes the steps.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from flowfront.errors import RoutingError
from flowfront.router.base import Hints, OutcomeMatrix, Policy, Predictions
from flowfront.router.baselines import (
    BestSinglePolicy,
    _broadcast,
    _check_rows,
    _meets_limits,
    _train_means,
    config_factors,
)
from flowfront.router.features import EMBEDDING_DIM
from flowfront.router.select import Preference, Scale, SelectionResult, lambda_sweep
from flowfront.spec import Execution

__all__ = ["MaasStyle", "MasRouterStyle"]

Embed = Callable[[Sequence[str]], np.ndarray]


def _item_text(factor: str, label: str) -> str:
    """A sentence describing one choice, for the embedder (e.g. "node answer uses model claude-v2 ...")."""
    kind, name = factor.split(":", 1)
    if kind == "knob":
        return f"knob {name} set to {label}"
    if label == "absent":
        return f"node {name} is not run"
    calls = [c.split("@") for c in label.split(";")]
    parts = [f"model {m} with {'unlimited' if b == 'unlimited' else b + ' token'} budget" for m, b in calls]
    return f"node {name} uses {' and '.join(parts)}"


def _softmax(S: np.ndarray) -> np.ndarray:
    e = np.exp(S - S.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


class _ReinforcePolicy(Policy):
    """Shared machinery; subclasses choose the factors and the candidates the policy ranges over."""

    def __init__(self, embed: Embed | None = None, lambda_range: tuple[float, float] | None = None,
                 n_components: int = 32, steps: int = 600, batch_size: int = 256, learning_rate: float = 0.05,
                 seed: int = 0, embedding_dim: int = EMBEDDING_DIM, objective: str = "latency",
                 scale: Scale | None = None, execution: Execution = "parallel") -> None:
        self.embed = embed
        self.lambda_range = lambda_range
        self.n_components = n_components
        self.steps = steps
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.seed = seed
        self.embedding_dim = embedding_dim
        self.objective = objective
        self.scale = scale
        self.execution = execution

    def _policy_space(self, Y: OutcomeMatrix) -> tuple[np.ndarray, list[str], list[int] | None]:
        """Candidate columns the policy ranges over and which factors of ``config_factors`` it uses."""
        raise NotImplementedError

    def fit(self, X: np.ndarray, Y: OutcomeMatrix) -> _ReinforcePolicy:
        _check_rows(X, Y)
        self.means_ = _train_means(Y, self.execution)
        scale = self.scale if self.scale is not None else Scale.from_estimates(self.means_[1], self.means_[2])
        self.columns_, used = self._policy_space(Y)
        names, labels, codes = config_factors([Y.candidates[j] for j in self.columns_])
        keep = [f for f, n in enumerate(names) if n in used]
        self.factors_ = [names[f] for f in keep]
        self.labels_ = [labels[f] for f in keep]
        self.codes_ = codes[:, keep]
        self.items_ = [
            self._item_embeddings(f, lab) for f, lab in zip(self.factors_, self.labels_, strict=True)
        ]
        lo, hi = self.lambda_range or (
            0.0,
            float(lambda_sweep(scale, *self.means_, objective=self.objective).max()),
        )
        self.lambda_bounds_ = (lo, max(hi, lo, 1e-6))
        self._fit_projection(X)
        axis = Y.latency(self.execution) if self.objective == "latency" else Y.cost_usd
        penalty = scale.normalise(axis[:, self.columns_], self.objective)
        self._train(self._query_features(X), Y.correct[:, self.columns_], penalty)
        return self

    def _item_embeddings(self, factor: str, labels: list[str]) -> np.ndarray:
        """(n_items, d+1): the embedded item descriptions (one-hot when no ``embed``) plus a bias."""
        if self.embed is None:
            E = np.eye(len(labels))
        else:
            E = np.asarray(self.embed([_item_text(factor, lab) for lab in labels]), dtype=np.float64)
            if E.shape[0] != len(labels):
                raise RoutingError(f"embed returned {E.shape[0]} vectors for {len(labels)} texts",
                                   hint="pass an embed callable mapping a list of texts to an (n, d) array")
        return np.hstack([E, np.ones((len(labels), 1))])

    def _fit_projection(self, X: np.ndarray) -> None:
        E = np.asarray(X[:, : self.embedding_dim], dtype=np.float64)
        self.pca_mean_ = E.mean(axis=0)
        _, s, vt = np.linalg.svd(E - self.pca_mean_, full_matrices=False)
        k = min(self.n_components, len(s))
        self.pca_ = vt[:k].T / np.maximum(s[:k] / np.sqrt(len(E)), 1e-6)  # whitened components

    def _query_features(self, X: np.ndarray) -> np.ndarray:
        return (np.asarray(X[:, : self.embedding_dim], dtype=np.float64) - self.pca_mean_) @ self.pca_

    def _inputs(self, Zq: np.ndarray, lam: np.ndarray) -> np.ndarray:
        return np.hstack([Zq, (lam / self.lambda_bounds_[1])[:, None], np.ones((len(Zq), 1))])

    def _probabilities(self, U: np.ndarray, weights: list[np.ndarray]) -> np.ndarray:
        """(B, K') candidate probabilities: the normalised product of factor probabilities."""
        S = np.zeros((len(U), len(self.codes_)))
        for f, (W, E) in enumerate(zip(weights, self.items_, strict=True)):  # a loop over factors
            S += (U @ W @ E.T)[:, self.codes_[:, f]]
        return _softmax(S)

    def _sample_lambdas(self, rng: np.random.Generator, n: int) -> np.ndarray:
        lo, hi = self.lambda_bounds_
        lam = np.exp(rng.uniform(np.log(max(lo, hi * 1e-3)), np.log(hi), size=n))
        return np.where(rng.random(n) < 0.25, lo, lam)

    def _train(self, Zq: np.ndarray, correct: np.ndarray, penalty: np.ndarray) -> None:
        rng = np.random.default_rng(self.seed)
        dim = Zq.shape[1] + 2
        self.weights_ = [rng.normal(0.0, 0.01, size=(dim, E.shape[1])) for E in self.items_]
        onehots = [np.eye(E.shape[0])[self.codes_[:, f]] for f, E in enumerate(self.items_)]  # (K', n_f)
        moments = [(np.zeros_like(W), np.zeros_like(W)) for W in self.weights_]
        baseline, history = 0.0, []
        for step in range(1, self.steps + 1 if len(self.codes_) > 1 else 1):
            rows = rng.integers(0, len(Zq), size=self.batch_size)
            lam = self._sample_lambdas(rng, self.batch_size)
            U = self._inputs(Zq[rows], lam)
            P = self._probabilities(U, self.weights_)
            chosen = (P.cumsum(axis=1) < rng.random((len(P), 1))).sum(axis=1).clip(max=P.shape[1] - 1)
            reward = correct[rows, chosen] - lam * penalty[rows, chosen]
            adv = reward - baseline
            baseline = reward.mean() if step == 1 else 0.9 * baseline + 0.1 * reward.mean()
            history.append(float(reward.mean()))
            for f, (W, E, H) in enumerate(zip(self.weights_, self.items_, onehots, strict=True)):
                grad = U.T @ ((adv[:, None] * (H[chosen] - P @ H)) @ E) / len(U)
                self.weights_[f] = self._adam(W, grad, moments[f], step)
        self.reward_history_ = np.asarray(history)

    def _adam(
        self, W: np.ndarray, grad: np.ndarray, moment: tuple[np.ndarray, np.ndarray], step: int
    ) -> np.ndarray:
        m, v = moment
        m *= 0.9
        m += 0.1 * grad
        v *= 0.999
        v += 0.001 * grad**2
        update = (m / (1 - 0.9**step)) / (np.sqrt(v / (1 - 0.999**step)) + 1e-8)
        return W + self.learning_rate * update  # ascent: REINFORCE maximises the reward

    def policy(self, X: np.ndarray, lam: float) -> np.ndarray:
        """(Q, K) probability of each candidate of the matrix at ``lam`` (0 outside the policy's space)."""
        self._check_fitted()
        U = self._inputs(self._query_features(X), np.full(len(X), float(lam)))
        out = np.zeros((len(X), len(self.means_[0])))
        out[:, self.columns_] = self._probabilities(U, self.weights_)
        return out

    def predict(self, X: np.ndarray, *, hints: Hints = None) -> Predictions:
        """The train-mean outcomes per candidate: the policy has no value head, it only ranks."""
        self._check_fitted()
        return _broadcast(self.means_, X.shape[0])

    def select(
        self, X: np.ndarray, preference: Preference, scale: Scale, *, hints: Hints = None
    ) -> SelectionResult:
        """The policy's most probable candidate at the preference's lambda; under hard limits the most
        probable one meeting them by the train-mean estimates (none: the usual error/nearest rule)."""
        self._check_fitted()
        if preference.objective != self.objective:
            raise RoutingError(f"{type(self).__name__} was trained for objective {self.objective!r}",
                               hint=f"fit it with objective={preference.objective!r}")
        P = self.policy(X, preference.lambda_ or 0.0)
        ok = _meets_limits(*self.means_, preference) & np.isin(np.arange(P.shape[1]), self.columns_)
        if not ok.any():
            return self.select_by_estimates(X, preference, scale, hints=hints)
        index = np.argmax(np.where(ok, P, -1.0), axis=1)
        return SelectionResult(index, np.ones(len(index), dtype=bool), np.zeros(len(index)))


class MasRouterStyle(_ReinforcePolicy):
    """MasRouter-style cascaded controller over the structure knobs, then each node's (model, budget).

    Items are described in words and embedded with ``embed`` (pass the MiniLM embedder's
    ``encode``); without it items are one-hot, i.e. the bilinear form degenerates to per-item
    linear heads. Trained OFFLINE from the outcome matrix by REINFORCE (module docstring).
    Differences from the MasRouter paper: no LLM is run during training (rewards are looked up);
    the policy ranges over the matrix's candidates only, not every combination; the cascade's
    stages (collaboration mode, roles, LLMs) become knob and node factors scored jointly by a
    log-linear policy rather than sampled stage by stage with separate networks; no role
    prompts; the query encoder is frozen MiniLM plus PCA, not fine-tuned; one policy serves all
    lambdas by taking lambda as input instead of one fixed cost weight.
    """

    def _policy_space(self, Y: OutcomeMatrix) -> tuple[np.ndarray, list[str]]:
        names, _, _ = config_factors(Y.candidates)
        return np.arange(len(Y.candidate_ids)), names


class MaasStyle(_ReinforcePolicy):
    """MaAS-style query-conditioned sampler over the STRUCTURE knobs only, with the model fixed.

    ``model`` (default: the most used model of the best-single candidate) is the model every
    node should use; for each knob assignment present in the matrix the policy's candidate is
    the one with the most nodes on that model (ties: higher train-mean accuracy, then cheaper).
    Trained OFFLINE from the outcome matrix by REINFORCE (module docstring). Differences from the
    MaAS paper: the operator "layers" are the workflow's knobs (no CoT / debate / self-refine
    operators, no early-exit operator), sampled jointly rather than layer by layer conditioned on
    the previous layers; the supernet's operator probabilities come from a bilinear form instead
    of a learned mixture; rewards are looked up, not executed; no textual-gradient operator
    updates; lambda is an input, so one policy serves every cost weight.
    """

    def __init__(self, model: str | None = None, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.model = model

    def _policy_space(self, Y: OutcomeMatrix) -> tuple[np.ndarray, list[str]]:
        names, labels, codes = config_factors(Y.candidates)
        knob_f = [f for f, n in enumerate(names) if n.startswith("knob:")]
        self.model_ = self.model or self._best_single_model(Y)
        acc, _, cost = _train_means(Y, self.execution)
        share = np.array([self._model_share(c, self.model_) for c in Y.candidates])
        order = np.lexsort((cost, -acc, -share))  # best representative first
        seen: dict[tuple[int, ...], int] = {}
        for j in order:  # K is small (a frontier or a sample); one pass picks each assignment's first
            seen.setdefault(tuple(codes[j, knob_f]), int(j))
        return np.array(sorted(seen.values())), [names[f] for f in knob_f]

    def _best_single_model(self, Y: OutcomeMatrix) -> str:
        best = BestSinglePolicy(execution=self.execution).fit(np.zeros((len(Y.query_ids), 1)), Y).best_
        models = [c["model"] for s in Y.candidates[best].get("nodes", {}).values()
                  for c in (s if isinstance(s, list) else [s])]
        if not models:
            raise RoutingError("the best single candidate runs no model", hint="pass MaasStyle(model=...)")
        return max(sorted(set(models)), key=models.count)

    @staticmethod
    def _model_share(config: dict, model: str) -> float:
        calls = [c for s in config.get("nodes", {}).values() for c in (s if isinstance(s, list) else [s])]
        return sum(c["model"] == model for c in calls) / max(len(calls), 1)
