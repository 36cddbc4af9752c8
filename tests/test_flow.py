"""The one flow visitor: every pass over the flow IR dispatches through it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from flowfront.errors import SpecError
from flowfront.flow import FlowVisitor, decided
from flowfront.spec import Cond, load_workflow, walk
from tests.helpers import CONFIGS

ROOT = Path(__file__).resolve().parent.parent
STEP_TYPES = {"Sample", "Parallel", "If", "Loop"}


class _Kinds(FlowVisitor[list, None]):
    """Records the kind of every step it is given, recursing like a real pass."""

    def flow(self, flow, seen):
        for step in flow:
            self.step(step, seen)

    def llm(self, name, node, seen):
        seen.append(("llm", name))

    def code(self, name, node, seen):
        seen.append(("code", name))

    def sample(self, step, node, seen):
        seen.append(("sample", node.kind))

    def parallel(self, step, seen):
        seen.append(("parallel", len(step.parallel)))
        for branch in step.parallel:
            self.flow(branch, seen)

    def branch(self, step, seen):
        seen.append(("if", step.cond.knob or step.cond.node))
        self.flow(step.then, seen)
        self.flow(step.orelse, seen)

    def loop(self, step, seen):
        seen.append(("loop", None))
        self.flow(step.loop, seen)


@pytest.mark.parametrize("name", ["qa-cascade", "qa-vote", "code-budget", "live-code"])
def test_dispatch_reaches_every_step_walk_lists(name: str) -> None:
    wf = load_workflow(CONFIGS / "workflows" / f"{name}.yaml")
    seen: list = []
    _Kinds(wf).flow(wf.flow, seen)
    assert len(seen) == sum(1 for _ in walk(wf.flow))  # the visitor and the traversal agree
    kinds = {k for k, _ in seen}
    assert kinds <= {"llm", "code", "sample", "parallel", "if", "loop"} and kinds & {"llm", "sample"}


def test_a_pass_that_does_not_handle_a_kind_refuses_it() -> None:
    wf = load_workflow(CONFIGS / "workflows" / "qa-vote.yaml")

    class OnlyLLM(FlowVisitor[None, str]):
        def llm(self, name, node, ctx):
            return name

    with pytest.raises(SpecError, match="OnlyLLM cannot handle `(if|sample|code node)` steps"):
        for step in wf.flow:
            OnlyLLM(wf).step(step, None)


def test_knob_conditions_are_decided_without_a_run() -> None:
    assert decided(Cond(knob="checker", equals="on"), {"checker": "on"}) is True
    assert decided(Cond(knob="checker", equals="on", negate=True), {"checker": "on"}) is False
    assert decided(Cond(node="check", equals=True), {"checker": "on"}) is None


def test_no_module_dispatches_on_step_types_outside_the_visitor_and_the_spec() -> None:
    """`isinstance(step, Parallel)` and kin live in flowfront/flow.py and flowfront/spec.py only."""
    offenders = []
    for path in [*ROOT.glob("flowfront/**/*.py"), *(p for d in ("compile", "router", "eval", "service")
                                                    for p in (ROOT / d).glob("**/*.py"))]:
        if path.name in {"flow.py", "spec.py"} and path.parent.name == "flowfront":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and getattr(node.func, "id", None) == "isinstance"
                and len(node.args) == 2
            ):
                names = {n.id for n in ast.walk(node.args[1]) if isinstance(n, ast.Name)}
                if names & STEP_TYPES:
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []
