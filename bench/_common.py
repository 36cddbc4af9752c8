"""Helpers shared by the benchmark scripts: machine facts and writing results."""

from __future__ import annotations

import os
import platform
import signal
import subprocess
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


def stop_process(proc: subprocess.Popen, grace_s: float = 60.0) -> None:
    """SIGTERM, then SIGKILL if it is still running after ``grace_s`` (a server drains its requests first)."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def chat_workflow(model: str, budget: int) -> str:
    """The YAML of a one-node chat workflow (the raw reply of ``model`` under ``budget`` tokens, greedy):
    the smallest workflow a served stream can be measured on."""
    return f"""name: chat
nodes:
  reply:
    kind: llm
    messages: [{{role: user, content: "{{query}}"}}]
    parser: raw
    sampling: {{temperature: 0}}
    models: [{model}]
    budgets: [{budget}]
flow: [reply]
output: reply
"""
