"""The cost of the main job: wall time of every stage of ``flowfront run``, cold.

Runs the same chain as ``make run`` in a fresh workdir (empty trace store, empty embedding cache,
no outcome matrices), so the times include importing the data and embedding every query, and
writes bench/results/eval.json. It takes as long as ``make run`` itself (minutes), which is why
it lives here and not in the test suite.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import orjson

from bench._common import write_result
from flowfront.cli.pipeline import DEFAULT_BENCHMARKS, run_main
from flowfront.settings import Settings


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="flowfront-bench-eval-") as tmp:
        settings = Settings(workdir=Path(tmp) / "work")
        started = time.perf_counter()
        rows = run_main(settings, DEFAULT_BENCHMARKS)
        wall = time.perf_counter() - started
        timings = orjson.loads((settings.workdir / "timings.json").read_bytes())
    write_result(
        "eval",
        {
            "what": "wall time of each stage of `flowfront run` (= make run), cold: fresh store and "
                    "embedding cache",
            "benchmarks": list(DEFAULT_BENCHMARKS),
            "load_average_at_end": os.getloadavg(),
            "total_s": round(wall, 1),
            "target_total_s": 20 * 60,
            "stages_s": timings,
            "per_benchmark_total_s": {r["benchmark"]: round(sum(r["timings_s"].values()), 1) for r in rows},
        },
    )


if __name__ == "__main__":
    main()
