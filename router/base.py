"""The router contract, and the outcome matrix every strategy learns from.

A router estimates, per query, how each candidate configuration will do; selection turns those
estimates into a choice with the same rules static selection uses (``router.select``). Concrete
strategies implement ``fit`` and ``predict`` only (RouteLLM's abstract score / concrete route split).
scikit-learn conventions: ``__init__`` stores parameters, ``fit`` returns ``self``, learned
attributes end in ``_``.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from flowfront.artifacts import Artifact, Provenance, read_npz, write_npz
from flowfront.errors import RoutingError
from flowfront.router.select import Preference, Scale, SelectionResult, select, utility
from flowfront.spec import Execution

OUTCOMES_SCHEMA = 3  # 2: per-query task labels; 3: an Artifact header with provenance

# Per query, the caller's task / domain label or None. A policy that learned groups from task
# labels (``Policy.hint_groups``) uses a known one as the query's group; the others ignore hints.
Hints = Sequence[str | None] | None


class OutcomesHeader(Artifact):
    """What an ``.npz`` outcome matrix says besides its arrays; ``provenance.data_hash`` is the
    matrix's ``source_hash``."""

    ERROR = RoutingError
    REBUILD = "re-run `flowfront train`"
    kind: Literal["outcomes"] = "outcomes"
    schema_version: Literal[3] = OUTCOMES_SCHEMA
    query_ids: list[str]
    texts: list[str]
    candidate_ids: list[str]
    candidates: list[dict[str, Any]]
    tasks: list[str] | None


@dataclass(frozen=True)
class OutcomeMatrix:
    """Y[query, candidate]: correctness, latency under both execution models, and cost.

    ``candidates`` are configuration dicts (frontier candidates, or a sample of the whole space for
    the full-space router); ``candidate_ids`` name them. ``source_hash`` is the hash of the
    frontier (or sample) the columns come from, so a matrix is never paired with other candidates.
    """

    query_ids: list[str]
    texts: list[str]
    candidate_ids: list[str]
    candidates: list[dict]
    correct: np.ndarray  # (Q, K) in [0, 1]
    latency_sequential_s: np.ndarray  # (Q, K)
    latency_parallel_s: np.ndarray  # (Q, K)
    cost_usd: np.ndarray  # (Q, K)
    source_hash: str
    tasks: list[str] | None = None  # per query, when the data labels them (the router's groups)

    def __post_init__(self) -> None:
        q, k = len(self.query_ids), len(self.candidate_ids)
        if q == 0 or k == 0:
            raise RoutingError("an outcome matrix needs at least one query and one candidate",
                               hint="check the split is not empty and the frontier has candidates")
        for name in ("correct", "latency_sequential_s", "latency_parallel_s", "cost_usd"):
            if getattr(self, name).shape != (q, k):
                raise RoutingError(
                    f"outcome matrix field {name} has shape {getattr(self, name).shape}, expected {(q, k)}"
                )

    def latency(self, execution: Execution) -> np.ndarray:
        return self.latency_parallel_s if execution == "parallel" else self.latency_sequential_s

    def rows(self, index: np.ndarray) -> OutcomeMatrix:
        """The matrix restricted to some queries (folds, bootstrap samples)."""
        idx = np.asarray(index)
        return OutcomeMatrix(
            [self.query_ids[i] for i in idx],
            [self.texts[i] for i in idx],
            self.candidate_ids,
            self.candidates,
            self.correct[idx],
            self.latency_sequential_s[idx],
            self.latency_parallel_s[idx],
            self.cost_usd[idx],
            self.source_hash,
            None if self.tasks is None else [self.tasks[i] for i in idx],
        )

    def save(self, path: Path, *, workflow_hash: str) -> Path:
        """``.npz`` arrays plus the :class:`OutcomesHeader` inside it, written atomically; no pickle."""
        header = OutcomesHeader(
            provenance=Provenance(workflow_hash=workflow_hash, data_hash=self.source_hash),
            query_ids=self.query_ids,
            texts=self.texts,
            candidate_ids=self.candidate_ids,
            candidates=self.candidates,
            tasks=self.tasks,
        )
        return write_npz(path, header, {
            "correct": self.correct, "latency_sequential_s": self.latency_sequential_s,
            "latency_parallel_s": self.latency_parallel_s, "cost_usd": self.cost_usd})

    @classmethod
    def load(cls, path: Path, *, expect_inputs_hash: str | None = None,
             expect_workflow_hash: str | None = None) -> OutcomeMatrix:
        names = ("correct", "latency_sequential_s", "latency_parallel_s", "cost_usd")
        meta, arrays = read_npz(path, OutcomesHeader, names, expect_workflow_hash=expect_workflow_hash,
                                expect_inputs_hash=expect_inputs_hash)
        return cls(meta.query_ids, meta.texts, meta.candidate_ids, meta.candidates, **arrays,
                   source_hash=meta.provenance.data_hash, tasks=meta.tasks)


