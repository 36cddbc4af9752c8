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
from functools import cache
from typing import Any, Literal

import numpy as np

from flowfront.codefns import PROXY_RULES
from flowfront.compile.artifact import Profiles
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

    def take(self, node: str) -> np.ndarray:
        i = self.next_slot.get(node, 0)
        self.next_slot[node] = i + 1
        return self.choice[(node, i)]


@cache
def vote_table(k: int, m: int) -> np.ndarray:
    """G[c, f]: P(the vote is right | c of k samples right, first sample right iff f), with each
    wrong sample picking one of ``m`` wrong answers uniformly. No strict winner: the first sample."""
    table = np.zeros((k + 1, 2))
    for c in range(1, k + 1):
        wrong = k - c
        outcomes = list(itertools.product(range(m), repeat=wrong)) or [()]
        for f in (0, 1):
            if f == 1 and c == 0:
                continue
            total = 0.0
            for assignment in outcomes:
                clusters = np.bincount(np.asarray(assignment, dtype=np.int64), minlength=1) if assignment else np.zeros(1)
                top = max(c, clusters.max(initial=0))
                tied = (c == top) + int((clusters == top).sum())
                if tied == 1:
                    total += c == top
                else:
                    total += f
            table[c, f] = total / len(outcomes)
    return table


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
            g: {k: np.asarray(v) for k, v in gp.joint.items()} for g, gp in profiles.groups.items() if gp.joint
        }
        self._allowed = {name: self._allowed_choices(name, models, max_budget) for name in workflow.llm_nodes()}
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
            out.append(Structure(knobs, tuple(
                Slot(node, i, self._allowed[node]) for node in self.workflow.llm_nodes() for i in range(slots.get(node, 0))
            )))
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
        digits = np.atleast_2d(np.asarray(digits, dtype=np.int64))
        n = digits.shape[0]
        choice = {(s.node, s.index): s.choices[digits[:, j]] for j, s in enumerate(structure.slots)}
        ctx = _Ctx(choice=choice, n=n, knobs=dict(structure.knobs), cost=np.zeros(n))
        seq, par = self._flow(self.workflow.flow, _At(ctx, np.ones(n)))
        out = ctx.env.get(self.workflow.output)
        acc = np.clip(out.p, 0.0, 1.0) if isinstance(out, _Est) else np.zeros(n)
        return {"accuracy": acc, "latency_sequential_s": seq, "latency_parallel_s": par, "cost_usd": ctx.cost}

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
                running = running * (1 - self._p_condition(subject, step.until.equals, step.until.negate, at.ctx.n))
        return seq, par

    def _call(self, name: str, node: LLMNode, ctx: _Ctx, gate, cond) -> tuple[_Est, np.ndarray]:
        c = ctx.take(name)
        arr = self._arrays[name]
        own = arr["acc"][c]
        closure: dict[int, np.ndarray] = {}
        failed = cond[0].inputs if cond is not None and cond[0] is not None and cond[0].feedback and cond[1] is False else ()
        for upstream in node.upstream():  # product of success over the calls this one reads
            value = ctx.env.get(upstream)
            for v in value if isinstance(value, list) else [value]:
                if isinstance(v, _Est) and not any(v is f for f in failed):
                    closure.update(v.factors())
        ctx.cost += gate * arr["cost"][c]
        est = _Est(p=own, ran=gate, group=self.profiles.nodes[name].group, choice=c, cond=cond)
        if closure:
            closure[id(est)] = own
            est.closure = closure
            est.p = np.prod(np.stack(list(closure.values())), axis=0)
        return est, arr["lat"][c]

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
            return _Est(p=code.p, ran=code.ran, p_true=code.p, joint_correct=code.p, inputs=(code,), feedback=True)
        if rule == "any-passes":  # at-least-one: right unless every sample is wrong
            samples = [s for v in values for s in (v if isinstance(v, list) else [v]) if s is not None]
            p_all_wrong = np.prod(np.stack([1 - s.p for s in samples]), axis=0)
            return _Est(p=1 - p_all_wrong, ran=samples[0].ran)
        if rule == "pass-through":
            return values[0] if values and isinstance(values[0], _Est) else _Est(np.zeros(ctx.n), np.zeros(ctx.n))
        raise CompileError(f"code node {name!r}: function {node.fn!r} declares no proxy rule",
                           hint="add it to flowfront.codefns.PROXY_RULES with the rule that composes its inputs")

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
        return _Est(p=p_true, ran=np.minimum(a.ran, b.ran), p_true=p_true, joint_correct=both, inputs=(a, b))

    def _coalesce(self, values: list[_Est], n: int) -> _Est:
        first, rest = values[0], values[1:]
        if not rest:
            return first
        second = rest[0]
        cond = first.cond
        if cond is not None and cond[0] is not None and cond[0].p_true is not None and cond[1] is False:
            agree = cond[0]  # first ran only when the agreement failed: an escalation
            if any(second is inp for inp in agree.inputs):
                ratio = self._pair(agree.inputs[0], agree.inputs[1], "disagree_ratio") if len(agree.inputs) > 1 else None
                p_first = first.p * (ratio if ratio is not None else 1.0)
                p = (1 - agree.p_true) * np.clip(p_first, 0, 1) + agree.joint_correct
                return _Est(p=np.clip(p, 0, 1), ran=second.ran)
        share = np.clip(first.ran, 0, 1)
        return _Est(p=share * first.p + (1 - share) * second.p, ran=np.maximum(first.ran, second.ran))

    def _vote(self, samples: list[_Est], n: int) -> _Est:
        k = len(samples)
        if k == 1:
            return samples[0]
        p = np.clip(np.stack([s.p for s in samples], axis=1), 0, 1)  # (n, k)
        w = self._vote_wrong_match(samples)
        acc = _vote_independent(p, w)
        if self.mode == "correlated":
            rho = self._mean_correlation(samples, p)
            acc = (1 - rho) * acc + rho * _vote_comonotone(p, w)
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


