"""Frontier search over a design space: exhaustive enumeration, exact composition, NSGA-II.

A configuration assigns one choice to every slot. With ``radices[k]`` choices in slot k, a
configuration is the mixed-radix integer (its *code*) whose digits are the choice indices,
slot 0 most significant, so sorting codes sorts configurations lexicographically and "the
lowest code" is the tie-break everywhere.

Objective columns follow :mod:`compile.pareto`: column 0 is accuracy (maximised), the others
latency and/or cost (minimised) unless ``maximize`` says otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from flowfront.compile.pareto import StreamingFront, pareto_mask
from flowfront.errors import CompileError

__all__ = [
    "COMBINERS",
    "FrontTable",
    "combine",
    "compose_front",
    "decode",
    "encode",
    "enumerate_front",
    "nsga2_front",
    "prune_dominated_choices",
    "space_size",
]

Evaluate = Callable[[np.ndarray], np.ndarray]

_MAX_CODES = 2**63  # codes are int64, so the largest code is 2**63 - 1

# Monotone (non-decreasing in each argument) binary combiners; see compose_front.
COMBINERS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "prod": np.multiply,  # every step must succeed
    "any": lambda a, b: 1.0 - (1.0 - a) * (1.0 - b),  # at least one branch succeeds
    "sum": np.add,  # sequential time, or any money spent
    "max": np.maximum,  # parallel branches: the slowest one decides
}
_PRESETS = {"seq": ("prod", "sum", "sum"), "par": ("any", "max", "sum")}
_COLUMN_KINDS = {3: ("accuracy", "latency", "cost"), 2: ("accuracy", "latency")}


def _check_radices(radices: Sequence[int]) -> tuple[int, ...]:
    rad = tuple(int(r) for r in radices)
    if any(r < 1 for r in rad):
        raise CompileError(
            f"every slot needs at least one choice, got radices {list(rad)}",
            hint="a user filter removed every choice of a slot; relax it",
        )
    return rad


def space_size(radices: Sequence[int]) -> int:
    """Exact number of configurations (a Python int, never overflows)."""
    return math.prod(_check_radices(radices))


def _strides(radices: Sequence[int]) -> np.ndarray:
    rad = _check_radices(radices)
    size = math.prod(rad)
    if size > _MAX_CODES:
        raise CompileError(
            f"the design space has {size:.3e} configurations, more than int64 codes can number (2**63)",
            hint="use compose_front (exact, no enumeration) or nsga2_front, or filter choices first",
        )
    strides = [1] * len(rad)
    for k in range(len(rad) - 2, -1, -1):
        strides[k] = strides[k + 1] * rad[k + 1]
    return np.asarray(strides, dtype=np.int64)


def decode(codes: np.ndarray, radices: Sequence[int]) -> np.ndarray:
    """Choice indices (n, slots) of the given int64 codes (n,).

    Column-major, so each slot's column is contiguous for the per-slot gathers that an
    evaluate function does.
    """
    strides = _strides(radices)
    codes = np.asarray(codes, dtype=np.int64).reshape(-1)
    size = space_size(radices)
    if len(codes) and (codes.min() < 0 or int(codes.max()) >= size):
        raise CompileError(
            f"configuration codes must lie in [0, {size}), got [{codes.min()}, {codes.max()}]",
            hint="codes come from encode() or a frontier of this same design space",
        )
    out = np.empty((len(codes), len(strides)), dtype=np.int64, order="F")
    rest = codes
    for k in range(len(strides) - 1, -1, -1):  # peel digits off the least significant end
        rest, out[:, k] = np.divmod(rest, int(radices[k]))
    return out


def encode(choices: np.ndarray, radices: Sequence[int]) -> np.ndarray:
    """int64 codes (n,) of choice indices (n, slots); the inverse of :func:`decode`."""
    strides = _strides(radices)
    choices = np.asarray(choices, dtype=np.int64)
    if choices.ndim != 2 or choices.shape[1] != len(strides):
        raise CompileError(
            f"choices must have shape (n, {len(strides)}), got {choices.shape}",
            hint="one column per slot, in the order of radices",
        )
    rad = np.asarray(radices, dtype=np.int64)
    if choices.size and ((choices < 0).any() or (choices >= rad).any()):
        raise CompileError(
            "a choice index is out of range for its slot",
            hint=f"slot k accepts indices 0 .. radices[k]-1, radices are {list(rad)}",
        )
    return choices @ strides


def _evaluated(evaluate: Evaluate, choices: np.ndarray) -> np.ndarray:
    """Call ``evaluate`` and check that it returned one finite row per configuration."""
    F = np.asarray(evaluate(choices), dtype=np.float64)
    if F.ndim != 2 or len(F) != len(choices):
        raise CompileError(
            f"evaluate returned shape {F.shape} for {len(choices)} configurations",
            hint="evaluate(choice_idx) must return an (m, d) array, one row per configuration",
        )
    if not np.isfinite(F).all():
        raise CompileError(
            "evaluate returned NaN or infinite objectives",
            hint="check the profiles: every choice needs a measured accuracy, latency and cost",
        )
    return F


def enumerate_front(
    evaluate: Evaluate,
    radices: Sequence[int],
    *,
    chunk: int = 262_144,
    maximize: Sequence[bool] | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact frontier of the whole space by evaluating every configuration, chunk by chunk.

    Returns ``(F_front, codes)`` in code order; among configurations with identical
    objectives the lowest code is kept. Memory stays at one chunk plus the front.
    """
    _strides(radices)
    if chunk < 1:
        raise CompileError(f"chunk must be positive, got {chunk}", hint="use the default")
    total = space_size(radices)
    front = StreamingFront(maximize)
    for start in range(0, total, chunk):
        codes = np.arange(start, min(start + chunk, total), dtype=np.int64)
        front.add(_evaluated(evaluate, decode(codes, radices)), codes)
        if progress is not None:
            progress(len(codes))
    return np.array(front.F), np.array(front.ids)


