"""Decision overhead at a checkpoint (progressive routing), part of ``bench/results/router.json``.

On qa-cascade and live-code (replay), the frontier router is fitted upfront and checkpoint routers
over it with ``adopt="always"`` (so every checkpoint decides; on this data the one-SE rule uses
none of them, which would leave nothing to time). Each test query's upfront candidate runs on the
executor with the checkpoint hook the service uses (router/redecide.py); per checkpoint reached,
the hook logs two times: the compatibility walk over every frontier candidate, and predict +
select among the compatible ones. One decision at a time, as the service makes them.
Target: predict + select p50 <= 1 ms.

    python -m bench.router_checkpoint   # this part alone, merged into router.json
"""

from __future__ import annotations

import asyncio
import os

import numpy as np
import orjson

from bench._common import RESULTS, write_result
from flowfront.executor import Executor, Query
from flowfront.router.progressive import ProgressivePolicy
from flowfront.router.redecide import Redecisions
from flowfront.router.select import Preference
from flowfront.router.train import load_data, load_trajectories, make_router
from flowfront.runtime import benchmark_backend, benchmark_queries, open_store, prepare_data
from flowfront.settings import Settings, prepare_environment
from flowfront.space import Configuration, resolve


def _one(settings: Settings, name: str, n_queries: int = 150) -> dict:
    data = load_data(settings, name, "frontier")
    upfront = make_router("frontier", execution=data.frontier.execution).fit(data.X_train, data.train)
    traj = load_trajectories(settings, data.bench, data.frontier, "train")
    policy = ProgressivePolicy(execution=data.frontier.execution, adopt="always").fit(
        data.X_train, data.train, trajectories=traj, upfront=upfront
    )
    wf = data.bench.workflow
    candidates = [resolve(wf, Configuration.parse(c.config)) for c in data.frontier.candidates]
    ids = [c.id for c in data.frontier.candidates]
    pref = Preference(lambda_=float(np.median(data.lambdas)))
    pred = upfront.predict(data.X_test)
    start = np.asarray(upfront.select(data.X_test, pref, data.scale).index)
    log: list[dict] = []
    with open_store(settings) as store:
        queries = benchmark_queries(data.bench, store, prepare_data(data.bench, store, settings), "test")
        executor = Executor(wf, benchmark_backend(data.bench, store, settings))

        async def run_all() -> None:
            for i, q in enumerate(queries[:n_queries]):  # one at a time, as the service sees them
                hook = Redecisions(
                    policy,
                    wf,
                    candidates,
                    ids,
                    (pred.accuracy[i], pred.latency_s[i], pred.cost_usd[i]),
                    pref,
                    data.scale,
                    data.frontier.execution,
                    log=log,
                )
                await executor.run(candidates[start[i]], Query(q.query_id, q.text), checkpoint=hook)

        asyncio.run(run_all())
    decide = np.array([e["decision_ms"] for e in log])
    walk = np.array([e["compatible_ms"] for e in log])
    return {
        "candidates": len(ids),
        "checkpoints": sorted({e["checkpoint"] for e in log}),
        "decisions": len(log),
        "switched": int(sum(e["switched"] for e in log)),
        "predict_and_select_ms": _summary(decide),
        "compatibility_walk_ms": _summary(walk),
        "target_p50<=1ms": bool(len(decide) and np.percentile(decide, 50) <= 1.0),
    }


def _summary(ms: np.ndarray) -> dict[str, float]:
    if not len(ms):
        return {}
    return {
        "p50_ms": float(np.percentile(ms, 50)),
        "p90_ms": float(np.percentile(ms, 90)),
        "p99_ms": float(np.percentile(ms, 99)),
        "n": int(len(ms)),
    }


def measure_checkpoint_decisions(settings: Settings) -> dict:
    load = os.getloadavg()
    out = {name: _one(settings, name) for name in ("qa-cascade", "live-code")}
    return {
        **out,
        "loadavg_1_5_15_before_after": [load, os.getloadavg()],
        "measures": "hook timings per checkpoint reached; embedding excluded (it is the upfront decision's)",
    }


def main() -> None:
    prepare_environment()
    result = measure_checkpoint_decisions(Settings())
    path = RESULTS / "router.json"
    rest = orjson.loads(path.read_bytes()) if path.is_file() else {}
    rest.pop("machine", None)
    write_result("router", {**rest, "checkpoint_decision": result})
    for name in ("qa-cascade", "live-code"):
        r = result[name]
        print(
            f"{name}: {r['decisions']} checkpoint decisions, predict+select p50 "
            f"{r['predict_and_select_ms'].get('p50_ms', float('nan')):.3f} ms, walk p50 "
            f"{r['compatibility_walk_ms'].get('p50_ms', float('nan')):.3f} ms"
        )


if __name__ == "__main__":
    main()
