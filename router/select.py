"""Picking one frontier candidate from a caller's preference.

The same rules serve two callers: static selection over the frontier's estimates (arrays of
shape (K,)) and the router, which applies them to per-query predictions (shape (Q, K), one row
per query). Everything is vectorised over both axes.

Rules, in order of precedence:

* **hard limits** (``max_latency_s``, ``max_cost_usd``, ``min_accuracy``) define the feasible
  set; a candidate meets a limit when it is within it, boundary included.
* **ranking** inside the feasible set: ``acc - lambda * normalised(objective)`` when lambda is
  given; otherwise the most accurate candidate when a latency or cost cap is given; otherwise
  (only ``min_accuracy``) the one with the lowest value on the objective axis.
* **ties** are broken by lower cost, then lower latency, then higher accuracy (which only
  decides when the ranking is by the objective axis alone), then lower index, on exact values,
  so one input always gives one answer and equal estimates give equal answers in any order.
* **infeasible rows**: ``on_infeasible="error"`` raises :class:`InfeasibleError`;
  ``"nearest"`` takes the candidate with the least summed relative excess over the limits
  (ties: the ranking above) and marks the row infeasible.

A preference with no lambda and no limit means lambda = 0: the most accurate candidate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from flowfront.errors import InfeasibleError, RoutingError

__all__ = [
    "Preference",
    "Scale",
    "SelectionResult",
    "frontier_estimates",
    "lambda_sweep",
    "select",
    "select_static",
    "utility",
]

Objective = Literal["latency", "cost"]
_LIMIT_FIELDS = ("max_latency_s", "max_cost_usd", "min_accuracy")
# Lambda used when the frontier has a single candidate worth choosing: any value selects it.
_FLAT_SPAN = (0.1, 10.0)


class Preference(BaseModel):
    """How a caller trades accuracy against latency or cost.

    ``lambda`` (alias of ``lambda_``) weighs accuracy against the ``objective`` axis,
    normalised to [0, 1] over the frontier. Hard limits restrict the candidates; combined
    with lambda, lambda ranks the candidates that meet them. When nothing is set, lambda
    defaults to 0, i.e. "the most accurate candidate".

    >>> Preference.model_validate({"lambda": 0.5}).lambda_
    0.5
    >>> Preference().lambda_
    0.0
    """

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True, allow_inf_nan=False)

    lambda_: float | None = Field(default=None, alias="lambda", ge=0.0)
    max_latency_s: float | None = Field(default=None, gt=0.0)
    max_cost_usd: float | None = Field(default=None, gt=0.0)
    min_accuracy: float | None = Field(default=None, ge=0.0, le=1.0)
    objective: Objective = "latency"
    on_infeasible: Literal["error", "nearest"] = "error"

    @model_validator(mode="before")
    @classmethod
    def _default_to_most_accurate(cls, data: Any) -> Any:
        # Filled in before validation so the stored preference says what will happen.
        if not isinstance(data, dict):
            return data
        names = ("lambda", "lambda_", *_LIMIT_FIELDS)
        if all(data.get(name) is None for name in names):
            return {**{k: v for k, v in data.items() if k != "lambda_"}, "lambda": 0.0}
        return data

    @property
    def has_limits(self) -> bool:
        """Whether any hard limit is set."""
        return any(getattr(self, name) is not None for name in _LIMIT_FIELDS)


@dataclass(frozen=True)
class Scale:
    """The frontier's latency and cost ranges, fixed per frontier.

    Static selection and the router normalise with the same ``Scale`` so a lambda means the
    same trade-off for both. Values inside the range map into [0, 1]; router predictions
    outside it extrapolate linearly rather than being clipped, so they still rank correctly.
    """

    latency_min: float
    latency_max: float
    cost_min: float
    cost_max: float

    @classmethod
    def from_estimates(cls, latency: np.ndarray, cost: np.ndarray) -> Scale:
        """The ranges of the frontier's latency and cost estimates (any shape)."""
        lat, cst = _finite_array(latency, "latency"), _finite_array(cost, "cost")
        if lat.size == 0 or cst.size == 0:
            raise RoutingError(
                "cannot build a scale from an empty frontier",
                hint="compile a frontier with at least one candidate",
            )
        return cls(float(lat.min()), float(lat.max()), float(cst.min()), float(cst.max()))

    def normalise_latency(self, x: np.ndarray) -> np.ndarray:
        """Latency mapped so the frontier's fastest is 0 and slowest is 1."""
        return _normalise(x, self.latency_min, self.latency_max)

    def normalise_cost(self, x: np.ndarray) -> np.ndarray:
        """Cost mapped so the frontier's cheapest is 0 and dearest is 1."""
        return _normalise(x, self.cost_min, self.cost_max)

    def normalise(self, x: np.ndarray, objective: Objective) -> np.ndarray:
        """Normalise ``x`` on the given objective axis."""
        return self.normalise_latency(x) if objective == "latency" else self.normalise_cost(x)


