"""The service on a real PostgreSQL store: decisions land there, an unreachable database at start-up
means not ready (and then ready once it answers), and a database lost while serving turns durable
requests into 503s, never into 200s without their rows; the service recovers by itself."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx
import orjson
import pytest

from bench._common import stop_process
from flowfront.store import connect
from flowfront.store.pgtemp import PostgresCluster
from tests.helpers import flowfront, free_port
from tests.service.support import copy_artifacts, start_serve

# the slow tier: it starts subprocesses or servers (make test-fast leaves it out)
pytestmark = pytest.mark.slow

RUN = "/v1/workflows/qa-cascade/run"


@pytest.fixture(scope="module")
def pg_settings(trained, pg_cluster, tmp_path_factory):
    """Settings whose store is a PostgreSQL database holding the trained workdir's recorded calls."""
    url = pg_cluster.createdb("served")
    with connect(trained.store_url) as src, connect(url) as dst:
        src.copy_to(dst)
    work = tmp_path_factory.mktemp("pg-work")
    copy_artifacts(trained, work)
    return trained.model_copy(update={"workdir": work, "store": url})


@pytest.fixture(scope="module")
def pg_client(pg_settings, workflows_dir):
    from tests.service.support import make_client

    with make_client(pg_settings, workflows_dir) as c:
        yield c


def test_a_served_request_leaves_its_decision_and_calls_in_postgres(
    pg_settings, pg_client, test_queries
) -> None:
    reply = pg_client.post(RUN, json={"query": test_queries[0], "preference": {"lambda": 0.1}, "task": "arc"})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    with connect(pg_settings.store) as store:
        [decision] = store.decisions(ids=[body["trace_id"]])
        calls = store.served_calls(body["trace_id"])
    assert (decision.workflow, decision.candidate, decision.status, decision.propensity) == (
        "qa-cascade", body["candidate"]["id"], 200, 1.0)
    assert decision.preference == {"lambda": 0.1, "objective": "latency", "on_infeasible": "error"}
    assert decision.task == "arc" and decision.query == test_queries[0] and decision.generation
    assert decision.estimates is not None and len(decision.estimates["accuracy"]) == len(pg_client.get(
        "/v1/workflows/qa-cascade/frontier").json()["candidates"])
    # a repeat of an identical call made nothing, so it leaves no call row
    assert sorted(c.model for c in calls) == sorted(c["model"] for c in body["calls"] if not c["reused"])
    ready = pg_client.get("/readyz").json()
    assert ready["status"] == "ready" and ready["store"].startswith("postgresql://flowfront@127.0.0.1")
    assert pg_settings.store.split("@")[0].split(":")[-1] not in orjson.dumps(ready).decode()  # no password


def test_traces_decisions_reads_the_log(pg_settings, pg_client, test_queries) -> None:
    reply = pg_client.post(RUN, json={"query": test_queries[1]})
    assert reply.status_code == 200
    done = flowfront("traces", "decisions", "--since", "1h", "--json", "--store", pg_settings.store)
    assert done.returncode == 0, done.stderr
    rows = orjson.loads(done.stdout)
    assert reply.json()["trace_id"] in {r["id"] for r in rows}
    assert all(
        set(r) >= {"id", "workflow", "candidate", "estimates", "propensity", "status", "latency_s"}
        for r in rows
    )
    report = flowfront("traces", "report", "--since", "1h", "--json", "--store", pg_settings.store,
                       "--workdir", str(pg_settings.workdir))
    assert report.returncode == 0, report.stderr
    [summary] = orjson.loads(report.stdout)["workflows"]
    assert summary["workflow"] == "qa-cascade" and summary["answered"] >= 1
    assert summary["estimated"]["static"]["n"] == summary["answered"]  # the frontier was found by its hash
    assert (
        summary["estimated"]["most_accurate"]["accuracy"] >= summary["estimated"]["served"]["accuracy"] - 1e-9
    )
    text = flowfront("traces", "report", "--store", pg_settings.store, "--workdir", str(pg_settings.workdir))
    assert "qa-cascade:" in text.stdout and "(estimated" in text.stdout
    bad = flowfront("traces", "decisions", "--since", "yesterday", "--store", pg_settings.store)
    assert bad.returncode == 2 and "not a time span" in bad.stderr and "Traceback" not in bad.stderr


