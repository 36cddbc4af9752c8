"""Configurations and the design space of a workflow.

A configuration assigns every choice: ``{"nodes": {"<node>": {"model": ..., "budget": ...}},
"knobs": {...}}``. A node that runs several times (``k`` samples, loop iterations) may take one
setting per call as a list; a single setting applies to every call. Settings are per call, not
per node name, so two samples of one node may use different models.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import product
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from flowfront.errors import SpecError
from flowfront.flow import FlowVisitor, decided
from flowfront.spec import (
    CodeNode,
    Flow,
    If,
    KnobRef,
    KnobValue,
    LLMNode,
    Loop,
    Parallel,
    Sample,
    Workflow,
    format_loc,
)


class NodeSetting(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    model: str
    budget: int | None = None  # None: unlimited


class Configuration(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    nodes: dict[str, NodeSetting | list[NodeSetting]] = Field(default_factory=dict)
    knobs: dict[str, KnobValue] = Field(default_factory=dict)

    @classmethod
    def parse(cls, data: Any, source: str = "configuration") -> Configuration:
        if isinstance(data, (str, bytes)):
            try:
                data = orjson.loads(data)
            except orjson.JSONDecodeError as exc:
                raise SpecError(f"{source}: not valid JSON: {exc}", hint="pass a JSON object") from None
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            err = exc.errors()[0]
            raise SpecError(f"{source}: at `{format_loc(err['loc'])}`: {err['msg']}") from None

    def key(self) -> str:
        """Canonical JSON: equal configurations have equal keys."""
        return orjson.dumps(self.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS).decode()


@dataclass(frozen=True)
class Resolved:
    """A configuration checked against a workflow: knob values and one setting per call slot."""

    knobs: dict[str, KnobValue]
    slots: dict[str, tuple[NodeSetting, ...]]

    def setting(self, node: str, index: int) -> NodeSetting:
        return self.slots[node][index]


def knob_value(ref: int | KnobRef, knobs: dict[str, KnobValue]) -> int:
    return int(knobs[ref.knob]) if isinstance(ref, KnobRef) else ref


def call_slots(workflow: Workflow, knobs: dict[str, KnobValue]) -> dict[str, int]:
    """How many calls each ``llm`` node can make under these knob values.

    Branches conditioned on a knob count only the branch taken; branches conditioned on a node's
    output count both, since either may run.
    """
    counter = _SlotCounter(workflow, knobs)
    counter.flow(workflow.flow, 1)
    return counter.slots


class _SlotCounter(FlowVisitor[int, None]):
    """The flow pass behind :func:`call_slots`; its context is how often the current flow repeats."""

    def __init__(self, workflow: Workflow, knobs: dict[str, KnobValue]) -> None:
        super().__init__(workflow)
        self.knobs = knobs
        self.slots: dict[str, int] = {}

    def flow(self, flow: Flow, repeat: int) -> None:
        for step in flow:
            self.step(step, repeat)

    def llm(self, name: str, node: LLMNode, repeat: int) -> None:
        self.slots[name] = self.slots.get(name, 0) + repeat

    def code(self, name: str, node: CodeNode, repeat: int) -> None:
        return None  # a code node makes no model call

    def sample(self, step: Sample, node: LLMNode, repeat: int) -> None:
        self.slots[step.sample] = self.slots.get(step.sample, 0) + repeat * knob_value(step.k, self.knobs)

    def parallel(self, step: Parallel, repeat: int) -> None:
        for branch in step.parallel:
            self.flow(branch, repeat)

    def branch(self, step: If, repeat: int) -> None:
        taken = decided(step.cond, self.knobs)
        for flow in (step.then, step.orelse) if taken is None else (step.then if taken else step.orelse,):
            self.flow(flow, repeat)

    def loop(self, step: Loop, repeat: int) -> None:
        self.flow(step.loop, repeat * knob_value(step.max_iters, self.knobs))


def resolve(workflow: Workflow, config: Configuration) -> Resolved:
    """Check a configuration against the workflow's space; errors say what to fix."""
    knobs = _resolve_knobs(workflow, config.knobs)
    slots = call_slots(workflow, knobs)
    unknown = set(config.nodes) - set(workflow.nodes)
    if unknown:
        raise SpecError(
            f"configuration names unknown node {sorted(unknown)[0]!r}",
            hint=f"nodes of {workflow.name!r} with choices: {sorted(workflow.llm_nodes())}",
        )
    resolved: dict[str, tuple[NodeSetting, ...]] = {}
    for name, count in slots.items():
        if count == 0:
            continue
        node = workflow.llm_node(name)  # only llm nodes make calls
        given = config.nodes.get(name)
        if given is None:
            raise SpecError(
                f"configuration has no setting for node {name!r}", hint=f'add "{name}": {{"model": ...}}'
            )
        settings = [given] * count if isinstance(given, NodeSetting) else list(given)
        if len(settings) != count:
            raise SpecError(
                f"node {name!r} makes {count} call(s) under these knobs but the configuration gives "
                f"{len(settings)} settings",
                hint="give one setting, or a list with one setting per call",
            )
        for setting in settings:
            _check_setting(name, node, setting)
        resolved[name] = tuple(settings)
    return Resolved(knobs=knobs, slots=resolved)


