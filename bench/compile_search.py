"""Frontier search: vectorised enumeration against a naive pandas scan, and exact composition.

The space: 5 slots x 20 choices (3.2M configurations) of a sequential workflow with seeded
random per-choice accuracy, latency and cost (accuracy multiplies, latency and cost add).

- naive: the FlowCompile-style reference. Every configuration is a row of a pandas DataFrame
  (per-slot choices and objectives), then a Python loop keeps a front list and checks each
  row against it.
- ours: ``compile.enumeration.enumerate_front`` over the same space (vectorised enumeration
  in chunks, streaming Pareto merge), so the comparison stays on the enumeration path.
- composed: ``compose_front`` on the same space, reported separately.
- big: a 10^9-configuration mixed seq/par tree (9 slots x 10 choices) compiled exactly with
  ``compose_front``, under both execution models.

Each of naive / ours / an idle process runs in its own subprocess; peak memory is that
process's peak RSS minus the idle one's (same imports). Targets: ours >= 20x faster and
<= 1/10 of the naive memory; the big space in < 60 s. Fronts must be identical.

    python -m bench.compile_search
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from bench._common import write_result
from flowfront.compile.enumeration import FrontTable, compose_front, encode, enumerate_front

SLOTS, CHOICES, SEED = 5, 20, 0
SEQ_OPS = ("prod", "sum", "sum")  # accuracy, latency, cost of a sequential workflow
# 9 slots x 10 choices: slot 0, then two parallel 2-step branches, a 3-way ensemble, slot 8.
BIG_TREE = ("seq", [0, ("par", [("seq", [1, 2]), ("seq", [3, 4])]), ("par", [5, 6, 7]), 8])
BIG_SLOTS, BIG_CHOICES = 9, 10
ROOT = Path(__file__).resolve().parent.parent


def synthetic_slots(n_slots: int, n_choices: int, seed: int) -> list[np.ndarray]:
    """Per-slot (choices, 3) tables: better models are slower and dearer, with noise."""
    rng = np.random.default_rng(seed)
    slots = []
    for _ in range(n_slots):
        quality = rng.random(n_choices)
        accuracy = 0.6 + 0.39 * quality * rng.uniform(0.85, 1.0, n_choices)
        latency = 0.2 + 4.0 * quality * rng.uniform(0.5, 1.5, n_choices)
        cost = 1e-4 * np.exp(4.0 * quality * rng.uniform(0.5, 1.5, n_choices))
        slots.append(np.column_stack([accuracy, latency, cost]))
    return slots


def sequential_evaluate(slots: Sequence[np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
    """evaluate(choice_idx) for a chain of slots: accuracy product, latency and cost sums,
    folded left to right like compose_front, so values agree bit for bit."""
    columns = [[np.ascontiguousarray(F[:, c]) for F in slots] for c in range(3)]

    def evaluate(choices: np.ndarray) -> np.ndarray:
        out = np.empty((len(choices), 3))
        for c, (per_slot, op) in enumerate(zip(columns, (np.multiply, np.add, np.add), strict=True)):
            acc = per_slot[0][choices[:, 0]]
            for k in range(1, len(slots)):
                op(acc, per_slot[k][choices[:, k]], out=acc)
            out[:, c] = acc
        return out

    return evaluate


def naive_front(slots: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray, dict]:
    """The reference approach: materialise every configuration, then scan rows in Python."""
    import pandas as pd

    started = time.perf_counter()
    table = None
    for k, F in enumerate(slots):
        part = pd.DataFrame({f"c{k}": np.arange(len(F)), f"acc{k}": F[:, 0],
                             f"lat{k}": F[:, 1], f"cost{k}": F[:, 2]})
        table = part if table is None else table.merge(part, how="cross")
    table["accuracy"] = table["acc0"]
    table["latency"] = table["lat0"]
    table["cost"] = table["cost0"]
    for k in range(1, len(slots)):  # same left-to-right order as the fold, so values match bit for bit
        table["accuracy"] = table["accuracy"] * table[f"acc{k}"]
        table["latency"] = table["latency"] + table[f"lat{k}"]
        table["cost"] = table["cost"] + table[f"cost{k}"]
    materialised = time.perf_counter()
    rows = _scan(table[["accuracy", "latency", "cost"]].itertuples(index=False, name=None))
    scanned = time.perf_counter()
    kept = table.iloc[rows]
    choices = kept[[f"c{k}" for k in range(len(slots))]].to_numpy()
    codes = encode(choices, [len(F) for F in slots])
    timing = {"materialise_s": materialised - started, "scan_s": scanned - materialised}
    return kept[["accuracy", "latency", "cost"]].to_numpy(), codes, timing


def _scan(rows) -> list[int]:
    """Keep a front list; a row no better than a member is skipped, else it evicts the
    members it beats and joins. Same tie rule as pareto_mask: earlier rows win."""
    front: list[tuple[float, float, float, int]] = []
    for i, (acc, lat, cost) in enumerate(rows):
        beaten = False
        for f_acc, f_lat, f_cost, _ in front:
            if f_acc >= acc and f_lat <= lat and f_cost <= cost:
                beaten = True
                break
        if beaten:
            continue
        front = [f for f in front if not (acc >= f[0] and lat <= f[1] and cost <= f[2])]
        front.append((acc, lat, cost, i))
    return [f[3] for f in front]


def ours_front(slots: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The vectorised enumeration path."""
    return enumerate_front(sequential_evaluate(slots), [len(F) for F in slots])


