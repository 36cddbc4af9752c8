"""Majority-vote arithmetic for the proxy: P(a vote of k samples is right) from each sample's
P(right) and how often wrong answers coincide, under independence and under comonotone samples
(the two ends the correlated proxy interpolates between)."""

from __future__ import annotations

import itertools
from functools import cache

import numpy as np


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
                clusters = (
                    np.bincount(np.asarray(assignment, dtype=np.int64), minlength=1)
                    if assignment
                    else np.zeros(1)
                )
                top = max(c, clusters.max(initial=0))
                tied = (c == top) + int((clusters == top).sum())
                if tied == 1:
                    total += c == top
                else:
                    total += f
            table[c, f] = total / len(outcomes)
    return table


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


def vote_independent(p: np.ndarray, w) -> np.ndarray:
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


def vote_comonotone(p: np.ndarray, w) -> np.ndarray:
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
