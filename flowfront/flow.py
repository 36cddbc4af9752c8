"""One visitor over the flow IR: the executor, the proxy, the space's slot count, the search's
product-form check and the spec's reference check are passes over the same dispatch.

A flow is a list of steps: a node name (an ``llm`` or a ``code`` node), ``sample``,
``parallel``, ``if`` or ``loop``. :class:`FlowVisitor` decides which kind a step is and calls
the method for it; each pass says only what that kind means to it (run it, estimate it, count
its calls). A new step kind is added here, and every pass that does not handle it fails loudly
instead of skipping it. Which flows a step contains is ``spec.nested`` and the depth-first
traversal with YAML paths ``spec.walk`` (the spec's own validation needs them before a workflow
exists); whether a condition holds is ``Cond.holds``.

The visitor is agnostic to sync or async: an async pass makes its methods coroutines and awaits
what ``step`` returns.
"""

from __future__ import annotations

from typing import Generic, TypeVar

from flowfront.errors import SpecError
from flowfront.spec import CodeNode, Cond, If, KnobValue, LLMNode, Loop, Parallel, Sample, Step, Workflow

__all__ = ["FlowVisitor", "decided"]

C = TypeVar("C")  # what a pass threads through the flow (a run, a context, a repeat count)
R = TypeVar("R")  # what a pass returns per step


class FlowVisitor(Generic[C, R]):
    """Dispatch each step to the method for its kind, with the pass's context ``ctx``.

    Subclasses implement every kind their flows can contain; the defaults refuse, so a pass
    never silently passes over a step it does not understand.
    """

    def __init__(self, workflow: Workflow) -> None:
        self.workflow = workflow

    def step(self, step: Step, ctx: C) -> R:
        if isinstance(step, str):
            node = self.workflow.nodes[step]
            if isinstance(node, LLMNode):
                return self.llm(step, node, ctx)
            return self.code(step, node, ctx)
        if isinstance(step, Sample):
            return self.sample(step, self.workflow.llm_node(step.sample), ctx)
        if isinstance(step, Parallel):
            return self.parallel(step, ctx)
        if isinstance(step, If):
            return self.branch(step, ctx)
        if isinstance(step, Loop):
            return self.loop(step, ctx)
        raise SpecError(
            f"unknown flow step {step!r}", hint="a step is a node name, sample, parallel, if or loop"
        )

    def _refuse(self, kind: str) -> SpecError:
        return SpecError(
            f"{type(self).__name__} cannot handle `{kind}` steps in workflow {self.workflow.name!r}",
            hint="this workflow uses a step kind the pass was not written for",
        )

    def llm(self, name: str, node: LLMNode, ctx: C) -> R:
        raise self._refuse("llm node")

    def code(self, name: str, node: CodeNode, ctx: C) -> R:
        raise self._refuse("code node")

    def sample(self, step: Sample, node: LLMNode, ctx: C) -> R:
        raise self._refuse("sample")

    def parallel(self, step: Parallel, ctx: C) -> R:
        raise self._refuse("parallel")

    def branch(self, step: If, ctx: C) -> R:
        raise self._refuse("if")

    def loop(self, step: Loop, ctx: C) -> R:
        raise self._refuse("loop")


def decided(cond: Cond, knobs: dict[str, KnobValue]) -> bool | None:
    """Whether a condition holds when the knobs alone decide it; None when it depends on a node's output."""
    return cond.holds(knobs[cond.knob]) if cond.knob is not None else None
