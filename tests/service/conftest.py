"""Fixtures for the service: qa-cascade compiled and trained once per session, apps and live servers.

Building the artifacts (profile, compile, train with real embeddings and LightGBM) is the one
slow step of this folder. ``FLOWFRONT_SERVICE_TEST_WORKDIR`` may name a workdir where the same
three jobs already ran (its store, frontier and router are copied and validated, not trusted);
otherwise they run here, in a private copy of the shared trace store.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from flowfront.settings import Settings
from tests.helpers import PROJECT_ROOT
from tests.service.support import BENCH, copy_workdir, make_client


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
        frontier = Frontier.load(
            src.workdir / BENCH / "frontier.json", expect_workflow_hash=bench.workflow.content_hash
        )
        load_router(src.workdir / BENCH / "router-frontier", expect_inputs_hash=frontier.content_hash())
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
    return (
        load_router(folder, expect_inputs_hash=frontier.content_hash()),
        read_artifact(folder).feature_config,
        frontier,
    )


@pytest.fixture(scope="session")
def client(trained: Settings, workflows_dir: Path) -> Iterator[TestClient]:
    """One app for the read-mostly API tests (no keys, default limits)."""
    with make_client(trained, workflows_dir) as c:
        yield c


