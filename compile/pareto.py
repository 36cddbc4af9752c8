"""Exact Pareto primitives: non-dominated masks, a streaming front and hypervolume.

Objectives are the columns of a float64 matrix ``F`` of shape (n, d). By convention column 0
is accuracy (maximised) and the other columns are latency and/or cost (minimised); every
function takes ``maximize`` to say otherwise. Internally every column is turned into one to
minimise, so "p dominates q" reads ``G[p] <= G[q]`` everywhere with at least one ``<``.

Ties are stable: a point equal to an earlier one (lower index) is dropped, so one input order
always gives one output.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

import numpy as np

from flowfront.errors import CompileError

__all__ = ["StreamingFront", "hypervolume", "pareto_mask"]

# Above this many rows, pareto_mask first drops rows beaten by the front of an evenly spaced
# sample of this many rows: one table lookup per row instead of the full sweep.
_PREFILTER_MIN_ROWS = 4096
# Bins per leading axis of the dominance lookup table (at most 258 x 258 cells).
_BINS = 256


def _default_maximize(d: int) -> tuple[bool, ...]:
    return (True,) + (False,) * (d - 1)


def _to_minimised(F: np.ndarray, maximize: Sequence[bool] | None) -> np.ndarray:
    """Validate ``F`` and return a copy in which every column is to be minimised."""
    F = np.asarray(F, dtype=np.float64)
    if F.ndim != 2:
        raise CompileError(
            f"objectives must be a 2-D array (points x objectives), got shape {F.shape}",
            hint="pass one row per configuration and one column per objective",
        )
    d = F.shape[1]
    flags = _default_maximize(d) if maximize is None else tuple(bool(m) for m in maximize)
    if len(flags) != d:
        raise CompileError(
            f"maximize has {len(flags)} entries but the objectives have {d} columns",
            hint="give one True/False per objective column",
        )
    if np.isnan(F).any():
        raise CompileError(
            "objectives contain NaN, which cannot be ranked",
            hint="drop or impute configurations whose accuracy, latency or cost is unknown",
        )
    # Adding 0.0 turns -0.0 into 0.0 so that later integer ranks treat them as one value.
    return np.where(np.asarray(flags), -F, F) + 0.0


def pareto_mask(F: np.ndarray, maximize: Sequence[bool] | None = None) -> np.ndarray:
    """Boolean mask of the non-dominated rows of ``F`` (shape (n, d), d in {1, 2, 3}).

    A row is dropped when another row is at least as good on every objective and strictly
    better on one, or when it repeats an earlier row exactly (the lowest index is kept).
    ``maximize`` defaults to ``(True, False, ...)``: accuracy up, latency/cost down.
    2-D runs in O(n log n); 3-D in O(n log^2 n) worst case, far less when most points are
    dominated (the usual case for enumerated configurations).
    """
    G = _to_minimised(F, maximize)
    n, d = G.shape
    if n == 0:
        return np.zeros(0, dtype=bool)
    if d == 1:
        mask = np.zeros(n, dtype=bool)
        mask[int(np.argmin(G[:, 0]))] = True
        return mask
    if d in (2, 3):
        cand = _prefilter(G)
        mask = np.zeros(n, dtype=bool)
        mask[cand[(_mask_2d if d == 2 else _mask_3d)(G[cand])]] = True
        return mask
    raise CompileError(
        f"pareto_mask supports 1 to 3 objectives, got {d}",
        hint="keep accuracy plus latency and/or cost",
    )


def _mask_2d(G: np.ndarray) -> np.ndarray:
    """Indices kept in 2-D: sort by (g0, g1, index); keep g1 that beats every earlier g1."""
    order = np.lexsort((G[:, 1], G[:, 0]))  # lexsort is stable: equal rows stay in index order
    g1 = G[order, 1]
    best_before = np.empty_like(g1)
    best_before[0] = np.inf
    np.minimum.accumulate(g1[:-1], out=best_before[1:])
    keep = g1 < best_before
    keep[0] = True  # nothing precedes the lexicographic minimum, even when g1 is +inf
    return order[keep]


def _mask_3d(G: np.ndarray) -> np.ndarray:
    """Indices kept in 3-D: sweep in dominance order, asking whether an earlier row beats
    each row on (g1, g2)."""
    r0, r1, r2 = (_dense_rank(G[:, k]) for k in range(3))
    # Any weak dominator of p has a strictly smaller key (or an equal one and a lower index,
    # kept by the stable sort), so "earlier and no worse on (g1, g2)" means "dominates".
    key = r0 * (int(r1.max()) + int(r2.max()) + 2) + r1 + r2
    order = np.argsort(key, kind="stable")
    return order[_prefix_undominated(r1[order], r2[order])]


def _dense_rank(x: np.ndarray) -> np.ndarray:
    """Integer ranks with equal values sharing a rank, so comparisons survive exactly."""
    return np.unique(x, return_inverse=True)[1].astype(np.int64).reshape(-1)


def _beaten_by(A: np.ndarray, G: np.ndarray) -> np.ndarray:
    """For each row of G, whether a row of A is strictly better on the leading columns and no
    worse on the last, hence strictly dominates it (all minimised). Conservative: a False
    may still hide a dominance, which the exact sweep then finds.

    The leading one or two columns are cut into equal-width bins by a monotone map, so a row
    of A in a strictly lower bin is strictly smaller there. A table holds per bin cell the
    least last column among rows of A in strictly lower bins on every leading axis, so each
    row of G costs one lookup instead of binary searches.
    """
    A = A[np.isfinite(A).all(axis=1)]  # a subset of eliminators is still sound
    if len(A) == 0:
        return np.zeros(len(G), dtype=bool)
    lead = G.shape[1] - 1
    pairs = [_bin_pair(A[:, k], G[:, k]) for k in range(lead)]
    table = np.full((_BINS + 2,) * lead, np.inf)
    # A row of A in bin b lands in cell b + 1, so after the running minima cell c only sees
    # rows of A in bins < c on every leading axis.
    np.minimum.at(table, tuple(a + 1 for a, _ in pairs), A[:, -1])
    for axis in range(lead):
        np.minimum.accumulate(table, axis=axis, out=table)
    return table[tuple(g for _, g in pairs)] <= G[:, -1]


def _bin_pair(a: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bin indices in [0, _BINS] of a (finite) and g, by one monotone map over a's range.

    Floating-point subtraction, multiplication, floor and clip are all monotone, so
    bin(x) < bin(y) implies x < y, which is all the lookup table relies on.
    """
    lo, hi = float(a.min()), float(a.max())
    scale = _BINS / (hi - lo) if hi > lo else 1.0

    def bins(x: np.ndarray) -> np.ndarray:
        return np.clip(np.floor((x - lo) * scale), 0, _BINS).astype(np.intp)

    return bins(a), bins(g)


