"""Re-deciding a served request at its workflow's checkpoints (progressive routing).

The hook is :class:`flowfront.router.redecide.Redecisions` over the workflow's frontier, with the
candidates whose models are behind an open breaker not allowed; each re-decision goes into the
request's decision row (``checkpoints``) and the candidate it ends on is the one reported.
Explored requests (epsilon-greedy) are not re-decided (engine.py): the logged propensity is that of
the candidate that answers, which a switch would make untrue.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from flowfront.checkpoints import Checkpoint
from flowfront.service.metrics import Metrics
from flowfront.space import Resolved

__all__ = ["ServedCheckpoints"]


class ServedCheckpoints:
    """The checkpoint hook of one request: ``out`` is its engine ``Outcome``."""

    def __init__(self, out: Any, avoid: set[str], metrics: Metrics) -> None:
        from flowfront.router.redecide import Redecisions

        entry = out.entry
        self.out = out
        self.metrics = metrics
        self.hook = Redecisions(
            entry.progressive,
            entry.workflow,
            entry.resolved,
            entry.ids,
            out.decision.estimates,
            out.preference,
            entry.scale,
            entry.frontier.execution,
            allowed=np.array([not (ms & avoid) for ms in entry.models]),
            log=out.checkpoints,
        )

    async def __call__(self, point: Checkpoint) -> Resolved | None:
        made = len(self.hook.log)
        after = await self.hook(point)
        if len(self.hook.log) > made:  # the checkpoint's router was consulted
            outcome = "kept" if after is None else "switched"
            self.metrics.checkpoint_decisions.labels(
                workflow=self.out.entry.name, checkpoint=point.id, outcome=outcome
            ).inc()
        if after is not None:
            self.out.index = self.hook.index(after)
            self.out.log.candidate = self.out.entry.ids[self.out.index]
        return after