def _serve(settings, workflows_dir: Path, log: Path, **env: str) -> tuple[subprocess.Popen, str]:
    return start_serve(settings, workflows_dir, log, **env)


def _wait(url: str, status: int, timeout: float = 90) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            r = httpx.get(url, timeout=5)
            if r.status_code == status:
                return r
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} never answered {status}")


def test_unreachable_at_start_is_not_ready_then_ready_once_the_database_answers(
    trained, workflows_dir, tmp_path, test_queries
) -> None:
    cluster = PostgresCluster(port=free_port())
    url = cluster.url("served")  # a database that appears, whole, after the service started
    work = tmp_path / "work"
    copy_artifacts(trained, work)
    settings = trained.model_copy(update={"workdir": work})
    proc, base = _serve(settings, workflows_dir, tmp_path / "serve.log", store=url)
    try:
        not_ready = _wait(f"{base}/readyz", 503)
        message = not_ready.json()["error"]["message"]
        assert "postgresql://flowfront@127.0.0.1" in message and "unreachable" in message
        assert cluster.password not in not_ready.text
        assert httpx.get(f"{base}/healthz").status_code == 200  # alive, not ready
        assert httpx.post(f"{base}{RUN}", json={"query": test_queries[0]}).status_code == 503
        cluster.start()
        with connect(trained.store_url) as src, connect(cluster.createdb("prepared")) as dst:
            src.copy_to(dst)
        import psycopg

        with psycopg.connect(cluster.url("postgres"), autocommit=True) as conn:
            conn.execute('CREATE DATABASE "served" TEMPLATE "prepared"')
        _wait(f"{base}/readyz", 200)
        assert httpx.post(f"{base}{RUN}", json={"query": test_queries[0]}, timeout=30).status_code == 200
    finally:
        stop_process(proc)
        cluster.close()
    log = (tmp_path / "serve.log").read_text()
    assert "not ready" in log and "Traceback" not in log and cluster.password not in log


def test_a_database_lost_while_serving_means_503_then_recovery(
    trained, workflows_dir, tmp_path, test_queries
) -> None:
    cluster = PostgresCluster().start()
    work = tmp_path / "work"
    copy_artifacts(trained, work)
    try:
        with connect(trained.store_url) as src, connect(cluster.url()) as dst:
            src.copy_to(dst)
        settings = trained.model_copy(update={"workdir": work})
        proc, base = _serve(settings, workflows_dir, tmp_path / "serve.log", store=cluster.url())
        answered: list[str] = []
        statuses: list[int] = []
        refused: list[str] = []

        def ask(i: int) -> None:
            r = httpx.post(f"{base}{RUN}", json={"query": test_queries[i % 50]}, timeout=60)
            statuses.append(r.status_code)
            if r.status_code == 200:
                answered.append(r.json()["trace_id"])
            else:
                assert r.status_code == 503 and int(r.headers["retry-after"]) >= 1, r.text
                refused.append(r.json()["error"]["message"])

        try:
            _wait(f"{base}/readyz", 200)
            for i in range(5):
                ask(i)
            assert statuses == [200] * 5
            cluster.stop("immediate")  # the database crashes
            for i in range(5, 10):
                ask(i)
            assert statuses[5:] == [503] * 5  # nothing answered that could not be logged
            # once the store is known down, requests are refused before they run, not after timeouts
            assert sum(m.startswith("not run: its answer could not be logged") for m in refused) >= 4, refused
            assert _wait(f"{base}/readyz", 503).status_code == 503
            cluster.restart()
            _wait(f"{base}/readyz", 200)
            for i in range(10, 15):
                ask(i)
            assert statuses[10:] == [200] * 5  # recovered by itself
        finally:
            stop_process(proc)
        with connect(cluster.url()) as store:
            rows = store.decisions()
        logged = {d.id for d in rows if d.status == 200}
        assert set(answered) <= logged and len(answered) == 10
        # the refused requests' rows waited out the outage in the queue: nothing recorded was lost
        assert sum(d.status == 503 for d in rows) >= 4
    finally:
        cluster.close()