def _prefilter(G: np.ndarray) -> np.ndarray:
    """Indices of the rows not strictly dominated by the front of an evenly spaced sample.

    Dropping strictly dominated rows never changes the answer (front rows are never strictly
    dominated), and on enumerated spaces it removes nearly all rows at the cost of one table
    lookup each.
    """
    n, d = G.shape
    if n < _PREFILTER_MIN_ROWS:
        return np.arange(n)
    sample = G[np.linspace(0, n - 1, _PREFILTER_MIN_ROWS).astype(np.int64)]
    anchors = sample[(_mask_2d if d == 2 else _mask_3d)(sample)]
    return np.flatnonzero(~_beaten_by(anchors, G))


def _prefix_undominated(r1: np.ndarray, r2: np.ndarray) -> np.ndarray:
    """Positions p with no q < p such that r1[q] <= r1[p] and r2[q] <= r2[p].

    Bottom-up divide and conquer over positions: at the level with half-width 2**level every
    surviving right-half point is checked against the survivors of its left sibling, all
    segments at once, by one sort on (segment, r1) and a running minimum of r2 that is offset
    per segment so it never leaks across segments. Using only survivors is exact: whoever
    eliminated a left point also precedes, and beats, anything that point beats.
    """
    m = len(r1)
    alive = np.arange(m, dtype=np.int64)
    width = 2 * (int(r1.max(initial=0)) + 1)
    top = int(r2.max(initial=0)) + 1  # stands for "no left point seen yet"
    level = 0  # half-width s = 2**level; shifts stand in for slow int64 divisions
    while (1 << level) < m and len(alive) > 1:
        seg = alive >> (level + 1)
        right = (alive >> level) & 1
        order = np.argsort(seg * width + 2 * r1[alive] + right)
        seg_o, right_o = seg[order], right[order].astype(bool)
        r2_o = r2[alive[order]]
        offset = (seg_o[-1] - seg_o) * (top + 1)
        best_left = np.minimum.accumulate(np.where(right_o, top, r2_o) + offset) - offset
        beaten = np.zeros(len(alive), dtype=bool)
        beaten[order] = right_o & (best_left <= r2_o)
        alive = alive[~beaten]
        level += 1
    return alive


