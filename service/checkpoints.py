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
from flowfront.space import Resolved

__all__ = ["ServedCheckpoints"]


class ServedCheckpoints:
    """The checkpoint hook of one request: ``out`` is its engine ``Outcome``."""

    def __init__(self, out: Any, avoid: set[str]) -> None:
        from flowfront.router.redecide import Redecisions

        entry = out.entry
        self.out = out
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
        after = await self.hook(point)
        if after is not None:
            self.out.index = self.hook.index(after)
            self.out.log.candidate = self.out.entry.ids[self.out.index]
        return after