@dataclass(frozen=True)
class FrontTable:
    """A small frontier with provenance: objectives ``F`` (k, d) and the choice indices
    ``choices`` (k, slots) that produced each row, rows in lexicographic order of choices."""

    F: np.ndarray
    choices: np.ndarray

    @classmethod
    def leaf(cls, F_slot: np.ndarray, maximize: Sequence[bool] | None = None) -> FrontTable:
        """The table of one slot from its per-choice objectives (r, d), dominated choices removed."""
        F_slot = np.asarray(F_slot, dtype=np.float64)
        kept = prune_dominated_choices(F_slot, maximize)
        return cls(F_slot[kept], kept[:, None])

    def codes(self, radices: Sequence[int]) -> np.ndarray:
        """Mixed-radix codes of the rows, for a space whose slots are ordered like ``choices``."""
        return encode(self.choices, radices)

    def __len__(self) -> int:
        return len(self.F)


def prune_dominated_choices(F_slot: np.ndarray, maximize: Sequence[bool] | None = None) -> np.ndarray:
    """Indices (ascending) of a slot's choices that no other choice of the slot dominates.

    Exact for frontier search whenever the workflow composes slots with monotone operators
    (see :func:`compose_front`). Apply user filters first: pruning then filtering can lose a
    choice that only a filtered-out choice dominated.
    """
    F_slot = np.asarray(F_slot, dtype=np.float64)
    if F_slot.ndim != 2 or len(F_slot) == 0:
        raise CompileError(
            f"a slot needs a non-empty (choices, objectives) table, got shape {F_slot.shape}",
            hint="a user filter removed every choice of a slot; relax it",
        )
    return np.flatnonzero(pareto_mask(F_slot, maximize)).astype(np.int64)


