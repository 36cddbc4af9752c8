"""Would centring the static vectors sharpen the router's out-of-distribution check? Train splits only.

    .venv/bin/python research/ood_centring.py

For each task of a benchmark's train split: the reference set is 80% of the other tasks' train
queries (at most 2,000, as the router keeps), in-distribution probes are the other 20%, novel
probes the task's own queries. For the raw vectors and for vectors with the reference mean
removed, it prints the AUROC of nearest-neighbour cosine distance (novel vs in-distribution) and
the share of novel queries past the router's rule (the 99th percentile of in-distribution
distances). Needs `flowfront run` (compiled frontiers, outcome caches) in the work folder.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import mannwhitneyu

from flowfront.router.features import EMBEDDING_DIM
from flowfront.router.train import load_data
from flowfront.settings import Settings, prepare_environment

REFERENCE_SIZE = 2000


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def nn_distance(probes: np.ndarray, reference: np.ndarray) -> np.ndarray:
    return 1.0 - (unit(probes) @ unit(reference).T).max(axis=1)


def scores(
    X: np.ndarray, ref: np.ndarray, held: np.ndarray, novel: np.ndarray, centre: bool
) -> tuple[float, float]:
    """(AUROC novel vs in-distribution, share of novel rows past the 99th in-distribution percentile)."""
    shift = X[ref].mean(axis=0) if centre else 0.0
    d_in = nn_distance(X[held] - shift, X[ref] - shift)
    d_new = nn_distance(X[novel] - shift, X[ref] - shift)
    auroc = mannwhitneyu(d_new, d_in).statistic / (len(d_in) * len(d_new))
    return float(auroc), float((d_new > np.quantile(d_in, 0.99)).mean())


def main() -> None:
    prepare_environment()
    settings = Settings()
    for bench in ("model-route", "qa-cascade"):
        data = load_data(settings, bench, "frontier", include_test=False)
        X = data.X_train[:, :EMBEDDING_DIM].astype(np.float32)
        tasks = np.asarray(data.train.tasks)
        rng = np.random.default_rng(0)
        rows = []
        for task in np.unique(tasks):
            others = rng.permutation(np.flatnonzero(tasks != task))
            cut = int(0.8 * len(others))
            ref, held, novel = others[:cut][:REFERENCE_SIZE], others[cut:], np.flatnonzero(tasks == task)
            row = (*scores(X, ref, held, novel, False), *scores(X, ref, held, novel, True))
            rows.append(row)
            print(f"{bench:12} {task:22} n={len(novel):4}  raw AUROC {row[0]:.3f} flagged {row[1]:.3f}"
                  f"  centred AUROC {row[2]:.3f} flagged {row[3]:.3f}")
        mean = np.mean(rows, axis=0)
        print(f"{bench:12} {'mean':22}         raw AUROC {mean[0]:.3f} flagged {mean[1]:.3f}"
              f"  centred AUROC {mean[2]:.3f} flagged {mean[3]:.3f}")


if __name__ == "__main__":
    main()
