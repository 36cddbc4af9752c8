"""Progressive routing: decide upfront from the text, then again at the workflow's checkpoints
with what has already run.

:class:`~flowfront.router.checkpoint_router.CheckpointRouter` is the :class:`Router` for one
checkpoint: where what ran says nothing new it predicts what the upfront router did, and selecting
among compatible candidates on those estimates keeps the upfront choice.

:class:`ProgressivePolicy` is the strategy ``frontier-progressive``: the frontier router upfront
and a checkpoint router per checkpoint, each kept only when, cross-validated over the train
queries, switching at that checkpoint beats keeping the upfront choice by more than one standard
error of the paired per-query difference (the rule the router's design choice uses). Whatever
chooses, it chooses through the shared ``select`` among compatible candidates only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from flowfront.router.base import Hints, OutcomeMatrix, Policy, Predictions, Router
from flowfront.router.checkpoint_router import CheckpointRouter, upfront_block, upfront_of
from flowfront.router.select import Preference, Scale, SelectionResult, lambda_sweep, select, utility
from flowfront.router.trajectories import Trajectories
from flowfront.spec import Execution

__all__ = ["CheckpointRouter", "ProgressivePolicy", "follow", "upfront_block"]


@dataclass
class _Point:
    """One checkpoint's router and the cross-validated record that decided whether it is used."""

    router: CheckpointRouter | None
    adopted: bool
    record: dict[str, Any]


def follow(
    traj: Trajectories, start: np.ndarray, choose: Any, checkpoints: list[int]
) -> tuple[np.ndarray, int]:
    """Walk each query's run from its upfront candidate through the checkpoints (in order),
    letting ``choose(c, rows, current, members)`` pick among compatible candidates; returns the
    candidate each query ends on and how many switches were made."""
    current = np.asarray(start).copy()
    switches = 0
    q = np.arange(len(current))
    for c in checkpoints:
        here = traj.reached[q, current, c]
        if not here.any():
            continue
        rows = np.flatnonzero(here)
        sig = traj.signature[rows, current[rows], c]
        members = (traj.signature[rows, :, c] == sig[:, None]) & traj.reached[rows, :, c]
        if members.sum(axis=1).max() <= 1:
            continue
        picked = choose(c, rows, current[rows], members)
        switches += int(np.count_nonzero(picked != current[rows]))
        current[rows] = picked
    return current, switches


