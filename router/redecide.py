"""The checkpoint hook of progressive routing, shared by the service and ``flowfront route --explain``.

At each checkpoint of a run (flowfront.checkpoints) :class:`Redecisions` finds the compatible
candidates (the executor's walk over the calls made, so nothing already run is wasted; ``allowed``
may exclude more, e.g. candidates behind an open circuit breaker), asks the policy's checkpoint
router for their estimates and chooses through the shared ``select`` under the caller's
preference, hard limits relaxed to the nearest candidate rather than failing a run half done.
Every re-decision at a checkpoint the policy uses is one entry of ``log``; with ``explain``, so is
every checkpoint it does not use, with the cross-validated record that says why.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from flowfront.checkpoints import Checkpoint
from flowfront.router.checkpoint_router import upfront_block
from flowfront.router.progressive import ProgressivePolicy
from flowfront.router.select import Preference, Scale
from flowfront.router.trajectories import state_features
from flowfront.space import Resolved
from flowfront.spec import Execution, Workflow

__all__ = ["Redecisions"]


class Redecisions:
    """A checkpoint hook over one query: ``estimates`` are the upfront router's (acc, lat, cost)."""

    def __init__(
        self,
        policy: ProgressivePolicy,
        workflow: Workflow,
        candidates: Sequence[Resolved],
        ids: Sequence[str],
        estimates: tuple[np.ndarray, np.ndarray, np.ndarray],
        preference: Preference,
        scale: Scale,
        execution: Execution,
        *,
        allowed: np.ndarray | None = None,
        explain: bool = False,
        log: list[dict[str, Any]] | None = None,
    ) -> None:
        self.policy, self.workflow = policy, workflow
        self.candidates, self.ids = list(candidates), list(ids)
        self.up = upfront_block(*estimates)
        self.preference = (
            preference.model_copy(update={"on_infeasible": "nearest"})
            if preference.has_limits
            else preference
        )
        self.scale, self.execution = scale, execution
        self.allowed = np.ones(len(self.candidates), dtype=bool) if allowed is None else np.asarray(allowed)
        self.explain = explain
        self.log = [] if log is None else log

    def index(self, resolved: Resolved) -> int:
        return next(i for i, r in enumerate(self.candidates) if r is resolved)

    async def __call__(self, point: Checkpoint) -> Resolved | None:
        used = point.id in self.policy.active
        if not used and not self.explain:
            return None
        current = self.index(point.resolved)
        started = time.perf_counter()
        members = np.zeros(len(self.candidates), dtype=bool)
        for k, candidate in enumerate(self.candidates):
            members[k] = k == current or (bool(self.allowed[k]) and await point.compatible(candidate))
        walked = time.perf_counter()
        picked = None
        if used:
            state = state_features(self.workflow, point)
            picked = self.policy.redecide(point.id, state, self.up, members, self.preference, self.scale)
        decided = time.perf_counter()
        chosen, pred = (current, None) if picked is None else picked
        spent = point.latency_parallel_s if self.execution == "parallel" else point.latency_sequential_s
        entry: dict[str, Any] = {
            "checkpoint": point.id,
            "used": used,
            "from": self.ids[current],
            "to": self.ids[chosen],
            "switched": chosen != current,
            "compatible": [self.ids[k] for k in np.flatnonzero(members)],
            "spent_latency_s": spent,
            "spent_cost_usd": point.cost_usd,
            "estimates": None
            if pred is None
            else {
                self.ids[k]: {
                    "accuracy": round(float(pred.accuracy[0, k]), 6),
                    "latency_s": round(float(pred.latency_s[0, k]), 6),
                    "cost_usd": round(float(pred.cost_usd[0, k]), 9),
                }
                for k in np.flatnonzero(members)
            },
            "compatible_ms": 1000 * (walked - started),
            "decision_ms": 1000 * (decided - walked),
        }
        if not used:
            entry["why_not_used"] = (
                self.policy.points_[point.id].record
                if point.id in self.policy.points_
                else {"reason": "no checkpoint router was fitted for this checkpoint"}
            )
        self.log.append(entry)
        return None if chosen == current else self.candidates[chosen]