@dataclass(frozen=True)
class Predictions:
    """Per-query estimates over candidates, each (Q, K).

    ``fallback`` (Q,) marks rows a router declined to estimate from the text (a query far from
    every training query): their estimates are the router's fallback, its candidates' train
    means, or the hinted task's means when a known hint came with the query. ``hinted`` (Q,)
    marks rows whose caller hint was used as their group. None: no such row. ``groups`` (Q,)
    names the task or group each row was routed as, for a policy that routes by groups (drift
    compares their mix with the training mix); None for the others.
    """

    accuracy: np.ndarray
    latency_s: np.ndarray
    cost_usd: np.ndarray
    fallback: np.ndarray | None = None
    hinted: np.ndarray | None = None
    groups: np.ndarray | None = None

    @property
    def n_fallback(self) -> int:
        return 0 if self.fallback is None else int(np.count_nonzero(self.fallback))

    @property
    def n_hinted(self) -> int:
        return 0 if self.hinted is None else int(np.count_nonzero(self.hinted))


class Policy(abc.ABC):
    """Chooses a candidate per query under a preference, over a fixed candidate set.

    ``X`` is a (Q, F) feature matrix (``router.features.featurize``). ``execution`` says which
    latency it predicts and selects on. A :class:`Router` is a policy whose choice is the shared
    selection rules applied to its estimates; a policy that chooses by a rule of its own (random,
    best single, the oracle, a composed or a trained policy) subclasses this directly.
    """

    execution: Execution = "parallel"

    @property
    def hint_groups(self) -> tuple[str, ...]:
        """The task hints this policy can use (seen as labels in training); empty: it ignores hints."""
        return ()

    @abc.abstractmethod
    def fit(self, X: np.ndarray, Y: OutcomeMatrix) -> Policy:
        """Learn from the outcome matrix of the train split; return self."""

    @abc.abstractmethod
    def predict(self, X: np.ndarray, *, hints: Hints = None) -> Predictions:
        """Per-query estimates for every candidate; ``hints`` (one per row) as in :data:`Hints`."""

    @abc.abstractmethod
    def select(
        self, X: np.ndarray, preference: Preference, scale: Scale, *, hints: Hints = None
    ) -> SelectionResult:
        """The candidate each query should use under a preference."""

    def describe(self) -> dict[str, Any]:
        """What the fit chose that a report should show (JSON-ready); empty when nothing."""
        return {}

    def get_params(self) -> dict[str, Any]:
        """The constructor parameters (sklearn convention: ``__init__`` stores each one as is)."""
        import inspect

        return {name: getattr(self, name) for name in inspect.signature(type(self).__init__).parameters
                if name != "self"}

    def select_by_estimates(self, X: np.ndarray, preference: Preference, scale: Scale, *,
                            hints: Hints = None) -> SelectionResult:
        """The selection rules of static selection applied to :meth:`predict`'s estimates
        (fallback rows included): a router's choice, and a policy's rule when its own cannot apply."""
        pred = self.predict(X, hints=hints)
        return select(pred.accuracy, pred.latency_s, pred.cost_usd, preference, scale)

    def _check_fitted(self) -> None:
        if not any(name.endswith("_") and not name.startswith("_") for name in vars(self)):
            raise RoutingError(f"{type(self).__name__} is not fitted", hint="call fit(X, Y) first")


class Router(Policy):
    """A policy that changes only what it predicts, never how a prediction becomes a choice: its
    ``select`` is the shared rules (final; a subclass that overrides it is refused at class
    creation). The service, train and eval all choose through it."""

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if "select" in cls.__dict__:
            raise TypeError(f"{cls.__name__} overrides Router.select: a router changes what it predicts; "
                            "a policy with a choice rule of its own subclasses Policy")

    @abc.abstractmethod
    def fit(self, X: np.ndarray, Y: OutcomeMatrix) -> Router:
        """Learn from the outcome matrix of the train split; return self."""

    def select(
        self, X: np.ndarray, preference: Preference, scale: Scale, *, hints: Hints = None
    ) -> SelectionResult:
        """The shared selection rules on :meth:`predict`'s estimates."""
        return self.select_by_estimates(X, preference, scale, hints=hints)


def expected_utility(router: Policy, X: np.ndarray, Y: OutcomeMatrix, scale: Scale, lambdas: np.ndarray,
                     execution: Execution = "parallel") -> np.ndarray:
    """Per-query utility averaged over the λ sweep: mean_λ (correct − λ·normalised latency)."""
    rows = np.arange(len(Y.query_ids))
    lat = Y.latency(execution)
    per_query = np.zeros(len(rows))
    for lam in lambdas:
        index = np.asarray(router.select(X, Preference(lambda_=float(lam)), scale).index)
        per_query += utility(Y.correct[rows, index], lat[rows, index], float(lam), scale)
    return per_query / len(lambdas)