def _effective_options(w: np.ndarray | float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Wrong answers coincide with probability w ~ 1/m: interpolate between integer m."""
    m = np.clip(1.0 / np.maximum(np.asarray(w, dtype=float), 1e-3), 1.0, 6.0)
    lo = np.floor(m).astype(int)
    return lo, np.minimum(lo + 1, 6), m - lo


def _mix_tables(k: int, w, pick) -> np.ndarray:
    lo, hi, t = _effective_options(w)
    lo, hi, t = np.broadcast_arrays(lo, hi, t)
    out = np.zeros(lo.shape)
    for m in np.unique(np.concatenate([lo.ravel(), hi.ravel()])):
        weight = np.where(lo == m, 1 - t, 0.0) + np.where(hi == m, t, 0.0)
        if weight.any():
            out = out + weight * pick(vote_table(k, int(m)))
    return out


def _vote_independent(p: np.ndarray, w) -> np.ndarray:
    """Vote accuracy with independent samples: P(count, first right) by dynamic programming."""
    n, k = p.shape
    dist = np.zeros((n, k))  # number right among samples 2..k
    dist[:, 0] = 1.0
    for j in range(1, k):
        dist[:, 1:] = dist[:, 1:] * (1 - p[:, j : j + 1]) + dist[:, :-1] * p[:, j : j + 1]
        dist[:, 0] *= 1 - p[:, j]
    first = p[:, 0:1]
    p_c_f1 = np.zeros((n, k + 1))
    p_c_f0 = np.zeros((n, k + 1))
    p_c_f1[:, 1:] = first * dist
    p_c_f0[:, :k] = (1 - first) * dist
    return _expect(p_c_f1, p_c_f0, k, w)


def _expect(p_c_f1: np.ndarray, p_c_f0: np.ndarray, k: int, w) -> np.ndarray:
    return _mix_tables(k, w, lambda g: p_c_f1 @ g[:, 1] + p_c_f0 @ g[:, 0])


def _vote_comonotone(p: np.ndarray, w) -> np.ndarray:
    """Vote accuracy when samples err together: sample i right iff a shared U < p_i."""
    n, k = p.shape
    order = np.sort(p, axis=1)[:, ::-1]  # descending
    upper = np.concatenate([np.ones((n, 1)), order], axis=1)  # interval j: U in (order[j], upper[j]]
    lower = np.concatenate([order, np.zeros((n, 1))], axis=1)
    length = np.clip(upper - lower, 0, None)  # (n, k+1), c = j right answers in interval j
    first_rank = (p[:, 1:] > p[:, :1]).sum(axis=1)  # how many samples beat the first
    c = np.arange(k + 1)[None, :]
    first_right = (c > first_rank[:, None]).astype(float)
    p_c_f1 = length * first_right
    p_c_f0 = length * (1 - first_right)
    return _expect(p_c_f1, p_c_f0, k, w)