def _resolve_knobs(workflow: Workflow, given: dict[str, KnobValue]) -> dict[str, KnobValue]:
    unknown = set(given) - set(workflow.knobs)
    if unknown:
        raise SpecError(
            f"configuration names unknown knob {sorted(unknown)[0]!r}",
            hint=f"knobs: {sorted(workflow.knobs)}",
        )
    knobs: dict[str, KnobValue] = {}
    for name, knob in workflow.knobs.items():
        value = given.get(name, knob.default)
        if value is None:
            raise SpecError(
                f"configuration has no value for knob {name!r}", hint=f"choose one of {knob.values}"
            )
        if value not in knob.values or type(value) is not type(knob.values[knob.values.index(value)]):
            raise SpecError(
                f"knob {name!r} = {value!r} is outside the space", hint=f"choose one of {knob.values}"
            )
        knobs[name] = value
    return knobs


def _check_setting(name: str, node: LLMNode, setting: NodeSetting) -> None:
    if setting.model not in node.models:
        raise SpecError(
            f"node {name!r}: model {setting.model!r} is not in its choices", hint=f"choose from {node.models}"
        )
    if setting.budget not in node.budgets:
        shown = ["unlimited" if b is None else b for b in node.budgets]
        raise SpecError(
            f"node {name!r}: budget {setting.budget} is outside the space", hint=f"choose from {shown}"
        )


def node_choices(node: LLMNode) -> list[NodeSetting]:
    """Every (model, budget) a call of this node may take, in a fixed order."""
    return [NodeSetting(model=m, budget=b) for m in node.models for b in node.budgets]


def knob_assignments(workflow: Workflow) -> list[dict[str, KnobValue]]:
    names = list(workflow.knobs)
    return [
        dict(zip(names, values, strict=True))
        for values in product(*(workflow.knobs[n].values for n in names))
    ]


def space_size(workflow: Workflow) -> int:
    """Number of configurations: per knob assignment, the product of per-call choices."""
    total = 0
    llm = workflow.llm_nodes()
    for knobs in knob_assignments(workflow):
        slots = call_slots(workflow, knobs)
        total += math.prod(len(node_choices(llm[n])) ** c for n, c in slots.items() if c)
    return total


def all_configurations(workflow: Workflow, *, limit: int = 5000) -> list[Configuration]:
    """Every configuration of a small space (recording a live benchmark runs them all)."""
    size = space_size(workflow)
    if size > limit:
        raise SpecError(
            f"workflow {workflow.name!r} has {size:,} configurations, more than {limit:,} to run one by one",
            hint="narrow its models or budgets for a recording",
        )
    llm = workflow.llm_nodes()
    out: list[Configuration] = []
    for knobs in knob_assignments(workflow):
        slots = [(n, c) for n, c in call_slots(workflow, knobs).items() if c]
        per_call = [(n, i) for n, c in slots for i in range(c)]
        for picks in product(*(node_choices(llm[n]) for n, _ in per_call)):
            nodes: dict[str, list[NodeSetting]] = {}
            for (name, _), setting in zip(per_call, picks, strict=True):
                nodes.setdefault(name, []).append(setting)
            out.append(
                Configuration(nodes={n: s[0] if len(s) == 1 else s for n, s in nodes.items()}, knobs=knobs)
            )
    return out
