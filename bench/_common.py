"""Helpers shared by the benchmark scripts: machine facts and writing results."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import orjson

PROJECT_ROOT = Path(__file__).resolve().parent.parent  # the checkout the benchmarks run from
RESULTS = Path(__file__).parent / "results"


def machine() -> dict:
    import numpy

    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "numpy": numpy.__version__,
    }


def write_result(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_bytes(
        orjson.dumps(
            {"machine": machine(), **payload}, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY
        )
    )
    print(f"wrote {path}")
    return path