def utility(accuracy: np.ndarray, value: np.ndarray, lam: float | np.ndarray, scale: Scale,
            objective: Objective = "latency") -> np.ndarray:
    """``accuracy - lam * normalised(value)``: what selection ranks by and every strategy is scored
    by (train's held-out fold, eval's expected utility, the baselines); the one place it is written."""
    return accuracy - lam * scale.normalise(value, objective)


def _normalise(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    # With a zero range the frontier does not discriminate on this axis, so every frontier
    # value maps to 0; deviations of router predictions are then measured relative to the
    # common value, which keeps the result free of units.
    span = hi - lo
    if span <= 0.0:
        span = abs(hi) if hi != 0.0 else 1.0
    return (np.asarray(x, dtype=np.float64) - lo) / span


@dataclass(frozen=True)
class SelectionResult:
    """What :func:`select` picked.

    ``index``: chosen candidate, shape () for (K,) input or (Q,) for (Q, K) input.
    ``feasible``: whether the row had a candidate meeting every limit (same shape).
    ``violation``: the chosen candidate's summed relative excess over the limits; 0 where
    feasible, and on infeasible rows the least violation any candidate reaches (those rows
    got the nearest candidate, which only happens with ``on_infeasible="nearest"``).
    """

    index: np.ndarray
    feasible: np.ndarray
    violation: np.ndarray

    @property
    def n_infeasible(self) -> int:
        """How many rows fell back to the nearest candidate."""
        return int(np.count_nonzero(~self.feasible))


def select(
    acc: np.ndarray,
    latency: np.ndarray,
    cost: np.ndarray,
    pref: Preference,
    scale: Scale,
    *,
    allowed: np.ndarray | None = None,
) -> SelectionResult:
    """Pick one candidate per row under ``pref`` (see the module docstring for the rules).

    ``acc``, ``latency`` and ``cost`` have shape (K,) or (Q, K) and broadcast against each
    other, so a router may pass per-query accuracy with the frontier's static latency.
    ``latency`` is whichever execution model (sequential or parallel) the caller serves.
    ``allowed`` (K,) or (Q, K), when given, excludes the candidates it marks False altogether
    (the service's: calling a model behind an open breaker); a row with none allowed is an error.
    Raises :class:`InfeasibleError` when a row has no feasible candidate and
    ``pref.on_infeasible == "error"``.
    """
    A, L, C, one_d = _as_rows(acc, latency, cost)
    feasible, violation = _limits(A, L, C, pref)
    if allowed is not None:
        mask = np.broadcast_to(np.asarray(allowed, dtype=bool), A.shape)
        if not mask.any(axis=1).all():
            raise RoutingError("no candidate is allowed for this query", hint="allow at least one candidate")
        feasible &= mask
        violation = np.where(mask, violation, np.inf)
    row_ok = feasible.any(axis=1)
    score = _score(A, L, C, pref, scale)
    index = _lex_argmin([np.where(feasible, -score, np.inf), C, L, -A])
    if not row_ok.all():
        nearest = _lex_argmin([violation, -score, C, L, -A])
        if pref.on_infeasible == "error":
            raise _infeasible_error(A, L, C, pref, row_ok, violation, nearest, one_d)
        index = np.where(row_ok, index, nearest)
    rows = np.arange(A.shape[0])
    chosen_violation = np.where(row_ok, 0.0, violation[rows, index])
    if one_d:
        return SelectionResult(index[0], row_ok[0], chosen_violation[0])
    return SelectionResult(index, row_ok, chosen_violation)


def _finite_array(x: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if not np.isfinite(arr).all():
        raise RoutingError(
            f"{name} estimates contain NaN or infinite values, which cannot be ranked",
            hint=f"drop or impute candidates whose {name} is unknown before selecting",
        )
    return arr


def _as_rows(
    acc: np.ndarray, latency: np.ndarray, cost: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """Validate and broadcast the estimates to (Q, K); report whether the input was (K,)."""
    arrays = [_finite_array(x, n) for x, n in ((acc, "accuracy"), (latency, "latency"), (cost, "cost"))]
    try:
        A, L, C = np.broadcast_arrays(*arrays)
    except ValueError as exc:
        shapes = ", ".join(str(a.shape) for a in arrays)
        raise RoutingError(
            f"accuracy, latency and cost estimates have incompatible shapes {shapes}",
            hint="pass arrays of shape (K,) or (Q, K) with one column per frontier candidate",
        ) from exc
    if A.ndim not in (1, 2) or A.shape[-1] == 0:
        raise RoutingError(
            f"estimates must have shape (K,) or (Q, K) with K >= 1, got {A.shape}",
            hint="pass one column per frontier candidate and, for the router, one row per query",
        )
    one_d = A.ndim == 1
    return (*(np.atleast_2d(x) for x in (A, L, C)), one_d)


def _limits(
    acc: np.ndarray, lat: np.ndarray, cost: np.ndarray, pref: Preference
) -> tuple[np.ndarray, np.ndarray]:
    """Per candidate: whether it meets every limit, and its summed relative excess."""
    feasible = np.ones(acc.shape, dtype=bool)
    violation = np.zeros(acc.shape)
    if pref.max_latency_s is not None:
        feasible &= lat <= pref.max_latency_s
        violation += np.maximum(lat - pref.max_latency_s, 0.0) / pref.max_latency_s
    if pref.max_cost_usd is not None:
        feasible &= cost <= pref.max_cost_usd
        violation += np.maximum(cost - pref.max_cost_usd, 0.0) / pref.max_cost_usd
    if pref.min_accuracy:  # a floor of 0 excludes nothing
        feasible &= acc >= pref.min_accuracy
        violation += np.maximum(pref.min_accuracy - acc, 0.0) / pref.min_accuracy
    return feasible, violation


def _score(A: np.ndarray, L: np.ndarray, C: np.ndarray, pref: Preference, scale: Scale) -> np.ndarray:
    """Higher is better: the ranking inside the feasible set (module docstring)."""
    axis = L if pref.objective == "latency" else C
    if pref.lambda_ is not None:
        return utility(A, axis, pref.lambda_, scale, pref.objective)
    if pref.max_latency_s is not None or pref.max_cost_usd is not None:
        return A
    return -axis


def _lex_argmin(keys: list[np.ndarray]) -> np.ndarray:
    """Per row, the first column minimising ``keys[0]``, ties by ``keys[1]``, ... then index.

    Narrows the tied set key by key: O(Q K) per key, with no sort and no Python loop over
    rows. Keys compare exactly, so the answer is deterministic.
    """
    tied = np.ones(keys[0].shape, dtype=bool)
    for key in keys:  # a loop over the few keys, not over rows or candidates
        masked = np.where(tied, key, np.inf)
        tied &= masked == masked.min(axis=1, keepdims=True)
        if not (tied.sum(axis=1) > 1).any():  # no ties left: later keys cannot matter
            break
    return tied.argmax(axis=1)  # argmax returns the first True: the lowest index


def _infeasible_error(
    A: np.ndarray,
    L: np.ndarray,
    C: np.ndarray,
    pref: Preference,
    row_ok: np.ndarray,
    violation: np.ndarray,
    nearest_index: np.ndarray,
    one_d: bool,
) -> InfeasibleError:
    """An error naming the limits, the closest achievable values and the nearest candidate,
    described for the first infeasible row."""
    row = int(np.flatnonzero(~row_ok)[0])
    a, lat, c = A[row], L[row], C[row]
    best = {"max_latency_s": lat.min(), "max_cost_usd": c.min(), "min_accuracy": a.max()}
    word = {"max_latency_s": "fastest", "max_cost_usd": "cheapest", "min_accuracy": "most accurate"}
    parts = [
        f"{name}={getattr(pref, name):g} ({word[name]} candidate: {best[name]:g})"
        for name in _LIMIT_FIELDS
        if getattr(pref, name)  # a floor of 0 constrains nothing
    ]
    i = int(nearest_index[row])
    nearest: dict[str, Any] = {
        "index": i,
        "accuracy": float(a[i]),
        "latency_s": float(lat[i]),
        "cost_usd": float(c[i]),
        "violation": float(violation[row, i]),
    }
    where = "no frontier candidate meets"
    if not one_d:
        n_bad = int(np.count_nonzero(~row_ok))
        where = f"{n_bad} of {len(row_ok)} queries have no candidate meeting (first: query {row})"
        nearest |= {"row": row, "n_infeasible": n_bad}
    message = (
        f"{where} {' and '.join(parts)}; nearest is candidate {i} (accuracy {a[i]:g}, "
        f"latency {lat[i]:g} s, cost ${c[i]:g})"
    )
    hint = "relax the limit, or set on_infeasible='nearest' to accept the closest candidate"
    return InfeasibleError(message, nearest=nearest, hint=hint)


def lambda_sweep(
    scale: Scale,
    acc: np.ndarray,
    latency: np.ndarray,
    cost: np.ndarray,
    n: int = 9,
    objective: Objective = "latency",
) -> np.ndarray:
    """``n`` increasing lambda values spanning the frontier, starting at 0.

    The candidates that some lambda selects are the vertices of the upper convex hull of
    (normalised objective, accuracy); the selection switches at the hull's slopes
    (breakpoints). One lambda is placed inside each vertex's interval: 0 for the most
    accurate, the geometric mean of the two enclosing breakpoints for inner vertices and twice
    the last breakpoint for the fastest/cheapest (plus half the first breakpoint when lambda = 0
    resolves an accuracy tie to a slower, cheaper candidate). With more vertices than ``n`` these are
    subsampled evenly (keeping both ends); with fewer, extra values are spread geometrically
    between them, so consecutive values change the selection wherever the frontier allows.
    """
    if n < 2:
        raise RoutingError(
            f"a lambda sweep needs n >= 2 values, got {n}",
            hint="ask for at least two values: the most accurate end and the cheapest end",
        )
    A, L, C, one_d = _as_rows(acc, latency, cost)
    if not one_d:
        raise RoutingError(
            f"lambda_sweep takes the frontier's static estimates of shape (K,), got {A.shape}",
            hint="sweep over the frontier's estimates, then apply each lambda to router predictions",
        )
    x = scale.normalise(L[0] if objective == "latency" else C[0], objective)
    breaks = _hull_breakpoints(x, A[0])
    # At lambda = 0 ties in accuracy go to the cheaper candidate, which may not be the hull's
    # first vertex (the fastest of the most accurate); that vertex then needs its own value.
    at_zero = int(_lex_argmin([-A, C, L])[0])
    head = bool(x[at_zero] > x[A[0] == A[0].max()].min())
    reps = _representatives(breaks, head)
    if len(reps) >= n:
        return reps[np.round(np.linspace(0, len(reps) - 1, n)).astype(np.int64)]
    anchors = reps[1:] if len(reps) >= 3 else _two_anchors(breaks)
    return np.concatenate([[0.0], _geometric_fill(anchors, n - 1)])


def _hull_breakpoints(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Increasing lambdas at which argmax(y - lambda * x) moves along the upper hull.

    Walks the hull from the most accurate point towards smaller x, one vertex per step (each
    step vectorised over candidates; hulls have a handful of vertices).
    """
    cur = int(np.lexsort((x, -y))[0])  # most accurate; ties -> smallest x
    breaks: list[float] = []
    while True:
        left = x < x[cur]
        if not left.any():
            return np.asarray(breaks)
        slope = np.where(left, (y[cur] - y) / np.where(left, x[cur] - x, 1.0), np.inf)
        lam = float(slope.min())
        on_edge = slope == lam
        nxt = int(np.flatnonzero(on_edge)[np.argmin(x[on_edge])])  # furthest collinear point
        # Rounding can make a slope not exceed the previous one; the vertex in between then
        # owns no lambda interval, so the new edge simply replaces its predecessor.
        if breaks and lam <= breaks[-1]:
            lam = breaks.pop()
        breaks.append(max(lam, 0.0))
        cur = nxt


def _representatives(breaks: np.ndarray, head: bool) -> np.ndarray:
    """One lambda strictly inside each hull vertex's interval: 0 for the first, and with
    ``head`` also a positive value inside the first interval."""
    first = [0.0, 0.5 * breaks[0] if len(breaks) else 1.0] if head else [0.0]
    if len(breaks) == 0:
        return np.asarray(first)
    inner = np.sqrt(breaks[:-1] * breaks[1:])
    return np.concatenate([first, inner, [2.0 * breaks[-1]]])


def _two_anchors(breaks: np.ndarray) -> np.ndarray:
    """Span for the geometric fill when the hull has at most two vertices."""
    if len(breaks) == 0 or breaks[0] <= 0.0:
        return np.asarray(_FLAT_SPAN)
    return np.asarray([0.5 * breaks[0], 2.0 * breaks[0]])


def _geometric_fill(anchors: np.ndarray, m: int) -> np.ndarray:
    """``m`` increasing values: every anchor, plus extras spaced geometrically inside the gaps
    (spread evenly over the gaps)."""
    if m <= len(anchors):  # only when every lambda selects the same candidate
        return anchors[len(anchors) - m :]
    gaps = len(anchors) - 1
    extra = m - len(anchors)
    counts = np.full(gaps, extra // gaps)
    counts[: extra % gaps] += 1
    gap = np.repeat(np.arange(gaps), counts)
    step = np.arange(len(gap)) - np.repeat(np.cumsum(counts) - counts, counts) + 1
    log_a = np.log(anchors)
    fill = np.exp(log_a[gap] + step / (counts[gap] + 1) * (log_a[gap + 1] - log_a[gap]))
    return np.sort(np.concatenate([anchors, fill]))


def frontier_estimates(frontier) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The proxy's (accuracy, latency under the frontier's execution model, cost) per candidate:
    what static selection chooses on, in the service and the CLI alike."""
    est = [c.estimates for c in frontier.candidates]
    return (np.array([e.accuracy for e in est]),
            np.array([e.latency(frontier.execution) for e in est]),
            np.array([e.cost_usd for e in est]))


def select_static(frontier, pref: Preference) -> tuple[int, int | None, bool]:
    """Static selection on a frontier: (chosen index, runner-up index or None, feasible)."""
    acc, lat, cost = frontier_estimates(frontier)
    scale = Scale.from_estimates(lat, cost)
    picked = select(acc, lat, cost, pref, scale)
    index = int(picked.index)
    others = np.flatnonzero(np.arange(len(acc)) != index)
    runner = None
    if len(others):
        rest = select(
            acc[others],
            lat[others],
            cost[others],
            pref.model_copy(update={"on_infeasible": "nearest"}),
            scale,
        )
        runner = int(others[int(rest.index)])
    return index, runner, bool(picked.feasible)
