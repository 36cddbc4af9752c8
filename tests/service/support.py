"""Helpers for the service tests: copies of a trained workdir, in-process apps, live servers.

Shared by the fixtures in conftest.py and the test modules (no test module imports another)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
from fastapi.testclient import TestClient

from bench._common import stop_process
from flowfront.router.features import Embedder, featurize
from flowfront.router.select import Preference
from flowfront.settings import Settings
from tests.helpers import PROJECT_ROOT, cli_env, copy_sqlite, free_port, wait_http

BENCH = "qa-cascade"
RUN = f"/v1/workflows/{BENCH}/run"


def copy_store(src: Settings, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    copy_sqlite(src.store_path, dst / src.store_path.name)


def copy_workdir(src: Settings, dst: Path, *, router: bool = True, outcomes: bool = False) -> Settings:
    """A private copy of a trained workdir (store, qa-cascade artifacts, ONNX exports) to change freely."""
    copy_store(src, dst)
    copy_artifacts(src, dst, router=router, outcomes=outcomes)
    return src.model_copy(update={"workdir": dst})


def copy_artifacts(src: Settings, dst: Path, *, router: bool = True, outcomes: bool = False) -> None:
    """qa-cascade's artifacts and the embedding model's ONNX exports, without the store."""
    skip = ([] if outcomes else ["outcomes"]) + ([] if router else ["router-*"])
    shutil.copytree(src.workdir / BENCH, dst / BENCH, ignore=shutil.ignore_patterns(*skip))
    exports = src.workdir / "embeddings" / "onnx"
    if exports.is_dir():  # without them a served process exports the model again (~15 s on 2 cores)
        shutil.copytree(exports, dst / "embeddings" / "onnx")


def make_client(settings: Settings, workflows: Path, **env: str) -> TestClient:
    """An in-process app; service settings come from ``env`` (as FLOWFRONT_* variables would)."""
    from flowfront.service.app import create_app
    from flowfront.service.config import ServiceSettings

    extra = {k.lower(): v for k, v in env.items()}
    config = ServiceSettings(**{**settings.model_dump(), **extra})
    return TestClient(create_app(config, workflows), raise_server_exceptions=False)


@dataclass
class LiveServer:
    base: str
    proc: subprocess.Popen
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def start_serve(settings: Settings, workflows: Path, log: Path, **env: str) -> tuple[subprocess.Popen, str]:
    """``flowfront serve`` started in a subprocess on a free loopback port (not waited for), its
    output in ``log``; ``env`` keys become ``FLOWFRONT_<KEY>``. The process and its base URL."""
    port = free_port()
    proc_env = cli_env(**{f"FLOWFRONT_{k.upper()}": v for k, v in env.items()})
    command = [sys.executable, "-m", "flowfront.cli", "serve", "--workflows", str(workflows),
               "--host", "127.0.0.1", "--port", str(port), "--workdir", str(settings.workdir),
               "--data-dir", str(settings.data_dir)]
    with open(log, "wb") as out:
        proc = subprocess.Popen(command, env=proc_env, cwd=PROJECT_ROOT, stdout=out, stderr=subprocess.STDOUT)
    return proc, f"http://127.0.0.1:{port}"


@contextmanager
def live_server(settings: Settings, workflows: Path, log_dir: Path, **env: str) -> Iterator[LiveServer]:
    """``flowfront serve`` in a subprocess on a free loopback port, stopped (SIGTERM) at exit."""
    log = log_dir / f"serve-{free_port()}.log"
    proc, base = start_serve(settings, workflows, log, **env)
    server = LiveServer(base, proc, log)
    try:
        wait_http(f"{server.base}/healthz", timeout=120)
        _wait_ready(server)
        yield server
    finally:
        stop_process(proc)


def _wait_ready(server: LiveServer, timeout: float = 120.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"server exited early:\n{server.output()[-3000:]}")
        if httpx.get(f"{server.base}/readyz", timeout=5).status_code == 200:
            return
        time.sleep(0.2)
    raise TimeoutError(f"{server.base} not ready:\n{server.output()[-3000:]}")


def expected_candidate(router, query: str, pref: Preference, task: str | None = None) -> str:
    """What the trained router's own featurize -> select says for one query (and task hint)."""
    model, config, frontier = router
    from flowfront.router.select import Scale

    est = [c.estimates for c in frontier.candidates]
    lat = np.array([e.latency(frontier.execution) for e in est])
    scale = Scale.from_estimates(lat, np.array([e.cost_usd for e in est]))
    X = featurize([query], config, Embedder(config, cache_dir=None))
    return model.candidate_ids_[int(model.select(X, pref, scale, hints=[task]).index[0])]
