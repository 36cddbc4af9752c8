"""Fixtures for the service: qa-cascade compiled and trained once per session, apps and live servers.

Building the artifacts (profile, compile, train with real embeddings and LightGBM) is the one
slow step of this folder. ``FLOWFRONT_SERVICE_TEST_WORKDIR`` may name a workdir where the same
three jobs already ran (its store, frontier and router are copied and validated, not trusted);
otherwise they run here, in a private copy of the shared trace store.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from flowfront.settings import Settings
from tests.helpers import PROJECT_ROOT, cli_env, copy_sqlite, free_port, wait_http

BENCH = "qa-cascade"


def copy_store(src: Settings, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    copy_sqlite(src.store_path, dst / src.store_path.name)


def copy_workdir(src: Settings, dst: Path, *, router: bool = True) -> Settings:
    """A private copy of a trained workdir (store, qa-cascade artifacts, ONNX exports) to change freely."""
    copy_store(src, dst)
    skip = ["outcomes"] + ([] if router else ["router-*"])
    shutil.copytree(src.workdir / BENCH, dst / BENCH, ignore=shutil.ignore_patterns(*skip))
    exports = src.workdir / "embeddings" / "onnx"
    if exports.is_dir():  # without them the embedder would export the model again (tens of seconds)
        shutil.copytree(exports, dst / "embeddings" / "onnx")
    return src.model_copy(update={"workdir": dst})


def _reuse(work: Path, base: Settings) -> Settings | None:
    """A prepared workdir copied in, if it holds a valid frontier + router for the current workflow."""
    from flowfront.benchmarks import load_benchmark
    from flowfront.compile.artifact import Frontier
    from flowfront.errors import FlowfrontError
    from flowfront.router.artifact import load_router

    given = os.environ.get("FLOWFRONT_SERVICE_TEST_WORKDIR")
    if not given:
        return None
    src = base.model_copy(update={"workdir": Path(given)})
    try:
        bench = load_benchmark(BENCH, base.configs_dir)
        frontier = Frontier.load(src.workdir / BENCH / "frontier.json", expect_workflow_hash=bench.workflow.content_hash)
        load_router(src.workdir / BENCH / "router-frontier", expect_frontier_hash=frontier.content_hash())
    except FlowfrontError:
        return None
    return copy_workdir(src, work).model_copy(update={"data_dir": base.data_dir})


@pytest.fixture(scope="session")
def trained(compiled_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Settings whose private workdir holds qa-cascade's frontier (the session's compile, copied)
    and a router trained on it (built once)."""
    work = tmp_path_factory.mktemp("service-work")
    reused = _reuse(work, compiled_settings)
    if reused is not None:
        return reused
    from flowfront.router.train import train_job
    from tests.helpers import writable_copy

    settings = writable_copy(compiled_settings, work, BENCH)
    train_job(settings, BENCH, "frontier")
    return settings


@pytest.fixture(scope="session")
def workflows_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """qa-cascade (compiled and trained) and code-budget (never compiled here)."""
    folder = tmp_path_factory.mktemp("workflows")
    for name in (BENCH, "code-budget"):
        shutil.copy(PROJECT_ROOT / "configs" / "workflows" / f"{name}.yaml", folder)
    return folder


@pytest.fixture(scope="session")
def test_queries(trained: Settings) -> list[str]:
    from flowfront.benchmarks import load_benchmark
    from flowfront.runtime import benchmark_queries, open_store, prepare_data

    bench = load_benchmark(BENCH, trained.configs_dir)
    with open_store(trained) as store:
        return [q.text for q in benchmark_queries(bench, store, prepare_data(bench, store, trained), "test")]


@pytest.fixture(scope="session")
def router(trained: Settings):
    """The trained router and its feature config, loaded the way the service loads them."""
    from flowfront.compile.artifact import Frontier
    from flowfront.router.artifact import load_router, read_artifact

    frontier = Frontier.load(trained.workdir / BENCH / "frontier.json")
    folder = trained.workdir / BENCH / "router-frontier"
    return load_router(folder, expect_frontier_hash=frontier.content_hash()), read_artifact(folder).feature_config, frontier


def make_client(settings: Settings, workflows: Path, **env: str) -> TestClient:
    """An in-process app; service settings come from ``env`` (as FLOWFRONT_* variables would)."""
    from flowfront.service.app import create_app
    from flowfront.service.config import ServiceSettings

    extra = {k.lower(): v for k, v in env.items()}
    config = ServiceSettings(**{**settings.model_dump(), **extra})
    return TestClient(create_app(config, workflows), raise_server_exceptions=False)


@pytest.fixture(scope="session")
def client(trained: Settings, workflows_dir: Path) -> Iterator[TestClient]:
    """One app for the read-mostly API tests (no keys, default limits)."""
    with make_client(trained, workflows_dir) as c:
        yield c


@dataclass
class LiveServer:
    base: str
    proc: subprocess.Popen
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@contextmanager
def live_server(settings: Settings, workflows: Path, log_dir: Path, **env: str) -> Iterator[LiveServer]:
    """``flowfront serve`` in a subprocess on a free loopback port, stopped (SIGTERM) at exit."""
    port = free_port()
    log = log_dir / f"serve-{port}.log"
    proc_env = cli_env(**{f"FLOWFRONT_{k.upper()}": v for k, v in env.items()})
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "flowfront.cli", "serve", "--workflows", str(workflows), "--host", "127.0.0.1",
             "--port", str(port), "--workdir", str(settings.workdir), "--data-dir", str(settings.data_dir)],
            env=proc_env, cwd=PROJECT_ROOT, stdout=out, stderr=subprocess.STDOUT,
        )
    server = LiveServer(f"http://127.0.0.1:{port}", proc, log)
    try:
        wait_http(f"{server.base}/healthz", timeout=120)
        _wait_ready(server)
        yield server
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()


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
