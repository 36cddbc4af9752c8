"""Fixtures for the service: apps and live servers over the session's trained qa-cascade
(``trained``, in tests/conftest.py: built once, shared with the other folders)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from flowfront.settings import Settings
from tests.helpers import PROJECT_ROOT
from tests.service.support import BENCH, make_client


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


