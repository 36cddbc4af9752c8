"""Frontier search over a workflow's design space, on the proxy.

Per structure (knob assignment): user filters first (in the Proxy), then — where the proxy is
monotone in each call's profile (the ``independent`` mode) — drop choices dominated within their
slot, then enumerate the remaining product in vectorised, integer-encoded chunks with a streaming
non-dominated merge. Structures too large to enumerate go to Optuna's NSGA-II with a budget of
proxy evaluations. The per-structure fronts are merged into one; ties are broken stably (the
first structure, then the lowest code wins) and weakly dominated points are dropped.

Filtering before pruning matters: pruning first (as the FlowCompile reference does) can remove
every choice a filter would keep, leaving nothing.

:func:`near_front` widens a frontier for routing: a front of two points (one fast model, one
accurate one) leaves a per-query router nothing to choose, while a configuration that is a
little worse on average may be the best one for a whole class of queries.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from flowfront.compile.enumeration import (
    FrontTable,
    compose_front,
    decode,
    encode,
    enumerate_front,
    nsga2_front,
    prune_dominated_choices,
)
from flowfront.compile.pareto import pareto_mask
from flowfront.compile.proxy import Proxy, Slot, Structure
from flowfront.flow import FlowVisitor, decided
from flowfront.space import Configuration
from flowfront.spec import Execution

Objective = Literal["latency", "cost", "both"]
# Chosen by the router's cross-validated expected utility on the train splits (docs/router.md):
# on model-route 0.2 adds the three models a router gains most from; qa-cascade fills the cap.
NEAR_FRONT = 0.2
MAX_CANDIDATES = 24


def objective_columns(objective: Objective, execution: Execution) -> list[str]:
    latency = f"latency_{execution}_s"
    return {
        "latency": ["accuracy", latency],
        "cost": ["accuracy", "cost_usd"],
        "both": ["accuracy", latency, "cost_usd"],
    }[objective]


@dataclass
class FrontPoint:
    structure: Structure
    digits: np.ndarray
    estimates: dict[str, float]


@dataclass
class SearchResult:
    points: list[FrontPoint]
    method: str
    n_evaluated: int
    space_size: int
    seconds: float
    sample: dict[str, np.ndarray]  # evaluated points for plotting (sampled when huge)


def _prune(proxy: Proxy, structure: Structure, columns: list[str]) -> Structure:
    """Drop choices dominated within their own slot (exact when the proxy is monotone)."""
    slots = []
    for slot in structure.slots:
        arrays = proxy._arrays[slot.node]
        F = np.stack(
            [arrays["acc"][slot.choices]]
            + [
                arrays["lat"][slot.choices] if c.startswith("latency") else arrays["cost"][slot.choices]
                for c in columns[1:]
            ],
            axis=1,
        )
        keep = prune_dominated_choices(F)
        slots.append(Slot(slot.node, slot.index, slot.choices[np.sort(keep)]))
    return Structure(structure.knobs, tuple(slots))


def _evaluator(proxy: Proxy, structure: Structure, columns: list[str]):
    def evaluate(digits: np.ndarray) -> np.ndarray:
        est = proxy.evaluate(structure, digits)
        return np.stack([est[c] for c in columns], axis=1)

    return evaluate


def search(
    proxy: Proxy,
    *,
    objective: Objective = "latency",
    execution: Execution = "parallel",
    max_enumerate: int = 5_000_000,
    nsga_trials: int = 20_000,
    seed: int = 0,
    sample_size: int = 20_000,
) -> SearchResult:
    """The proxy frontier of the (filtered) design space."""
    started = time.perf_counter()
    columns = objective_columns(objective, execution)
    maximize = (True,) + (False,) * (len(columns) - 1)
    fronts, methods, n_evaluated, total = [], set(), 0, 0
    rng = np.random.default_rng(seed)
    sample_parts = []
    for structure in proxy.structures():
        total += structure.size
        if proxy.mode == "independent" and not proxy.may_repeat_a_call(structure):
            # exact only when every slot's estimate is monotone in its own choice: a repeated call
            # (free, and agreeing with itself) is not, so such structures are searched whole
            structure = _prune(proxy, structure, columns)
        evaluate = _evaluator(proxy, structure, columns)
        tree = _product_tree(proxy, structure) if structure.size > max_enumerate else None
        if structure.size <= max_enumerate:
            F, codes = enumerate_front(evaluate, structure.radices, maximize=maximize)
            methods.add("enumerate")
            n_evaluated += structure.size
        elif tree is not None:
            F, codes = _compose(proxy, structure, tree, columns, execution, maximize)
            methods.add("compose")
            n_evaluated += int(sum(len(s.choices) for s in structure.slots))
        else:
            F, codes = nsga2_front(
                evaluate, structure.radices, n_trials=nsga_trials, seed=seed, maximize=maximize
            )
            methods.add("nsga2")
            n_evaluated += nsga_trials
        fronts.append((structure, F, codes))
        sample_parts.append(_sample(proxy, structure, rng, sample_size))
    points = _merge(proxy, fronts, maximize)
    sample = {k: np.concatenate([s[k] for s in sample_parts]) for k in sample_parts[0]}
    return SearchResult(
        points, "+".join(sorted(methods)), n_evaluated, total, time.perf_counter() - started, sample
    )


def _sample(proxy: Proxy, structure: Structure, rng: np.random.Generator, size: int) -> dict[str, np.ndarray]:
    if structure.size <= size:
        codes = np.arange(structure.size, dtype=np.int64)
    else:
        codes = rng.integers(0, structure.size, size=size, dtype=np.int64)
    return proxy.evaluate(structure, decode(codes, structure.radices))


def _merge(proxy: Proxy, fronts, maximize) -> list[FrontPoint]:
    all_F = np.concatenate([F for _, F, _ in fronts])
    owner = np.concatenate([np.full(len(F), i) for i, (_, F, _) in enumerate(fronts)])
    codes = np.concatenate([c for _, _, c in fronts])
    keep = np.flatnonzero(pareto_mask(all_F, maximize))
    points = []
    for i in keep:
        structure = fronts[owner[i]][0]
        digits = decode(np.array([codes[i]]), structure.radices)[0]
        est = proxy.evaluate(structure, digits[None, :])
        points.append(FrontPoint(structure, digits, {k: float(v[0]) for k, v in est.items()}))
    points.sort(key=lambda pt: (pt.estimates["latency_sequential_s"], -pt.estimates["accuracy"]))
    return points


def _product_tree(proxy: Proxy, structure: Structure):
    """The flow as a tree of ("seq"|"par", children) over slot positions, when the proxy's
    estimate is a product of success over every call (each call feeds the output), latency a
    sum/max and cost a sum: then sub-frontiers compose exactly. None otherwise."""
    wf = proxy.workflow
    try:
        tree = _ProductTree(wf, structure).flow(wf.flow)
    except _NotProductForm:
        return None
    return tree if _feeds_output(wf, {s.node for s in structure.slots}) else None


class _NotProductForm(Exception):
    """A step whose estimate is not a product of its calls' successes."""


