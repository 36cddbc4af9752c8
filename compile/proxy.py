"""The structure-aware proxy: workflow accuracy, latency and cost from node profiles.

It walks the workflow's flow once per batch of configurations, with numpy arrays of shape (n,)
standing for n configurations at a time:

- an ``llm`` call is correct with its profiled accuracy, times the success of the upstream values
  its prompt uses (sequential composition is a product of success);
- ``sample`` + ``majority_vote``: the probability the vote is right given each sample's accuracy,
  with wrong answers coinciding at the profiled rate;
- conditionals weigh each branch by its probability (e.g. P(agree) in the cascade), and
  ``coalesce`` after an escalation combines "agreed and right" with "disagreed, escalation right";
- bounded loops are unrolled, each iteration weighted by the probability the loop is still running.

Latency follows both execution models (``sequential``: sum of calls; ``parallel``: critical path),
cost is a sum; both are expectations over branches. Settings are per call, so two samples of one
node may use different models.

Two modes: ``independent`` treats calls as independent (FlowCompile's assumption);
``correlated`` uses the pairwise statistics profiled from the same calls (both-correct rates,
same-wrong-answer rates, difficulty after a disagreement), which matters when models err on the
same queries.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from flowfront.codefns import PROXY_RULES
from flowfront.compile.artifact import Profiles
from flowfront.compile.vote import vote_comonotone, vote_independent
from flowfront.errors import CompileError
from flowfront.flow import FlowVisitor, decided
from flowfront.space import call_slots, knob_assignments, knob_value
from flowfront.spec import CodeNode, If, LLMNode, Loop, Parallel, Sample, Workflow

Mode = Literal["independent", "correlated"]


@dataclass(frozen=True)
class Slot:
    node: str
    index: int
    choices: np.ndarray  # indices into the node's profiled choices that filters allow


@dataclass(frozen=True)
class Structure:
    """One assignment of the structural knobs and the call slots it leaves to choose."""

    knobs: dict[str, Any]
    slots: tuple[Slot, ...]

    @property
    def radices(self) -> tuple[int, ...]:
        return tuple(len(s.choices) for s in self.slots)

    @property
    def size(self) -> int:
        return math.prod(self.radices)


@dataclass
class _Est:
    """What the proxy knows about one node's value, per configuration."""

    p: np.ndarray  # P(correct)
    ran: np.ndarray  # P(the node ran)
    group: str | None = None
    choice: np.ndarray | None = None  # profiled choice index (llm values)
    p_true: np.ndarray | None = None  # for boolean values (agree)
    joint_correct: np.ndarray | None = None  # P(input correct and agree)
    inputs: tuple[_Est, ...] = ()
    cond: tuple[_Est, bool] | None = None  # ran only when `cond[0]` had value `cond[1]`
    # the calls this value's correctness needs, each once: a diamond (two branches reading one
    # upstream call, joined downstream) must not count the shared call's success twice
    closure: dict[int, np.ndarray] | None = None
    # a check whose failure a downstream call reads as feedback (test -> repair): the repair's
    # success does not need the code it repairs to have been right
    feedback: bool = False
    # the rows where this call is an identical copy of an earlier call of the same run (same
    # prompt, model and budget): its output is that call's output, made once and paid once. One
    # (earlier call, rows) pair per earlier call it repeats somewhere; the rows are disjoint.
    same_as: list[tuple[_Est, np.ndarray]] = field(default_factory=list)

    def factors(self) -> dict[int, np.ndarray]:
        return self.closure if self.closure is not None else {id(self): self.p}


@dataclass
class _Ctx:
    choice: dict[tuple[str, int], np.ndarray]
    n: int
    knobs: dict[str, Any]
    env: dict[str, Any] = field(default_factory=dict)
    cost: np.ndarray | None = None
    next_slot: dict[str, int] = field(default_factory=dict)
    made: list[_Est] = field(default_factory=list)  # calls on the query alone, in issue order
    # every call: (its node's group, choice, P(it is made), a repeat counted as not made)
    calls: list[tuple[str | None, np.ndarray, np.ndarray]] = field(default_factory=list)

    def take(self, node: str) -> np.ndarray:
        i = self.next_slot.get(node, 0)
        self.next_slot[node] = i + 1
        return self.choice[(node, i)]