class StreamingFront:
    """A Pareto front grown chunk by chunk, each row carrying an int64 id (a config code).

    Merging keeps exactly what :func:`pareto_mask` would keep on the concatenation of all
    chunks in insertion order, ties included: the front is held in insertion order, so an
    exact repeat in a later chunk always loses to the earlier row.
    """

    def __init__(self, maximize: Sequence[bool] | None = None) -> None:
        self.maximize = None if maximize is None else tuple(bool(m) for m in maximize)
        self._F: np.ndarray | None = None
        self._ids = np.zeros(0, dtype=np.int64)

    def add(self, F_chunk: np.ndarray, ids_chunk: np.ndarray) -> None:
        """Merge a chunk of objectives (m, d) with their ids (m,) into the front."""
        F_chunk = np.asarray(F_chunk, dtype=np.float64)
        ids_chunk = np.asarray(ids_chunk, dtype=np.int64).reshape(-1)
        if F_chunk.ndim != 2 or len(F_chunk) != len(ids_chunk):
            raise CompileError(
                f"chunk of shape {F_chunk.shape} does not match {len(ids_chunk)} ids",
                hint="pass one id per objective row",
            )
        if self._F is not None and F_chunk.shape[1] != self._F.shape[1]:
            raise CompileError(
                f"chunk has {F_chunk.shape[1]} objectives, the front has {self._F.shape[1]}",
                hint="every chunk must use the same objective columns",
            )
        if self._F is not None and len(self._F) and len(F_chunk) and F_chunk.shape[1] in (2, 3):
            # Chunk rows that a front row strictly dominates can go before the exact merge.
            front, chunk = _to_minimised(self._F, self.maximize), _to_minimised(F_chunk, self.maximize)
            fresh = ~_beaten_by(front, chunk)
            F_chunk, ids_chunk = F_chunk[fresh], ids_chunk[fresh]
        F_all = F_chunk if self._F is None else np.concatenate([self._F, F_chunk])
        ids_all = np.concatenate([self._ids, ids_chunk])
        keep = pareto_mask(F_all, self.maximize)
        self._F, self._ids = F_all[keep], ids_all[keep]
        self._F.flags.writeable = False
        self._ids.flags.writeable = False

    @property
    def F(self) -> np.ndarray:
        """Objectives of the current front, (k, d), read-only, in insertion order."""
        return np.zeros((0, 0)) if self._F is None else self._F

    @property
    def ids(self) -> np.ndarray:
        """Ids of the current front, (k,), read-only, aligned with :attr:`F`."""
        return self._ids

    def __len__(self) -> int:
        return len(self._ids)


def hypervolume(
    F: np.ndarray, ref: Sequence[float], maximize: Sequence[bool] | None = None
) -> float:
    """Exact volume dominated by ``F`` (d in {2, 3}) and bounded by the reference point.

    Points that do not strictly beat ``ref`` on every objective add nothing. 3-D works by
    slicing along the last objective with an incrementally kept 2-D staircase.
    """
    G = _to_minimised(F, maximize)
    d = G.shape[1]
    r = _to_minimised(np.asarray(ref, dtype=np.float64).reshape(1, -1), maximize)[0]
    if d not in (2, 3) or len(r) != d:
        raise CompileError(
            f"hypervolume needs 2 or 3 objectives and a reference of the same length, "
            f"got {d} objectives and {len(r)} reference values",
            hint="pass ref with one value per objective column",
        )
    if not np.isfinite(r).all():
        raise CompileError("hypervolume reference point must be finite", hint="pick a finite ref")
    inside = G[np.all(np.less(G, r), axis=1)]
    if len(inside) == 0:
        return 0.0
    inside = inside[pareto_mask(inside, (False,) * d)]
    return _hv_2d(inside, r) if d == 2 else _hv_3d(inside, r)


def _hv_2d(G: np.ndarray, r: np.ndarray) -> float:
    """Area of a minimising 2-D front bounded by r (all points strictly inside)."""
    G = G[pareto_mask(G, (False, False))]
    G = G[np.argsort(G[:, 0], kind="stable")]  # g1 then strictly decreases
    widths = np.diff(np.append(G[:, 0], r[0]))
    return float(np.sum(widths * (r[1] - G[:, 1])))


def _hv_3d(G: np.ndarray, r: np.ndarray) -> float:
    """Sweep upward in g2; the area of the 2-D staircase of points seen so far, times the gap
    to the next point's g2, is one slab. The staircase is updated in place, so each point is
    inserted and removed once: O(k log k) comparisons for a front of k points."""
    G = G[np.argsort(G[:, 2], kind="stable")]
    tops = np.append(G[1:, 2], r[2])
    xs: list[float] = []  # staircase: xs strictly increasing, ys strictly decreasing
    ys: list[float] = []
    area = total = 0.0
    for (x, y, z), top in zip(G.tolist(), tops.tolist(), strict=True):
        area += _staircase_insert(xs, ys, x, y, float(r[0]), float(r[1]))
        total += area * (top - z)
    return total


def _staircase_insert(xs: list[float], ys: list[float], x: float, y: float, rx: float, ry: float) -> float:
    """Insert (x, y) into a minimising 2-D staircase bounded by (rx, ry); return the area gained."""
    i = bisect.bisect_left(xs, x)
    if (i < len(xs) and xs[i] == x and ys[i] <= y) or (i > 0 and ys[i - 1] <= y):
        return 0.0  # an existing point is no worse on both axes
    end = i
    while end < len(xs) and ys[end] >= y:  # points the new one covers
        end += 1
    gained, cursor, height = 0.0, x, ys[i - 1] if i > 0 else ry
    for j in range(i, end):
        gained += (xs[j] - cursor) * (height - y)
        cursor, height = xs[j], ys[j]
    gained += ((xs[end] if end < len(xs) else rx) - cursor) * (height - y)
    xs[i:end] = [x]
    ys[i:end] = [y]
    return gained