class _ProductTree(FlowVisitor[None, Any]):
    """The flow pass behind :func:`_product_tree`: llm calls become slot positions, parallel
    branches ("par", ...), a knob-decided branch the branch taken; any other step ends it."""

    def __init__(self, workflow, structure: Structure) -> None:
        super().__init__(workflow)
        self.structure = structure
        self.position = {(s.node, s.index): j for j, s in enumerate(structure.slots)}
        self.seen: dict[str, int] = {}

    def flow(self, flow, ctx: None = None):
        return ("seq", [self.step(step, ctx) for step in flow])

    def llm(self, name, node, ctx):
        i = self.seen.get(name, 0)
        self.seen[name] = i + 1
        return self.position[(name, i)]

    def parallel(self, step, ctx):
        return ("par", [self.flow(b) for b in step.parallel])

    def branch(self, step, ctx):
        taken = decided(step.cond, self.structure.knobs)
        if taken is None:
            raise _NotProductForm  # a node-output condition mixes the branches' estimates
        return self.flow(step.then if taken else step.orelse)

    # code nodes, samples and loops are not product-form
    def code(self, name, node, ctx):
        raise _NotProductForm

    def sample(self, step, node, ctx):
        raise _NotProductForm

    def loop(self, step, ctx):
        raise _NotProductForm


def _feeds_output(wf, nodes: set[str]) -> bool:
    needed, stack = set(), [wf.output]
    while stack:
        name = stack.pop()
        if name in needed:
            continue
        needed.add(name)
        stack.extend(wf.nodes[name].upstream())
    return nodes <= needed


def _compose(proxy: Proxy, structure: Structure, tree, columns, execution, maximize):
    lat_op = "max" if execution == "parallel" else "sum"
    kinds = ["accuracy"] + ["latency" if c.startswith("latency") else "cost" for c in columns[1:]]

    def leaf(j: int) -> FrontTable:
        slot = structure.slots[j]
        arrays = proxy._arrays[slot.node]
        F = np.stack([arrays["acc"][slot.choices]] + [
            arrays["lat"][slot.choices] if k == "latency" else arrays["cost"][slot.choices] for k in kinds[1:]
        ], axis=1)
        table = FrontTable.leaf(F, maximize)
        return table, [j]

    def fold(node):
        if isinstance(node, int):
            return leaf(node)
        op, children = node
        parts = [fold(c) for c in children if not (isinstance(c, tuple) and not c[1])]
        tables = [t for t, _ in parts]
        order = [j for _, js in parts for j in js]
        acc_op = "prod"  # every call feeds the output, in parallel branches too
        return compose_front(tables, "par" if op == "par" else "seq", acc_op=acc_op,
                             lat_op=lat_op if op == "par" else "sum", columns=kinds, maximize=maximize), order

    table, order = fold(tree)
    digits = np.empty((len(table), len(structure.slots)), dtype=np.int64)
    digits[:, order] = table.choices
    return table.F, encode(digits, structure.radices)


