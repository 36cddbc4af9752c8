"""Which first-party modules one `POST /v1/workflows/{name}/run` executes code in, and in what order.

    .venv/bin/python -m tests.request_path [--workflow qa-cascade] [--workdir runs]

Needs the workflow compiled and its router trained in the workdir (`make run`). The app runs in
process (FastAPI's TestClient); every thread's profiler records the modules whose functions are
entered while the one request is handled, after a warm-up request on another query.
"""

from __future__ import annotations

import argparse
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
STAGES = ("compile", "router", "eval", "service")


def module_of(filename: str) -> str | None:
    path = Path(filename).resolve()
    try:
        rel = path.relative_to(ROOT)
    except ValueError:
        return None
    parts = [p for p in rel.with_suffix("").parts if p != "__init__"]
    if not parts or parts[0] not in ("flowfront", *STAGES):
        return None
    return ".".join(parts if parts[0] == "flowfront" else ["flowfront", *parts])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workflow", default="qa-cascade")
    parser.add_argument("--workdir", default=str(ROOT / "runs"))
    args = parser.parse_args()

    from fastapi.testclient import TestClient

    from flowfront.service.app import create_app
    from flowfront.service.config import ServiceSettings
    from flowfront.settings import prepare_environment

    prepare_environment()
    config = ServiceSettings(workdir=Path(args.workdir))
    seen, edges = trace_request(lambda: TestClient(create_app(config, config.configs_dir / "workflows")),
                                args.workflow, _queries(config, args.workflow))
    packages = [package(m) for m in seen]
    print(f"{len(seen)} first-party modules, packages in order of first visit: {_runs(packages)}")
    for name in seen:
        print(f"  {name}")
    # Calls between packages on the call stack (a return is not a visit): downward arrows are the
    # layering; an upward one would be a lower layer calling back into one above it.
    print("calls between packages (caller package -> callee package):")
    for (a, b), sites in sorted(edges.items()):
        kind = "UP" if LAYER[a] < LAYER[b] else "down"
        print(f"  {a} -> {b} ({kind}): " + "; ".join(sorted(sites)[:4]) + (" ..." if len(sites) > 4 else ""))


def trace_request(make_client: Callable[[], Any], workflow: str, queries: list[str]
                  ) -> tuple[list[str], dict[tuple[str, str], set[str]]]:
    """The first-party modules one warm run request enters (in order) and the calls between packages.

    ``make_client()`` builds the app's TestClient; it is called after the profiler is set, so the
    client's event-loop thread and the service's worker threads are profiled too. The first
    query warms the app; only the second request is recorded.
    """
    seen: list[str] = []
    edges: dict[tuple[str, str], set[str]] = {}
    active = [False]

    def profile(frame, event, arg):  # noqa: ANN001 - the sys.setprofile signature
        if active[0] and event == "call":
            name = module_of(frame.f_code.co_filename)
            if name is None:
                return
            if name not in seen:
                seen.append(name)
            caller = _first_party_caller(frame)
            if caller is not None and package(caller) != package(name):
                edges.setdefault((package(caller), package(name)), set()).add(
                    f"{caller} -> {name}.{frame.f_code.co_name}"
                )

    threading.setprofile(profile)
    sys.setprofile(profile)
    try:
        with make_client() as client:
            client.post(f"/v1/workflows/{workflow}/run", json={"query": queries[0]}).raise_for_status()
            active[0] = True
            reply = client.post(f"/v1/workflows/{workflow}/run", json={"query": queries[1]})
            active[0] = False
            reply.raise_for_status()
    finally:
        sys.setprofile(None)
        threading.setprofile(None)
    return seen, edges


LAYER = {"kernel": 0, "compile": 1, "router": 2, "eval": 3, "service": 3}


def package(module: str) -> str:
    part = module.split(".")[1]
    return part if part in STAGES else "kernel"


def _first_party_caller(frame) -> str | None:  # noqa: ANN001
    """The nearest first-party module below ``frame`` on the stack (through asyncio, FastAPI, ...)."""
    back, depth = frame.f_back, 0
    while back is not None and depth < 40:
        name = module_of(back.f_code.co_filename)
        if name is not None:
            return name
        back, depth = back.f_back, depth + 1
    return None


def _runs(items: list[str]) -> str:
    out: list[str] = []
    for item in items:
        if not out or out[-1] != item:
            out.append(item)
    return " -> ".join(out)


def _queries(config, workflow: str) -> list[str]:
    from flowfront.benchmarks import load_benchmark
    from flowfront.runtime import benchmark_queries, open_store, prepare_data

    bench = load_benchmark(workflow, config.configs_dir)
    with open_store(config) as store:
        data = prepare_data(bench, store, config)
        return [q.text for q in benchmark_queries(bench, store, data, "test")[:2]]


if __name__ == "__main__":
    main()