def _column_ops(op: str, d: int, acc_op: str | None, lat_op: str | None,
                cost_op: str | None, columns: Sequence[str] | None) -> list[str]:
    if op not in _PRESETS:
        raise CompileError(f"unknown composition {op!r}", hint=f"use one of {sorted(_PRESETS)}")
    acc, lat, cost = _PRESETS[op]
    by_kind = {"accuracy": acc_op or acc, "latency": lat_op or lat, "cost": cost_op or cost}
    kinds = tuple(columns) if columns is not None else _COLUMN_KINDS.get(d, ())
    if len(kinds) != d or any(k not in by_kind for k in kinds):
        raise CompileError(
            f"cannot name the {d} objective columns as {list(kinds)}",
            hint="pass columns=('accuracy', 'latency'|'cost', ...) with one kind per column",
        )
    ops = [by_kind[k] for k in kinds]
    unknown = [o for o in ops if o not in COMBINERS]
    if unknown:
        raise CompileError(f"unknown combiner(s) {unknown}", hint=f"use one of {sorted(COMBINERS)}")
    return ops


def combine(Fa: np.ndarray, Fb: np.ndarray, ops: Sequence[str]) -> np.ndarray:
    """Column-wise ``COMBINERS[ops[c]](Fa[..., c], Fb[..., c])``; broadcasts like numpy."""
    Fa, Fb = np.asarray(Fa, dtype=np.float64), np.asarray(Fb, dtype=np.float64)
    cols = [COMBINERS[o](Fa[..., c], Fb[..., c]) for c, o in enumerate(ops)]
    return np.stack(cols, axis=-1)


def _check_monotone(table: FrontTable, ops: Sequence[str]) -> None:
    """prod and any are monotone only on probabilities; outside [0, 1] exactness would fail."""
    for c, o in enumerate(ops):
        col = table.F[:, c]
        if o in ("prod", "any") and ((col < 0) | (col > 1)).any():
            raise CompileError(
                f"objective column {c} combined with {o!r} has values outside [0, 1]",
                hint="accuracies must be probabilities in [0, 1]",
            )