def sample_configurations(
    proxy: Proxy, n: int, seed: int, exclude: set[str] | None = None
) -> list[tuple[dict, dict]]:
    """Distinct configurations drawn uniformly from the whole (filtered) space, with their proxy
    estimates: a structure with probability proportional to its size, then uniform digits."""
    rng = np.random.default_rng(seed)
    structures = proxy.structures()
    sizes = np.array([s.size for s in structures], dtype=float)
    out, seen, attempts = [], set(exclude or ()), 0
    while len(out) < n and attempts < n * 50:
        attempts += 1
        s = structures[rng.choice(len(structures), p=sizes / sizes.sum())]
        digits = decode(np.array([rng.integers(0, s.size)]), s.radices)
        config = proxy.config(s, digits[0])
        key = Configuration.parse(config).key()
        if key in seen:
            continue
        seen.add(key)
        est = {k: float(v[0]) for k, v in proxy.evaluate(s, digits).items()}
        out.append((config, est))
    return out


def regret(F: np.ndarray, front: np.ndarray, lambdas: np.ndarray) -> np.ndarray:
    """Per row of ``F``, the accuracy it loses against ``front`` at its most favourable trade-off.

    ``F`` (n, d) and ``front`` (m, d) hold accuracy then d - 1 normalised costs (latency, cost);
    ``lambdas`` (g, d - 1) are the trade-offs tried, utility being ``acc - costs @ lambda``. The
    result is ``min_g (max_front U_g - U_g(row))``: 0 for a point some trade-off prefers to the
    whole front, and a point tied in latency with a front point still loses its accuracy gap
    (an additive epsilon-dominance test would keep every such tie).
    """
    def utility(A: np.ndarray) -> np.ndarray:
        return A[:, :1] - A[:, 1:] @ lambdas.T  # (rows, g)

    best = utility(front).max(axis=0)
    out = np.empty(len(F))
    step = max(1, 4_000_000 // len(lambdas))  # chunks keep the (chunk, g) utility block near 32 MB
    for start in range(0, len(F), step):
        out[start : start + step] = (best - utility(F[start : start + step])).min(axis=1)
    return np.maximum(out, 0.0)


def _lambda_grid(d: int) -> np.ndarray:
    """Trade-offs on normalised axes: 0 and 48 log-spaced values per cost axis (d - 1 axes)."""
    values = np.concatenate([[0.0], np.geomspace(1e-3, 1e3, 48)])
    return np.stack(np.meshgrid(*[values] * (d - 1), indexing="ij"), axis=-1).reshape(-1, d - 1)


def near_front(
    proxy: Proxy,
    points: list[FrontPoint],
    *,
    epsilon: float,
    max_size: int,
    objective: Objective = "latency",
    execution: Execution = "parallel",
    pool_size: int = 200_000,
    seed: int = 0,
) -> list[FrontPoint]:
    """Configurations to add to a frontier: those within ``epsilon`` of it (see :func:`regret`,
    cost axes normalised by the front's range), fewest regret first, until the frontier has
    ``max_size`` points. Structures larger than ``pool_size`` are sampled uniformly (seeded)."""
    columns = objective_columns(objective, execution)
    front = np.array([[pt.estimates[c] for c in columns] for pt in points])
    lo, span = front[:, 1:].min(axis=0), np.ptp(front[:, 1:], axis=0)
    span = np.where(span > 0, span, np.where(lo != 0, np.abs(lo), 1.0))

    def normalised(F: np.ndarray) -> np.ndarray:
        return np.hstack([F[:, :1], (F[:, 1:] - lo) / span])

    lambdas = _lambda_grid(len(columns))
    taken = {Configuration.parse(proxy.config(pt.structure, pt.digits)).key() for pt in points}
    rng = np.random.default_rng(seed)
    found: list[tuple[float, int, Structure, np.ndarray]] = []
    for structure in proxy.structures():
        codes = (np.arange(structure.size, dtype=np.int64) if structure.size <= pool_size
                 else np.unique(rng.integers(0, structure.size, size=pool_size, dtype=np.int64)))
        digits = decode(codes, structure.radices)
        est = proxy.evaluate(structure, digits)
        r = regret(normalised(np.stack([est[c] for c in columns], axis=1)), normalised(front), lambdas)
        near = np.flatnonzero(r <= epsilon)
        for i in near[np.argsort(r[near], kind="stable")][: max_size + len(points)]:  # front points included
            found.append((float(r[i]), len(found), structure, digits[i]))
    out: list[FrontPoint] = []
    for _, _, structure, dig in sorted(found, key=lambda f: f[:2]):
        if len(points) + len(out) >= max_size:
            break
        key = Configuration.parse(proxy.config(structure, dig)).key()
        if key not in taken:
            taken.add(key)
            est = proxy.evaluate(structure, dig[None, :])
            out.append(FrontPoint(structure, dig, {k: float(v[0]) for k, v in est.items()}))
    return out