def compose_tree(tree, slots: Sequence[np.ndarray], lat_op: str | None = None) -> FrontTable:
    """Exact frontier of a nested ("seq"|"par", [children]) tree whose leaves are slot indices."""
    if isinstance(tree, int):
        return FrontTable.leaf(slots[tree])
    op, children = tree
    return compose_front([compose_tree(c, slots, lat_op) for c in children], op, lat_op=lat_op)


def _worker(kind: str) -> dict:
    """Run one measurement in this process and report its peak RSS."""
    import pandas  # noqa: F401  every worker carries the same libraries as the naive one

    slots = synthetic_slots(SLOTS, CHOICES, SEED)
    out: dict = {"kind": kind}
    if kind != "idle":
        started = time.perf_counter()
        if kind == "naive":
            F, codes, timing = naive_front(slots)
            out.update(timing)
        else:
            F, codes = ours_front(slots)
        out["seconds"] = time.perf_counter() - started
        out["front"] = {"F": F.tolist(), "codes": codes.tolist()}
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def _measure(kind: str) -> dict:
    # `-m` from the repository root makes both `bench` and `compile` importable in the child.
    done = subprocess.run(
        [sys.executable, "-m", "bench.compile_search", "--worker", kind],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{kind} worker failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.splitlines()[-1])


def _same_front(a: dict, b: dict) -> bool:
    return a["codes"] == b["codes"] and np.array_equal(np.asarray(a["F"]), np.asarray(b["F"]))


def _big_space() -> dict:
    """Compile the 10^9-configuration tree exactly, once per execution model."""
    slots = synthetic_slots(BIG_SLOTS, BIG_CHOICES, SEED + 1)
    out = {"configurations": BIG_CHOICES**BIG_SLOTS, "tree": repr(BIG_TREE)}
    for model, lat_op in (("parallel", None), ("sequential", "sum")):
        started = time.perf_counter()
        table = compose_tree(BIG_TREE, slots, lat_op)
        out[model] = {"seconds": time.perf_counter() - started, "front_size": len(table)}
    return out


def main() -> None:
    idle, naive, ours = _measure("idle"), _measure("naive"), _measure("ours")
    slots = synthetic_slots(SLOTS, CHOICES, SEED)
    started = time.perf_counter()
    composed = compose_tree(("seq", list(range(SLOTS))), slots)
    compose_s = time.perf_counter() - started
    composed_front = {"F": composed.F.tolist(), "codes": composed.codes([CHOICES] * SLOTS).tolist()}
    if not (_same_front(naive["front"], ours["front"]) and _same_front(ours["front"], composed_front)):
        raise AssertionError("naive scan, enumerate_front and compose_front disagree on the frontier")
    n = CHOICES**SLOTS
    mem = {k: max(r["peak_rss_mb"] - idle["peak_rss_mb"], 0.0) for k, r in (("naive", naive), ("ours", ours))}
    speedup = naive["seconds"] / ours["seconds"]
    memory_ratio = mem["ours"] / mem["naive"]
    big = _big_space()
    big_s = max(big["parallel"]["seconds"], big["sequential"]["seconds"])
    import pandas  # only for its version: the naive side ran in its own process

    write_result("compile", {
        "versions": {"pandas": pandas.__version__},
        "space": {"slots": SLOTS, "choices": CHOICES, "configurations": n, "seed": SEED,
                  "workflow": "sequential: accuracy product, latency sum, cost sum"},
        "front_size": len(ours["front"]["codes"]),
        "fronts_identical": True,
        "idle_rss_mb": idle["peak_rss_mb"],
        "naive": {"seconds": naive["seconds"], "materialise_s": naive["materialise_s"],
                  "scan_s": naive["scan_s"], "configs_per_s": n / naive["seconds"],
                  "peak_mb_over_idle": mem["naive"]},
        "ours_enumerate": {"seconds": ours["seconds"], "configs_per_s": n / ours["seconds"],
                           "peak_mb_over_idle": mem["ours"]},
        "ours_compose": {"seconds": compose_s, "front_size": len(composed)},
        "ratios": {"speedup": speedup, "memory_fraction": memory_ratio},
        "big_space": big,
        "targets": {"speedup>=20": speedup >= 20, "memory<=1/10": memory_ratio <= 0.1,
                    "big_space_seconds<60": big_s < 60},
    })
    print(f"naive {naive['seconds']:.1f}s, ours {ours['seconds']:.2f}s ({speedup:.0f}x), memory "
          f"{mem['naive']:.0f} MB vs {mem['ours']:.0f} MB; compose {compose_s:.3f}s; "
          f"10^9 space {big_s:.1f}s, front {big['parallel']['front_size']}/{big['sequential']['front_size']}")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        print(json.dumps(_worker(sys.argv[2])))
    else:
        main()
