"""Re-deciding a served request at its workflow's checkpoints (progressive routing).

The executor calls :class:`ServedCheckpoints` at each checkpoint of the run. Where the router
folder holds a checkpoint router that earned its place for this checkpoint (router.progressive),
the candidates the run may switch to are the compatible ones (the executor's walk over the calls
made: nothing already run is wasted) whose models are not behind an open breaker; the checkpoint
router's estimates for them go through the shared ``select`` under the caller's preference, with
hard limits relaxed to the nearest candidate rather than failing a request half run. Every
re-decision, switched or not, is one entry of the request's decision row (``checkpoints``).

Explored requests (epsilon-greedy) are not re-decided: the logged propensity is that of the
candidate that answers, which a switch would make untrue.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from flowfront.checkpoints import Checkpoint
from flowfront.space import Resolved

__all__ = ["ServedCheckpoints"]


class ServedCheckpoints:
    """The checkpoint hook of one request: ``out`` is its engine ``Outcome``."""

    def __init__(self, out: Any, avoid: set[str]) -> None:
        self.out = out
        self.avoid = avoid

    async def __call__(self, point: Checkpoint) -> Resolved | None:
        from flowfront.router.progressive import upfront_block
        from flowfront.router.trajectories import state_features

        out, entry = self.out, self.out.entry
        policy = entry.progressive
        if policy is None or point.id not in policy.active:
            return None
        started = time.perf_counter()
        current = next(i for i, r in enumerate(entry.resolved) if r is point.resolved)
        members = np.zeros(len(entry.resolved), dtype=bool)
        for k, candidate in enumerate(entry.resolved):
            members[k] = k == current or (
                not (entry.models[k] & self.avoid) and await point.compatible(candidate)
            )
        walked = time.perf_counter()
        preference = out.preference
        if preference.has_limits:
            preference = preference.model_copy(update={"on_infeasible": "nearest"})
        state = state_features(entry.workflow, point)
        picked = policy.redecide(
            point.id, state, upfront_block(*out.decision.estimates), members, preference, entry.scale
        )
        decided = time.perf_counter()
        chosen, pred = (current, None) if picked is None else picked
        execution = entry.frontier.execution
        out.checkpoints.append(
            {
                "checkpoint": point.id,
                "from": entry.ids[current],
                "to": entry.ids[chosen],
                "switched": chosen != current,
                "compatible": [entry.ids[k] for k in np.flatnonzero(members)],
                "spent_latency_s": point.latency_parallel_s
                if execution == "parallel"
                else point.latency_sequential_s,
                "spent_cost_usd": point.cost_usd,
                "estimates": None
                if pred is None
                else {
                    entry.ids[k]: {
                        "accuracy": round(float(pred.accuracy[0, k]), 6),
                        "latency_s": round(float(pred.latency_s[0, k]), 6),
                        "cost_usd": round(float(pred.cost_usd[0, k]), 9),
                    }
                    for k in np.flatnonzero(members)
                },
                "compatible_ms": 1000 * (walked - started),
                "decision_ms": 1000 * (decided - walked),
            }
        )
        if chosen == current:
            return None
        out.index = chosen
        out.log.candidate = entry.ids[chosen]
        return entry.resolved[chosen]