def _compose_pair(A: FrontTable, B: FrontTable, ops: Sequence[str],
                  maximize: Sequence[bool] | None, max_pairs: int) -> FrontTable:
    """Exact front of the outer product of two fronts, built in blocks of rows of A."""
    kb = len(B)
    step = max(1, max_pairs // kb)
    front = StreamingFront(maximize)
    for start in range(0, len(A), step):
        ia = np.arange(start, min(start + step, len(A)), dtype=np.int64)
        F = combine(A.F[ia, None, :], B.F[None, :, :], ops).reshape(-1, A.F.shape[1])
        # Pairs go in (row of A, row of B) order, which is lexicographic order of the choices.
        front.add(F, (ia[:, None] * kb + np.arange(kb)).reshape(-1))
    ia, ib = np.divmod(front.ids, kb)
    return FrontTable(np.array(front.F), np.concatenate([A.choices[ia], B.choices[ib]], axis=1))


def compose_front(
    children: Sequence[FrontTable],
    op: str = "seq",
    *,
    acc_op: str | None = None,
    lat_op: str | None = None,
    cost_op: str | None = None,
    columns: Sequence[str] | None = None,
    maximize: Sequence[bool] | None = None,
    max_pairs: int = 1 << 20,
) -> FrontTable:
    """Exact frontier of children combined in sequence (``"seq"``) or in parallel (``"par"``).

    ``seq``: accuracy a*b, latency a+b, cost a+b. ``par``: accuracy 1-(1-a)(1-b) (at least
    one branch right), latency max(a, b), cost a+b. ``acc_op``/``lat_op``/``cost_op`` override
    one combiner, e.g. ``lat_op="sum"`` for parallel branches under a sequential execution
    model. ``columns`` names each objective column's kind (default accuracy, latency[, cost]).
    The result's choices are the children's choice columns side by side, in the given order.

    Why folding fronts is exact: every combiner is non-decreasing in each argument (prod on
    [0, 1], any on [0, 1], sum, max). If child row a' is at least as good as a, then
    combine(a', b) is at least as good as combine(a, b), so a configuration that uses a
    dominated child row is matched or beaten by one that uses a front row instead. Hence the
    front of the whole equals the front of (front of A) x (front of B), and by induction a
    left fold over any number of children or any tree of nested calls gives the same
    objective values as enumerating the full space. Ties: each front row keeps the
    lexicographically smallest choices among the front-row combinations that reach it; a
    configuration through a *dominated* child row can tie exactly (e.g. under max), and
    enumeration may then name that one instead, with identical objectives.
    """
    if not children:
        raise CompileError("compose_front needs at least one child", hint="pass the slot tables")
    d = children[0].F.shape[1]
    if any(c.F.ndim != 2 or c.F.shape[1] != d or len(c) == 0 for c in children):
        raise CompileError(
            "children must be non-empty tables with the same number of objectives",
            hint="build each slot with FrontTable.leaf on a (choices, objectives) array",
        )
    ops = _column_ops(op, d, acc_op, lat_op, cost_op, columns)
    for child in children:
        _check_monotone(child, ops)
    out = children[0]
    for child in children[1:]:
        out = _compose_pair(out, child, ops, maximize, max_pairs)
    return out


def nsga2_front(
    evaluate: Evaluate,
    radices: Sequence[int],
    *,
    n_trials: int,
    seed: int,
    maximize: Sequence[bool] | None = None,
    population_size: int = 50,
) -> tuple[np.ndarray, np.ndarray]:
    """Approximate frontier by Optuna's NSGA-II, for spaces too large to enumerate.

    Every trial picks one choice per slot (categorical). Trials are asked one generation at
    a time so ``evaluate`` sees whole batches. Returns ``(F_front, codes)``: the exact
    non-dominated subset of everything evaluated (first evaluation wins ties), in trial
    order. Deterministic for a given seed. Without ``maximize``, one extra call on
    configuration 0 learns the number of objectives.
    """
    import optuna  # heavy; only this search path needs it

    rad = _check_radices(radices)
    _strides(rad)
    if n_trials < 1 or population_size < 2:
        raise CompileError(
            f"n_trials must be >= 1 and population_size >= 2, got {n_trials} and {population_size}",
            hint="raise n_trials / population_size",
        )
    if maximize is None:
        d = _evaluated(evaluate, np.zeros((1, len(rad)), dtype=np.int64)).shape[1]
        maximize = (True,) + (False,) * (d - 1)
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # one line per trial otherwise
    try:
        study = optuna.create_study(
            directions=["maximize" if m else "minimize" for m in maximize],
            sampler=optuna.samplers.NSGAIISampler(population_size=population_size, seed=seed),
        )
        choices, F = _run_generations(optuna, study, evaluate, rad, n_trials, population_size)
    finally:
        optuna.logging.set_verbosity(verbosity)
    codes = encode(choices, rad)
    keep = pareto_mask(F, maximize)
    return F[keep], codes[keep]


def _run_generations(optuna, study, evaluate: Evaluate, rad: tuple[int, ...], n_trials: int,
                     population_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Ask a generation, evaluate it in one batch, tell; until n_trials are spent."""
    names = [f"slot{k}" for k in range(len(rad))]
    dists = {
        name: optuna.distributions.CategoricalDistribution(list(range(r)))
        for name, r in zip(names, rad, strict=True)
    }
    chosen: list[np.ndarray] = []
    objectives: list[np.ndarray] = []
    done = 0
    while done < n_trials:
        batch = min(population_size, n_trials - done)
        trials = [study.ask(dists) for _ in range(batch)]
        choices = np.array([[t.params[n] for n in names] for t in trials], dtype=np.int64)
        choices = choices.reshape(batch, len(rad))
        F = _evaluated(evaluate, choices)
        for trial, row in zip(trials, F, strict=True):
            study.tell(trial, row.tolist())
        chosen.append(choices)
        objectives.append(F)
        done += batch
    return np.concatenate(chosen), np.concatenate(objectives)