@dataclass(frozen=True)
class _At:
    """Where the flow pass is: the evaluation, the probability each configuration reaches this
    step (``gate``, shape (n,)), and the condition the enclosing branch was taken under."""

    ctx: _Ctx
    gate: np.ndarray
    cond: tuple[Any, Any] | None = None


class Proxy(FlowVisitor[_At, tuple[np.ndarray, np.ndarray]]):
    """Estimates for configurations of one workflow from its profiles."""

    def __init__(
        self,
        workflow: Workflow,
        profiles: Profiles,
        *,
        mode: Mode = "independent",
        models: list[str] | None = None,
        max_budget: int | None = None,
        knobs: dict[str, list[Any]] | None = None,
    ) -> None:
        if profiles.provenance.workflow_hash != workflow.content_hash:
            raise CompileError(
                f"profiles were made for another version of workflow {workflow.name!r}",
                hint="re-run `flowfront profile` for this workflow",
            )
        super().__init__(workflow)
        self.profiles, self.mode = profiles, mode
        self.filters = {"models": models, "max_budget": max_budget, "knobs": knobs}
        self._arrays = {name: self._node_arrays(name) for name in workflow.llm_nodes()}
        self._joint = {
            g: {k: np.asarray(v) for k, v in gp.joint.items()}
            for g, gp in profiles.groups.items()
            if gp.joint
        }
        self._allowed = {
            name: self._allowed_choices(name, models, max_budget) for name in workflow.llm_nodes()
        }
        self._knobs = knobs or {}

    # -- setup ----------------------------------------------------------------------------------
    def _node_arrays(self, name: str) -> dict[str, np.ndarray]:
        prof = self.profiles.nodes.get(name)
        if prof is None:
            raise CompileError(f"profiles have no node {name!r}", hint="re-run `flowfront profile`")
        ch = prof.choices
        return {
            "acc": np.array([c.accuracy for c in ch]),
            "lat": np.array([c.latency_mean_s for c in ch]),
            "cost": np.array([c.cost_mean_usd for c in ch]),
        }

    def _allowed_choices(self, name: str, models: list[str] | None, max_budget: int | None) -> np.ndarray:
        ch = self.profiles.nodes[name].choices
        keep = [
            i for i, c in enumerate(ch)
            if (models is None or c.model in models)
            and (max_budget is None or (c.budget is not None and c.budget <= max_budget))
        ]
        return np.asarray(keep, dtype=np.int64)

    def choice_label(self, node: str, index: int) -> dict[str, Any]:
        c = self.profiles.nodes[node].choices[index]
        return {"model": c.model, "budget": c.budget}

    def structures(self) -> list[Structure]:
        """Every knob assignment the filters allow, with its slots; raises when nothing is left."""
        out = []
        for knobs in knob_assignments(self.workflow):
            if any(name in self._knobs and value not in self._knobs[name] for name, value in knobs.items()):
                continue
            slots = call_slots(self.workflow, knobs)
            out.append(
                Structure(
                    knobs,
                    tuple(
                        Slot(node, i, self._allowed[node])
                        for node in self.workflow.llm_nodes()
                        for i in range(slots.get(node, 0))
                    ),
                )
            )
        if not out:
            raise CompileError(f"the knob filter {self._knobs} leaves no structure", hint="relax --knobs")
        empty = {s.node for st in out for s in st.slots if len(s.choices) == 0}
        if empty:
            raise CompileError(
                f"filters leave no choice for node(s) {sorted(empty)} (models={self.filters['models']}, "
                f"max_budget={self.filters['max_budget']})",
                hint="relax --models or --max-budget",
            )
        return out

    def may_repeat_a_call(self, structure: Structure) -> bool:
        """Whether two of the structure's calls can be one (same prompt, model and budget)."""
        groups = [self.profiles.nodes[s.node].group for s in structure.slots
                  if not self.workflow.nodes[s.node].upstream()]
        return len(groups) != len(set(groups))

    def config(self, structure: Structure, digits: np.ndarray) -> dict[str, Any]:
        """The configuration JSON for one row of slot digits."""
        per_node: dict[str, list] = {}
        for slot, d in zip(structure.slots, digits, strict=True):
            per_node.setdefault(slot.node, []).append(self.choice_label(slot.node, int(slot.choices[d])))
        nodes = {n: (v[0] if len(v) == 1 else v) for n, v in per_node.items()}
        return {"nodes": nodes, "knobs": dict(structure.knobs)}

    # -- evaluation -----------------------------------------------------------------------------
    def evaluate(self, structure: Structure, digits: np.ndarray) -> dict[str, np.ndarray]:
        """Estimates for configurations given as slot digits, shape (n, slots)."""
        ctx, seq, par = self._run(structure, digits)
        out = ctx.env.get(self.workflow.output)
        acc = np.clip(out.p, 0.0, 1.0) if isinstance(out, _Est) else np.zeros(ctx.n)
        return {"accuracy": acc, "latency_sequential_s": seq, "latency_parallel_s": par, "cost_usd": ctx.cost}

    def _run(self, structure: Structure, digits: np.ndarray) -> tuple[_Ctx, np.ndarray, np.ndarray]:
        digits = np.atleast_2d(np.asarray(digits, dtype=np.int64))
        n = digits.shape[0]
        choice = {(s.node, s.index): s.choices[digits[:, j]] for j, s in enumerate(structure.slots)}
        ctx = _Ctx(choice=choice, n=n, knobs=dict(structure.knobs), cost=np.zeros(n))
        seq, par = self._flow(self.workflow.flow, _At(ctx, np.ones(n)))
        return ctx, seq, par

    def likely_calls(self, structure: Structure, digits: np.ndarray) -> tuple[tuple[str | None, int], ...]:
        """The calls one configuration makes on two or more profiled queries in expectation (a
        call seen on one query is an anecdote), each once (a repeat is the call it repeats): (group,
        choice) pairs. Two configurations with the same likely calls differ only on queries rarer
        than the profiles can tell apart."""
        ctx, _, _ = self._run(structure, np.asarray(digits)[None, :])
        floor = 2.0 / max(1, self.profiles.n_queries)
        made = {(group, int(choice[0])) for group, choice, p in ctx.calls if p[0] >= floor}
        return tuple(sorted(made, key=repr))

    def _flow(self, flow, at: _At) -> tuple[np.ndarray, np.ndarray]:
        seq = np.zeros(at.ctx.n)
        par = np.zeros(at.ctx.n)
        for step in flow:
            s, p = self.step(step, at)
            seq, par = seq + s, par + p
        return seq, par

    # One method per step kind (the flow visitor); each returns (sequential, parallel) latency, (n,).
    def llm(self, name: str, node: LLMNode, at: _At) -> tuple[np.ndarray, np.ndarray]:
        est, lat = self._call(name, node, at.ctx, at.gate, at.cond)
        at.ctx.env[name] = est
        return at.gate * lat, at.gate * lat

    def code(self, name: str, node: CodeNode, at: _At) -> tuple[np.ndarray, np.ndarray]:
        at.ctx.env[name] = self._code(name, node, at.ctx)
        zero = np.zeros(at.ctx.n)
        return zero, zero

    def sample(self, step: Sample, node: LLMNode, at: _At) -> tuple[np.ndarray, np.ndarray]:
        calls = [self._call(step.sample, node, at.ctx, at.gate, at.cond)
                 for _ in range(knob_value(step.k, at.ctx.knobs))]
        at.ctx.env[step.sample] = [e for e, _ in calls]
        lats = np.stack([lat for _, lat in calls])
        return at.gate * lats.sum(axis=0), at.gate * lats.max(axis=0)

    def parallel(self, step: Parallel, at: _At) -> tuple[np.ndarray, np.ndarray]:
        outs = [self._flow(branch, at) for branch in step.parallel]
        return sum(s for s, _ in outs), np.max(np.stack([p for _, p in outs]), axis=0)

    def branch(self, step: If, at: _At) -> tuple[np.ndarray, np.ndarray]:
        taken = decided(step.cond, at.ctx.knobs)
        if taken is not None:
            return self._flow(step.then if taken else step.orelse, at)
        subject = at.ctx.env.get(step.cond.node)
        p_yes = self._p_condition(subject, step.cond.equals, step.cond.negate, at.ctx.n)
        # what the subject's value was when each branch ran (for boolean subjects such as agree)
        value = step.cond.equals if not step.cond.negate else not step.cond.equals
        s1, p1 = self._flow(step.then, _At(at.ctx, at.gate * p_yes, (subject, value)))
        s2, p2 = self._flow(step.orelse, _At(at.ctx, at.gate * (1 - p_yes), (subject, not value)))
        return s1 + s2, p1 + p2

    def loop(self, step: Loop, at: _At) -> tuple[np.ndarray, np.ndarray]:
        seq, par, running = np.zeros(at.ctx.n), np.zeros(at.ctx.n), at.gate
        for _ in range(knob_value(step.max_iters, at.ctx.knobs)):
            s, p = self._flow(step.loop, _At(at.ctx, running, at.cond))
            seq, par = seq + s, par + p
            if step.until is not None:
                subject = at.ctx.env.get(step.until.node)
                running = running * (
                    1 - self._p_condition(subject, step.until.equals, step.until.negate, at.ctx.n)
                )
        return seq, par

    def _call(self, name: str, node: LLMNode, ctx: _Ctx, gate, cond) -> tuple[_Est, np.ndarray]:
        c = ctx.take(name)
        arr = self._arrays[name]
        own = arr["acc"][c]
        closure: dict[int, np.ndarray] = {}
        failed = (
            cond[0].inputs
            if cond is not None and cond[0] is not None and cond[0].feedback and cond[1] is False
            else ()
        )
        for upstream in node.upstream():  # product of success over the calls this one reads
            value = ctx.env.get(upstream)
            for v in value if isinstance(value, list) else [value]:
                if isinstance(v, _Est) and not any(v is f for f in failed):
                    closure.update(v.factors())
        group = self.profiles.nodes[name].group
        est = _Est(p=own, ran=gate, group=group, choice=c, cond=cond)
        lat, cost = arr["lat"][c], arr["cost"][c]
        if not node.upstream():
            est.same_as = self._earlier_identical(ctx, group, c)
            for prior, rows in est.same_as:  # the executor reuses it: no second cost, no added latency
                est.p = np.where(rows, prior.p, est.p)
                lat, cost = np.where(rows, 0.0, lat), np.where(rows, 0.0, cost)
            ctx.made.append(est)
        repeat = np.logical_or.reduce([rows for _, rows in est.same_as]) if est.same_as else False
        ctx.calls.append((group, c, np.where(repeat, 0.0, gate)))
        ctx.cost += gate * cost
        if closure:
            closure[id(est)] = own
            est.closure = closure
            est.p = np.prod(np.stack(list(closure.values())), axis=0)
        return est, lat

    @staticmethod
    def _earlier_identical(ctx: _Ctx, group: str | None, choice: np.ndarray) -> list[tuple[_Est, np.ndarray]]:
        """Per configuration row, the earliest call with the same prompt (its group renders the
        query alone), model and budget that surely ran: (that call, the rows where it is the one)."""
        found, taken = [], np.zeros(len(choice), dtype=bool)
        for prior in ctx.made:
            if group is not None and prior.group == group:
                rows = (prior.choice == choice) & (prior.ran >= 1.0 - 1e-12) & ~taken
                if rows.any():
                    found.append((prior, rows))
                    taken |= rows
        return found

    def _p_condition(self, subject: _Est | None, equals, negate: bool, n: int) -> np.ndarray:
        if subject is None:
            return np.zeros(n) if not negate else np.ones(n)
        if subject.p_true is not None:  # a boolean value such as agree
            p = subject.p_true if equals is True else 1 - subject.p_true
        elif isinstance(equals, str) and equals.lower() == "correct":  # a verdict on its upstream value
            q = subject.inputs[0].p if subject.inputs else np.full(n, 0.5)
            p = q * subject.p + (1 - q) * (1 - subject.p)
        else:
            p = subject.p
        return 1 - p if negate else p

    # -- code nodes -----------------------------------------------------------------------------
    def _code(self, name: str, node: CodeNode, ctx: _Ctx) -> _Est:
        values = [ctx.env.get(name) for name in node.inputs]
        rule = PROXY_RULES.get(node.fn)
        if rule == "agreement":
            return self._agree(values[0], values[1], ctx.n)
        if rule == "vote":
            samples = values[0] if isinstance(values[0], list) else values
            return self._vote([s for s in samples if s is not None], ctx.n)
        if rule == "first-present":
            return self._coalesce([v for v in values if v is not None], ctx.n)
        if rule == "graded-by-tests":  # the tests grade the code: P(pass) is the code's accuracy
            code = values[0]
            return _Est(
                p=code.p, ran=code.ran, p_true=code.p, joint_correct=code.p, inputs=(code,), feedback=True
            )
        if rule == "any-passes":  # at-least-one: right unless every sample is wrong
            samples = [s for v in values for s in (v if isinstance(v, list) else [v]) if s is not None]
            p_all_wrong = np.prod(np.stack([1 - s.p for s in samples]), axis=0)
            return _Est(p=1 - p_all_wrong, ran=samples[0].ran)
        if rule == "pass-through":
            return (
                values[0]
                if values and isinstance(values[0], _Est)
                else _Est(np.zeros(ctx.n), np.zeros(ctx.n))
            )
        raise CompileError(
            f"code node {name!r}: function {node.fn!r} declares no proxy rule",
            hint="add it to flowfront.codefns.PROXY_RULES with the rule that composes its inputs",
        )

    def _pair(self, a: _Est, b: _Est, stat: str) -> np.ndarray | None:
        if self.mode != "correlated" or a.group is None or a.group != b.group or a.group not in self._joint:
            return None
        return self._joint[a.group][stat][a.choice, b.choice]

    def _wrong_match(self, group: str | None) -> float:
        """Pooled P(two wrong answers coincide | both wrong) for a group (0.5 when unprofiled)."""
        joint = self._joint.get(group) if group else None
        if joint is None:
            return 0.5
        both, same = joint["both_correct"], joint["same_wrong"]
        acc = np.diag(both)
        both_wrong = 1 - acc[:, None] - acc[None, :] + both
        off = ~np.eye(len(acc), dtype=bool)
        denom = both_wrong[off].sum()
        return float(np.clip(same[off].sum() / denom, 0.0, 1.0)) if denom > 0 else 0.5

    def _agree(self, a: _Est, b: _Est, n: int) -> _Est:
        both = self._pair(a, b, "both_correct")
        same_wrong = self._pair(a, b, "same_wrong")
        if both is None:
            both = a.p * b.p
            same_wrong = (1 - a.p) * (1 - b.p) * self._wrong_match(a.group)
        p_true = np.clip(both + same_wrong, 0.0, 1.0)
        rows = _identical_rows(a, b)
        if rows is not None:  # one output compared with itself: they agree exactly when it parses
            p_true = np.where(rows, self._p_parsed(a), p_true)
            both = np.where(rows, a.p, both)
        return _Est(p=p_true, ran=np.minimum(a.ran, b.ran), p_true=p_true, joint_correct=both, inputs=(a, b))

    def _p_parsed(self, est: _Est) -> np.ndarray:
        """P(the call's answer parses), from the group's joint profile (an answer compared with
        itself agrees unless it is empty); 1 when the group has none."""
        joint = self._joint.get(est.group) if est.group else None
        if joint is None or est.choice is None:
            return np.ones_like(est.p)
        c = est.choice
        parsed = joint["both_correct"][c, c] + joint["same_wrong"][c, c]
        return np.where(parsed > 1.0 - 1e-9, 1.0, np.clip(parsed, 0.0, 1.0))  # acc + (1 - acc) may miss 1

    def _coalesce(self, values: list[_Est], n: int) -> _Est:
        first, rest = values[0], values[1:]
        if not rest:
            return first
        second = rest[0]
        cond = first.cond
        if cond is not None and cond[0] is not None and cond[0].p_true is not None and cond[1] is False:
            agree = cond[0]  # first ran only when the agreement failed: an escalation
            if any(second is inp for inp in agree.inputs):
                ratio = (
                    self._pair(agree.inputs[0], agree.inputs[1], "disagree_ratio")
                    if len(agree.inputs) > 1
                    else None
                )
                p_first = first.p * (ratio if ratio is not None else 1.0)
                p = (1 - agree.p_true) * np.clip(p_first, 0, 1) + agree.joint_correct
                for prior, rows in first.same_as:
                    if any(prior is inp for inp in agree.inputs):
                        # the escalation repeats one of the compared calls: the final answer is that
                        # call's whether they agreed (equal answers) or not (the repeat)
                        p = np.where(rows, prior.p, p)
                return _Est(p=np.clip(p, 0, 1), ran=second.ran)
        share = np.clip(first.ran, 0, 1)
        return _Est(p=share * first.p + (1 - share) * second.p, ran=np.maximum(first.ran, second.ran))

    def _vote(self, samples: list[_Est], n: int) -> _Est:
        k = len(samples)
        if k == 1:
            return samples[0]
        p = np.clip(np.stack([s.p for s in samples], axis=1), 0, 1)  # (n, k)
        w = self._vote_wrong_match(samples)
        acc = vote_independent(p, w)
        if self.mode == "correlated":
            rho = self._mean_correlation(samples, p)
            acc = (1 - rho) * acc + rho * vote_comonotone(p, w)
        # one call repeated k times is that call, whatever the mode assumes of distinct ones
        repeats = [_identical_rows(samples[0], s) for s in samples[1:]]
        if all(r is not None for r in repeats):
            acc = np.where(np.logical_and.reduce(repeats), samples[0].p, acc)
        return _Est(p=acc, ran=samples[0].ran)

    def _vote_wrong_match(self, samples: list[_Est]) -> np.ndarray | float:
        if self.mode != "correlated":
            return self._wrong_match(samples[0].group)
        rates = []
        for a, b in itertools.combinations(samples, 2):
            both, same = self._pair(a, b, "both_correct"), self._pair(a, b, "same_wrong")
            if both is None:
                return self._wrong_match(samples[0].group)
            both_wrong = 1 - a.p - b.p + both
            rates.append(np.where(both_wrong > 1e-9, same / np.maximum(both_wrong, 1e-9), 1.0))
        return np.clip(np.mean(rates, axis=0), 0.0, 1.0)

    def _mean_correlation(self, samples: list[_Est], p: np.ndarray) -> np.ndarray:
        corr = []
        for (i, a), (j, b) in itertools.combinations(enumerate(samples), 2):
            both = self._pair(a, b, "both_correct")
            if both is None:
                return np.zeros(p.shape[0])
            var = np.sqrt(p[:, i] * (1 - p[:, i]) * p[:, j] * (1 - p[:, j]))
            corr.append(np.where(var > 1e-9, (both - p[:, i] * p[:, j]) / np.maximum(var, 1e-9), 1.0))
        return np.clip(np.mean(corr, axis=0), 0.0, 1.0)


def _identical_rows(a: _Est, b: _Est) -> np.ndarray | None:
    """Rows where one of two values is a repeat of the other call (None: no row)."""
    for first, second in ((a, b), (b, a)):
        for prior, rows in second.same_as:
            if prior is first:
                return rows
    return None
