"""Which call's text is a run's answer as soon as the call starts, so the service can stream it."""

from __future__ import annotations

from typing import Any, Protocol

from flowfront.backends.base import DeltaSink
from flowfront.space import call_slots
from flowfront.spec import CodeNode, LLMNode, Workflow

__all__ = ["TokenSink", "streamed_call"]


class TokenSink(Protocol):
    """Where a streamed answer goes: ``opened`` is called when the call that produces the
    workflow's answer starts, and returns what receives its text as it is produced."""

    def opened(self, node: str, model: str) -> DeltaSink: ...


def streamed_call(workflow: Workflow, knobs: dict[str, Any]) -> tuple[str, int] | None:
    """The call (node, call number) whose text is the workflow's answer whenever that call runs,
    so it can stream from its first token; None when no call can be known to be final as it starts.

    The answer is the output node's value. An ``llm`` output is final at its last possible call
    (the last refine of a loop). A ``coalesce`` output is its first input that runs, so its first
    input that can run under these knobs is final when it runs (the escalation of a cascade).
    The node must answer with its text unchanged (parser ``raw``) and not be sampled (a vote
    chooses among samples afterwards). Anything else is answered in one piece at the end.
    """
    slots = call_slots(workflow, knobs)
    sampled = workflow.sampled_nodes()

    def source(name: str) -> tuple[str, int] | None:
        node = workflow.nodes.get(name)
        if isinstance(node, LLMNode):
            calls = slots.get(name, 0)
            return (name, calls - 1) if calls and node.parser == "raw" and name not in sampled else None
        if isinstance(node, CodeNode) and node.fn == "coalesce":
            for arg in node.inputs:
                inner = workflow.nodes.get(arg)
                if isinstance(inner, LLMNode) and not slots.get(arg, 0):
                    continue  # never runs under these knobs: the next input answers
                return source(arg) if inner is not None else None
        return None

    return source(workflow.output)