class ProgressivePolicy(Policy):
    """``frontier-progressive``: the frontier router upfront, checkpoint routers where they earn it."""

    def __init__(
        self,
        *,
        execution: Execution = "parallel",
        seed: int = 0,
        folds: int = 3,
        adopt: Literal["one-se", "always"] = "one-se",
        upfront_params: dict[str, Any] | None = None,
        checkpoint_params: dict[str, Any] | None = None,
    ) -> None:
        self.execution = execution
        self.seed = seed
        self.folds = folds
        # "always": use every checkpoint router whatever its record (to exercise switching in tests)
        self.adopt = adopt
        self.upfront_params = upfront_params
        self.checkpoint_params = checkpoint_params

    def fit(
        self,
        X: np.ndarray,
        Y: OutcomeMatrix,
        *,
        trajectories: Trajectories | None = None,
        upfront: Router | None = None,
    ) -> ProgressivePolicy:
        from flowfront.router.model import LightGBMRouter

        if upfront is None:
            upfront = LightGBMRouter(execution=self.execution, seed=self.seed, **(self.upfront_params or {}))
            upfront.fit(X, Y)
        self.upfront_ = upfront
        self.points_: dict[str, _Point] = {}
        if trajectories is None or not trajectories.checkpoint_ids:
            return self
        if trajectories.query_ids != Y.query_ids:
            from flowfront.errors import RoutingError

            raise RoutingError(
                "the trajectories and the outcome matrix cover different queries",
                hint="delete <workdir>/<benchmark>/outcomes and re-run",
            )
        up = upfront_of(upfront.predict(X))
        for c, cid in enumerate(trajectories.checkpoint_ids):
            self.points_[cid] = self._fit_point(c, trajectories, Y, up, X)
        return self

    def _states(
        self, c: int, T: Trajectories, Y: OutcomeMatrix, up: np.ndarray, queries: np.ndarray
    ) -> tuple[np.ndarray, OutcomeMatrix, np.ndarray]:
        """One row per distinct (query, calls made) state at checkpoint ``c`` with its members."""
        xs, idx, members = [], [], []
        for q in queries:
            sigs = T.signature[q, :, c]
            for sig in np.unique(sigs[T.reached[q, :, c]]):
                mask = (sigs == sig) & T.reached[q, :, c]
                first = int(np.flatnonzero(mask)[0])
                xs.append(np.concatenate([T.state[q, first, c], up[q]]))
                idx.append(q)
                members.append(mask)
        if not idx:
            return np.empty((0, 0)), Y, np.empty((0, 0), dtype=bool)
        return np.asarray(xs, dtype=np.float32), Y.rows(np.asarray(idx)), np.asarray(members)

    def _router(
        self, c: int, T: Trajectories, Y: OutcomeMatrix, up: np.ndarray, queries: np.ndarray
    ) -> CheckpointRouter | None:
        Xs, Ys, members = self._states(c, T, Y, up, queries)
        if len(Xs) < 20:
            return None
        return CheckpointRouter(
            execution=self.execution, seed=self.seed, **(self.checkpoint_params or {})
        ).fit(Xs, Ys, members=members)

    def _fit_point(self, c: int, T: Trajectories, Y: OutcomeMatrix, up: np.ndarray, X: np.ndarray) -> _Point:
        n = len(Y.query_ids)
        lat = Y.latency(self.execution)
        means = (Y.correct.mean(axis=0), lat.mean(axis=0), Y.cost_usd.mean(axis=0))
        scale = Scale.from_estimates(means[1], means[2])
        lambdas = lambda_sweep(scale, *means)
        picks = [
            np.asarray(self.upfront_.select(X, Preference(lambda_=float(lam)), scale).index)
            for lam in lambdas
        ]

        def gains(choose_for: Any, queries: np.ndarray) -> tuple[np.ndarray, int]:
            """Per query of ``queries``: utility after re-deciding at ``c``, minus the upfront choice's."""
            sub, out, switched = T.rows(queries), np.zeros(len(queries)), 0
            rows = np.arange(len(queries))
            for lam, pick in zip(lambdas, picks, strict=True):
                u = utility(Y.correct[queries], lat[queries], float(lam), scale)
                final, k = follow(sub, pick[queries], choose_for(sub, queries, float(lam), u), [c])
                out += u[rows, final] - u[rows, pick[queries]]
                switched += k
            return out / len(lambdas), switched

        # What perfect switching at this checkpoint would add (the realised best compatible candidate):
        # no router can beat the upfront choice by more, so below one SE nothing is fitted.
        ceiling, _ = gains(
            lambda sub, q, lam, u: (
                lambda _c, rows, cur, members: np.where(members, u[rows], -np.inf).argmax(axis=1)
            ),
            np.arange(n),
        )
        record: dict[str, Any] = {
            "ceiling_gain_over_upfront": float(ceiling.mean()),
            "ceiling_se": _se(ceiling),
        }
        gain, switched = np.zeros(n), 0
        if ceiling.mean() - _se(ceiling) > 0.0 or self.adopt == "always":
            gain, switched = self._cross_validated(c, T, Y, up, gains, scale)
        mean, se = float(gain.mean()), _se(gain)
        adopted = mean - se > 0.0 or self.adopt == "always"
        record |= {
            "cv_gain_over_upfront": mean,
            "cv_se": se,
            "cv_switches": switched,
            "adopted": adopted,
            "rule": "used only when its cross-validated gain over the upfront choice exceeds one SE"
            if self.adopt == "one-se"
            else "always used (adopt='always')",
        }
        router = self._router(c, T, Y, up, np.arange(n)) if adopted else None
        return _Point(router, adopted and router is not None, record)

    def _cross_validated(
        self, c: int, T: Trajectories, Y: OutcomeMatrix, up: np.ndarray, gains: Any, scale: Scale
    ) -> tuple[np.ndarray, int]:
        """Per train query, the gain of re-deciding at ``c`` with a router fitted on the other folds."""
        n = len(Y.query_ids)
        gain, switched = np.zeros(n), 0
        for held in np.array_split(np.random.default_rng(self.seed + 5).permutation(n), max(self.folds, 2)):
            router = self._router(c, T, Y, up, np.setdiff1d(np.arange(n), held))
            if router is None:
                continue
            held = np.sort(held)

            def chooser(
                sub: Trajectories, q: np.ndarray, lam: float, u: np.ndarray, r: CheckpointRouter = router
            ) -> Any:
                return _chooser({c: r}, sub, up[q], Preference(lambda_=lam), scale)

            g, k = gains(chooser, held)
            gain[held] = g
            switched += k
        return gain, switched

    # -- choosing --------------------------------------------------------------------------------
    def predict(self, X: np.ndarray, *, hints: Hints = None) -> Predictions:
        self._check_fitted()
        return self.upfront_.predict(X, hints=hints)

    def select(
        self, X: np.ndarray, preference: Preference, scale: Scale, *, hints: Hints = None
    ) -> SelectionResult:
        """The upfront choice (what runs first); :meth:`redecide` and :meth:`realise` take it on."""
        self._check_fitted()
        return self.upfront_.select(X, preference, scale, hints=hints)

    @property
    def active(self) -> list[str]:
        return [cid for cid, p in getattr(self, "points_", {}).items() if p.adopted]

    def realise(
        self, X: np.ndarray, T: Trajectories, preference: Preference, scale: Scale, *, hints: Hints = None
    ) -> tuple[np.ndarray, int]:
        """The candidate each query ends on after re-deciding at the adopted checkpoints of its
        recorded run (``T``: the queries' trajectories), and the number of switches."""
        start = np.asarray(self.select(X, preference, scale, hints=hints).index)
        routers = {
            c: self.points_[cid].router
            for c, cid in enumerate(T.checkpoint_ids)
            if cid in self.points_ and self.points_[cid].adopted
        }
        if not routers:
            return start, 0
        up = upfront_of(self.upfront_.predict(X, hints=hints))
        return follow(T, start, _chooser(routers, T, up, preference, scale), sorted(routers))

    def redecide(
        self,
        checkpoint: str,
        state: np.ndarray,
        up: np.ndarray,
        members: np.ndarray,
        preference: Preference,
        scale: Scale,
    ) -> tuple[int, Predictions] | None:
        """At a served checkpoint: the candidate to go on with among ``members`` (K,) bool, with
        the estimates it was chosen on; None where this checkpoint keeps the upfront choice."""
        point = self.points_.get(checkpoint)
        if point is None or not point.adopted or point.router is None:
            return None
        pred = point.router.predict(np.concatenate([state, up])[None, :].astype(np.float32))
        chosen = select(
            pred.accuracy, pred.latency_s, pred.cost_usd, preference, scale, allowed=members[None, :]
        )
        return int(np.asarray(chosen.index)[0]), pred

    def describe(self) -> dict[str, Any]:
        out = dict(self.upfront_.describe()) if hasattr(self, "upfront_") else {}
        out["checkpoints"] = {
            cid: {**p.record, **(p.router.describe() if p.router else {})}
            for cid, p in getattr(self, "points_", {}).items()
        }
        return out


def _se(x: np.ndarray) -> float:
    return float(x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else 0.0


def _chooser(
    routers: dict[int, CheckpointRouter],
    T: Trajectories,
    up: np.ndarray,
    preference: Preference,
    scale: Scale,
) -> Any:
    """``choose`` for :func:`follow`: the checkpoint router's estimates through the shared select."""

    def choose(c: int, rows: np.ndarray, current: np.ndarray, members: np.ndarray) -> np.ndarray:
        router = routers.get(c)
        if router is None:
            return current
        X = np.hstack([T.state[rows, current, c], up[rows]]).astype(np.float32)
        pred = router.predict(X)
        pref = (
            preference.model_copy(update={"on_infeasible": "nearest"})
            if preference.has_limits
            else preference
        )
        return np.asarray(
            select(pred.accuracy, pred.latency_s, pred.cost_usd, pref, scale, allowed=members).index
        )

    return choose
