"""Workflow spec: YAML → typed, validated model.

A workflow is a set of named nodes plus a structured ``flow`` that says how they run:

- ``"name"``                                   run a node;
- ``{parallel: [flow, flow, ...]}``            run branches concurrently (fan-out / fan-in);
- ``{sample: node, k: 3 | {knob: k}}``         run one ``llm`` node k times concurrently;
- ``{if: cond, then: flow, else: flow}``       conditional on a knob or an upstream output;
- ``{loop: flow, max_iters: n | {knob: r}, until: cond}``   bounded loop.

Structured (not a free DAG) on purpose: the compiler's proxy composes profiles by exactly these
control-flow kinds, so the spec and the proxy can never disagree about the shape.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import orjson
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from flowfront.errors import SpecError

# `{query}`, `{node}` (its parsed answer) or `{node.text}` (its full response text).
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?:\.(text|answer))?\}")
KnobValue = str | int | bool


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Message(_Strict):
    role: Literal["system", "user", "assistant"]
    content: str

    def placeholders(self) -> set[str]:
        return {name for name, _ in _PLACEHOLDER.findall(self.content)}


class LLMNode(_Strict):
    """One model call: a messages template, an output parser, and its choices."""

    kind: Literal["llm"]
    messages: list[Message] = Field(min_length=1)
    parser: str = "raw"
    models: list[str] = Field(min_length=1)
    budgets: list[int | None] = Field(default_factory=lambda: list[int | None]([None]), min_length=1)
    sampling: dict[str, float | int | str] = Field(default_factory=dict)
    description: str = ""

    @field_validator("budgets")
    @classmethod
    def _positive_budgets(cls, budgets: list[int | None]) -> list[int | None]:
        if any(b is not None and b <= 0 for b in budgets):
            raise ValueError("budgets must be positive token counts, or null for unlimited")
        if len(set(budgets)) != len(budgets):
            raise ValueError("budgets must not repeat")
        return budgets

    @field_validator("models")
    @classmethod
    def _unique_models(cls, models: list[str]) -> list[str]:
        if len(set(models)) != len(models):
            raise ValueError("models must not repeat")
        return models

    def upstream(self) -> set[str]:
        return set().union(*(m.placeholders() for m in self.messages)) - {"query"}


class CodeNode(_Strict):
    """A registered Python function over upstream outputs (vote, agree, extract, ...)."""

    kind: Literal["code"]
    fn: str
    inputs: list[str] = Field(min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)
    description: str = ""

    def upstream(self) -> set[str]:
        return set(self.inputs) - {"query"}  # `query`: the query itself (its text and reference)


Node = Annotated[LLMNode | CodeNode, Field(discriminator="kind")]


class Knob(_Strict):
    values: list[KnobValue] = Field(min_length=1)
    default: KnobValue | None = None
    description: str = ""

    @model_validator(mode="after")
    def _default_in_values(self) -> Knob:
        if self.default is not None and self.default not in self.values:
            raise ValueError(f"default {self.default!r} is not one of values {self.values}")
        return self


class KnobRef(_Strict):
    knob: str


class Cond(_Strict):
    """``{knob: name, equals: v}`` or ``{node: name, equals: v}``; ``negate`` flips it."""

    knob: str | None = None
    node: str | None = None
    equals: KnobValue | None = None
    negate: bool = False

    @model_validator(mode="after")
    def _one_subject(self) -> Cond:
        if (self.knob is None) == (self.node is None):
            raise ValueError("a condition names exactly one of `knob` or `node`")
        return self

    def holds(self, actual: object) -> bool:
        """Whether the condition holds when its subject (the knob's or the node's answer) is ``actual``."""
        return (actual == self.equals) != self.negate


class Sample(_Strict):
    sample: str
    k: int | KnobRef = 1


class Parallel(_Strict):
    parallel: list[Flow] = Field(min_length=2)


class If(_Strict):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    cond: Cond = Field(alias="if")
    then: Flow
    orelse: Flow = Field(default_factory=list, alias="else")


class Loop(_Strict):
    loop: Flow
    max_iters: int | KnobRef = Field(alias="max_iters")
    until: Cond | None = None


def _step_kind(step: Any) -> str | None:
    if isinstance(step, str):
        return "node"
    if isinstance(step, dict):
        for key in ("sample", "parallel", "if", "loop"):
            if key in step:
                return key
        return None
    kinds: dict[type, str] = {Sample: "sample", Parallel: "parallel", If: "if", Loop: "loop"}
    return kinds.get(type(step))


Step = Annotated[
    Annotated[str, Tag("node")]
    | Annotated[Sample, Tag("sample")]
    | Annotated[Parallel, Tag("parallel")]
    | Annotated[If, Tag("if")]
    | Annotated[Loop, Tag("loop")],
    Discriminator(
        _step_kind,
        custom_error_type="flow_step",
        custom_error_message="a flow step is a node name or a mapping with one of: sample, parallel, if, "
                             "loop",
    ),
]
Flow = list[Step]
# How a configuration's latency is counted: summed over its calls, or along the critical path.
Execution = Literal["sequential", "parallel"]
for _model in (Parallel, If, Loop):
    _model.model_rebuild()


class JudgeSpec(_Strict):
    """How an LLM judge grades a served answer of this workflow (``flowfront grade``): a messages
    template with ``{query}`` and ``{answer}``, answered CORRECT or INCORRECT."""

    messages: list[Message] = Field(min_length=1)
    budget: int | None = Field(default=16, ge=1)
    sampling: dict[str, Any] = Field(default_factory=lambda: {"temperature": 0})


class Workflow(_Strict):
    """A validated workflow. ``content_hash`` identifies it in every artifact; the ``judge`` is
    outside it (how answers are graded afterwards changes no configuration's behaviour)."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    description: str = ""
    knobs: dict[str, Knob] = Field(default_factory=dict)
    nodes: dict[str, Node] = Field(min_length=1)
    flow: Flow = Field(min_length=1)
    output: str
    judge: JudgeSpec | None = None
    # Nodes after which a router may decide again (progressive routing). None: derived, the nodes
    # whose result a condition reads; [] turns re-deciding off. Where a run may switch changes no
    # configuration's behaviour, so like the judge it is outside the content hash.
    checkpoints: list[str] | None = None

    @model_validator(mode="after")
    def _references_resolve(self) -> Workflow:
        _check_references(self)
        return self

    @property
    def content_hash(self) -> str:
        payload = orjson.dumps(self.model_dump(mode="json", by_alias=True, exclude={"judge", "checkpoints"}),
                               option=orjson.OPT_SORT_KEYS)
        return hashlib.sha256(payload).hexdigest()[:16]

    def llm_nodes(self) -> dict[str, LLMNode]:
        return {n: node for n, node in self.nodes.items() if isinstance(node, LLMNode)}

    def llm_node(self, name: str) -> LLMNode:
        """Node ``name``, which validation guarantees is an llm node where this is called."""
        node = self.nodes[name]
        if not isinstance(node, LLMNode):
            raise SpecError(f"node {name!r} is a code node where an llm node is needed",
                            hint="sample and configure only llm nodes")
        return node

    def sampled_nodes(self) -> set[str]:
        """Nodes called as ``sample`` steps (their value is a list of answers, not one)."""
        return {step.sample for _, step in walk(self.flow) if isinstance(step, Sample)}

    def checkpoint_nodes(self) -> tuple[str, ...]:
        """The nodes after which a run may re-decide: declared, or those a condition reads, in
        flow order. Never inside a ``parallel`` branch, where other calls are still running."""
        if self.checkpoints is not None:
            return tuple(self.checkpoints)
        conds = [step.cond if isinstance(step, If) else step.until
                 for _, step in walk(self.flow) if isinstance(step, (If, Loop))]
        read = {cond.node for cond in conds if cond is not None and cond.node is not None}
        concurrent = _in_parallel(self.flow)
        seen: dict[str, None] = {}
        for _, step in walk(self.flow):
            if isinstance(step, str) and step in read and step not in concurrent:
                seen[step] = None
        return tuple(seen)

    def all_models(self) -> list[str]:
        seen: dict[str, None] = {}
        for node in self.llm_nodes().values():
            seen.update(dict.fromkeys(node.models))
        return list(seen)


def nested(step: Step) -> list[tuple[str, Flow]]:
    """The flows inside a step, each with its YAML key: the one statement of how steps nest."""
    if isinstance(step, Parallel):
        return [(f"parallel[{j}]", branch) for j, branch in enumerate(step.parallel)]
    if isinstance(step, If):
        return [("then", step.then), ("else", step.orelse)]
    if isinstance(step, Loop):
        return [("loop", step.loop)]
    return []


def walk(flow: Flow, path: str = "flow") -> Iterator[tuple[str, Step]]:
    """Every (YAML path, step) of a flow, depth first, nested steps included."""
    for i, step in enumerate(flow):
        here = f"{path}[{i}]"
        yield here, step
        for key, inner in nested(step):
            yield from walk(inner, f"{here}.{key}")


def _in_parallel(flow: Flow) -> set[str]:
    """Node names that run inside a ``parallel`` branch (or as samples) somewhere in the flow."""
    out: set[str] = set()
    for _, step in walk(flow):
        if isinstance(step, Parallel):
            out |= {s for branch in step.parallel for _, s in walk(branch) if isinstance(s, str)}
        elif isinstance(step, Sample):
            out.add(step.sample)
    return out


def _check_references(wf: Workflow) -> None:
    from flowfront.codefns import CODE_FUNCTIONS
    from flowfront.parsers import PARSERS

    def need_knob(name: str, where: str) -> None:
        if name not in wf.knobs:
            raise ValueError(f"{where}: unknown knob {name!r}; declare it under `knobs`")

    def need_node(name: str, where: str) -> None:
        if name not in wf.nodes:
            raise ValueError(f"{where}: unknown node {name!r}; known nodes: {sorted(wf.nodes)}")

    for where, step in walk(wf.flow):
        if isinstance(step, str):
            need_node(step, where)
        elif isinstance(step, Sample):
            need_node(step.sample, f"{where}.sample")
            if not isinstance(wf.nodes[step.sample], LLMNode):
                raise ValueError(f"{where}.sample: {step.sample!r} must be an llm node")
            if isinstance(step.k, KnobRef):
                need_knob(step.k.knob, f"{where}.k")
        elif isinstance(step, (If, Loop)):
            cond = step.cond if isinstance(step, If) else step.until
            label = f"{where}.if" if isinstance(step, If) else f"{where}.until"
            if cond is not None:
                if cond.knob:
                    need_knob(cond.knob, label)
                elif cond.node is not None:
                    need_node(cond.node, label)
            if isinstance(step, Loop) and isinstance(step.max_iters, KnobRef):
                need_knob(step.max_iters.knob, f"{where}.max_iters")
    need_node(wf.output, "output")
    concurrent = _in_parallel(wf.flow)
    flowed = {step for _, step in walk(wf.flow) if isinstance(step, str)}
    for i, name in enumerate(wf.checkpoints or ()):
        need_node(name, f"checkpoints[{i}]")
        if name in concurrent or name not in flowed:
            raise ValueError(f"checkpoints[{i}]: {name!r} must be a step of the flow outside any `parallel` "
                             "branch (other calls would still be running when the router re-decides)")
    for name, node in wf.nodes.items():
        for upstream in node.upstream():
            need_node(upstream, f"nodes.{name}")
        if isinstance(node, LLMNode) and node.parser not in PARSERS:
            raise ValueError(
                f"nodes.{name}.parser: unknown parser {node.parser!r}; choose from {sorted(PARSERS)}"
            )
        if isinstance(node, CodeNode) and node.fn not in CODE_FUNCTIONS:
            raise ValueError(
                f"nodes.{name}.fn: unknown code function {node.fn!r}; choose from {sorted(CODE_FUNCTIONS)}"
            )
    for name, knob in wf.knobs.items():
        for value in knob.values:
            if isinstance(value, str) and value.lower() in {"yes", "no", "true", "false"}:
                raise ValueError(f"knobs.{name}: yes/no/true/false strings are ambiguous in YAML; use on/off")


def format_loc(loc: tuple[Any, ...]) -> str:
    """pydantic's error location as a YAML path: ``nodes.answer.budgets[0]``.

    Union tags pydantic inserts (the node kind, the flow-step kind) are not YAML keys and are dropped.
    """
    out = ""
    for i, part in enumerate(loc):
        if isinstance(part, int):
            out += f"[{part}]"
            continue
        after_node = i >= 2 and loc[i - 2] == "nodes" and part in {"llm", "code"}
        after_step = (
            isinstance(loc[i - 1], int) and part in {"node", "sample", "parallel", "if", "loop"}
            if i
            else False
        )
        if not (after_node or after_step):
            out += f".{part}" if out else str(part)
    return out or "<top level>"


def read_yaml(path: Path) -> Any:
    """Parse a YAML file; errors name the file and the line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"{path}: file not found", hint="check the path or the name") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError(
            f"{path}:{where}: malformed YAML: {problem}", hint="fix the YAML syntax there"
        ) from None


_M = TypeVar("_M", bound=BaseModel)


def parse_model(cls: type[_M], data: Any, source: str) -> _M:
    """Validate ``data`` into ``cls``; the first error names the source, the path and the fix."""
    if not isinstance(data, dict):
        raise SpecError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        msg = err["msg"].removeprefix("Value error, ")
        where = f"at `{format_loc(err['loc'])}`: " if err["loc"] else ""
        raise SpecError(f"{source}: {where}{msg}{more}") from None


def load_workflow(path: Path) -> Workflow:
    return parse_model(Workflow, read_yaml(path), str(path))
