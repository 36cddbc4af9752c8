"""Checkpoints: the points of a run where a router may decide again (progressive routing).

A workflow names them (``checkpoints:`` in its YAML) or they are derived: after each node whose
result a condition reads (``Workflow.checkpoint_nodes``). When a run reaches one, the executor
hands a :class:`Checkpoint` to the run's :class:`CheckpointHook`; the hook may answer with another
configuration. The run then switches: the new configuration's flow runs from its start with every
call already made answered from the run itself (nothing is called twice, nothing already paid for
is wasted), so the answer is the one an ``exec`` of the new configuration gives.

A configuration may be switched to only when it is *compatible*: run on this query it would
reach this checkpoint having made exactly the calls made so far and no other
(:meth:`Checkpoint.compatible` checks it by walking that configuration's flow over the calls
already made, calling nothing).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from flowfront.values import Value

if TYPE_CHECKING:
    from flowfront.space import Resolved

__all__ = ["Checkpoint", "CheckpointHook", "NotMade", "Reached", "Switch", "Switched", "code_key"]


@dataclass(frozen=True)
class Checkpoint:
    """A run stopped after ``node`` ran for the ``occurrence``-th time (0-based).

    ``calls`` are the calls made so far (reused repeats included, marked), ``values`` each node's
    latest output, ``keys`` the request keys made; latency so far is modeled both ways, from the
    calls' own latencies, and ``cost_usd`` is what they cost.
    """

    node: str
    occurrence: int
    query: Any  # the executor's Query (this module sits below the executor)
    resolved: Resolved
    calls: tuple[Any, ...]  # the executor's CallRecords
    values: dict[str, Value]
    keys: frozenset[str]
    latency_sequential_s: float
    latency_parallel_s: float
    cost_usd: float
    _compatible: Callable[[Resolved], Awaitable[bool]] = field(repr=False, compare=False)

    @property
    def id(self) -> str:
        return f"{self.node}#{self.occurrence}"

    async def compatible(self, resolved: Resolved) -> bool:
        """Whether ``resolved`` would reach this checkpoint with exactly these calls made."""
        return await self._compatible(resolved)


class CheckpointHook(Protocol):
    """Called at every checkpoint of a run (once each, a switch does not repeat it): the
    configuration to switch to, or None to go on."""

    async def __call__(self, checkpoint: Checkpoint) -> Resolved | None: ...


@dataclass(frozen=True)
class Switch:
    """One re-decision that changed the configuration, as the run result reports it."""

    checkpoint: str
    before: Resolved
    after: Resolved
    latency_parallel_s: float  # spent when it switched (modeled, critical path)
    cost_usd: float


class Switched(Exception):  # noqa: N818 - control flow inside the executor: the run switches
    def __init__(self, switch: Switch) -> None:
        self.switch = switch


class Reached(Exception):  # noqa: N818 - a compatibility walk got to its checkpoint
    pass


class NotMade(Exception):  # noqa: N818 - a compatibility walk needs a call the run has not made
    pass


def code_key(name: str, args: list[Any]) -> str:
    """A code node's inputs as a key: code functions are deterministic in them."""

    def part(v: Any) -> Any:
        if isinstance(v, list):
            return [part(x) for x in v]
        return (repr(v.answer), v.text) if isinstance(v, Value) else repr(v)

    return repr((name, [part(a) for a in args]))
