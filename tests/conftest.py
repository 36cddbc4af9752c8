"""Shared fixtures: the repo's configs, the shared data folder, and isolated settings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from flowfront.settings import Settings, prepare_environment
from tests.helpers import CONFIGS, DATA_DIR

prepare_environment()



@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings with a private workdir, so tests never share a trace store by accident."""
    return Settings(data_dir=DATA_DIR, workdir=tmp_path / "work", configs_dir=CONFIGS)


@pytest.fixture(scope="session")
def shared_workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One trace store with the built-in data imported, shared by read-only tests."""
    return tmp_path_factory.mktemp("shared-work")


@pytest.fixture(scope="session")
def shared_settings(shared_workdir: Path) -> Settings:
    return Settings(data_dir=DATA_DIR, workdir=shared_workdir, configs_dir=CONFIGS)


@pytest.fixture(scope="session")
def imported_settings(shared_settings: Settings) -> Settings:
    """Shared settings whose trace store holds RouterBench and LLMRouter (imported once)."""
    from flowfront.data import ensure_imported
    from flowfront.store import connect

    with connect(shared_settings.store_path) as store:
        for source in ("routerbench", "llmrouter"):
            ensure_imported(store, source, data_dir=shared_settings.data_dir)
    return shared_settings


@pytest.fixture(scope="session")
def pg_cluster():
    """A private PostgreSQL cluster from the machine's binaries, for the whole session.

    Skipped (one line naming the package to install) where the binaries are absent, except when
    FLOWFRONT_REQUIRE_POSTGRES=1 (CI): then its absence is a failure."""
    from flowfront.store.pgtemp import PostgresCluster, missing_reason

    why = missing_reason()
    if why is None:
        try:
            import psycopg  # noqa: F401
        except ImportError:
            why = "psycopg is not installed: pip install -e '.[postgres]'"
    if why is not None:
        if os.environ.get("FLOWFRONT_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL is required here (FLOWFRONT_REQUIRE_POSTGRES=1): {why}")
        pytest.skip(why)
    with PostgresCluster() as cluster:
        yield cluster


@pytest.fixture(scope="session")
def compiled_settings(imported_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """qa-cascade and code-budget profiled and compiled (the default frontier) once per session, in
    a workdir of their own. Read-only: a test that writes artifacts works on a copy
    (``tests.helpers.writable_copy``)."""
    from flowfront.compile.jobs import compile_job, profile_job
    from tests.helpers import private_settings

    settings = private_settings(imported_settings, tmp_path_factory.mktemp("compiled"))
    for name in ("qa-cascade", "code-budget"):
        profile_job(settings, name, progress=False)
        compile_job(settings, name, mode="correlated")
    return settings


def _reuse(work: Path, base: Settings) -> Settings | None:
    """A prepared workdir copied in, if it holds a valid frontier + router for the current workflow."""
    from flowfront.benchmarks import load_benchmark
    from flowfront.compile.artifact import Frontier
    from flowfront.errors import FlowfrontError
    from flowfront.router.artifact import load_router
    from tests.service.support import BENCH, copy_workdir

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
    and a router trained on it (built once, with real embeddings and LightGBM; read-only, like
    ``compiled_settings``). ``FLOWFRONT_SERVICE_TEST_WORKDIR`` may name a workdir where the same
    three jobs already ran: its store, frontier and router are copied and validated, not trusted."""
    work = tmp_path_factory.mktemp("service-work")
    reused = _reuse(work, compiled_settings)
    if reused is not None:
        return reused
    from flowfront.router.train import train_job
    from tests.helpers import writable_copy
    from tests.service.support import BENCH

    settings = writable_copy(compiled_settings, work, BENCH)
    train_job(settings, BENCH, "frontier")
    return settings


FAST_TIER = os.environ.get("FLOWFRONT_TEST_TIER") == "fast"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``make test-fast`` (FLOWFRONT_TEST_TIER=fast) runs what starts no subprocess, server or wheel
    build: tests marked ``slow`` are deselected there."""
    if not FAST_TIER:
        return
    kept = [item for item in items if item.get_closest_marker("slow") is None]
    config.hook.pytest_deselected(items=[item for item in items if item not in kept])
    items[:] = kept


@pytest.fixture(autouse=True, scope="session")
def _fast_tier_starts_nothing():
    """In the fast tier, starting a process or a listening server is an error: the tier's promise
    is kept by the tests, not by hope (a test that needs one is marked ``slow``)."""
    if not FAST_TIER:
        yield
        return
    import socketserver
    import subprocess

    def refuse(*args, **kwargs):
        raise RuntimeError("the fast tier starts no subprocess or server: mark this test @pytest.mark.slow")

    saved = subprocess.Popen.__init__, socketserver.TCPServer.server_bind
    subprocess.Popen.__init__ = refuse
    socketserver.TCPServer.server_bind = refuse
    try:
        yield
    finally:
        subprocess.Popen.__init__, socketserver.TCPServer.server_bind = saved
