"""A served request that switches at a checkpoint answers as ``exec`` of the candidate it ended on.

One workflow per family: the cascade (qa-cascade: answer and check, escalate on disagreement),
the verify/refine loop (live-math) and generate/test/repair (live-code, whose test node runs a
sandbox subprocess, hence the slow mark). On this data the checkpoint routers do not earn their
place by the one-SE rule, so the router folder served here holds ones fitted with
``adopt="always"`` and small-data booster settings: real LightGBM fits on the recorded
trajectories, used at every checkpoint so the switching path is exercised.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from flowfront.settings import Settings
from tests.helpers import PROJECT_ROOT, private_settings
from tests.service.support import BENCH, copy_workdir, make_client

pytestmark = pytest.mark.slow

_SMALL = {"min_data_in_leaf": 3, "valid_fraction": 0.3, "early_stopping_rounds": 50, "num_leaves": 4}


def _always_switching(settings: Settings, bench: str) -> None:
    """Replace the benchmark's router folder by one whose checkpoint routers are always used."""
    from flowfront.router.artifact import load_router, read_artifact, save_router
    from flowfront.router.progressive import ProgressivePolicy
    from flowfront.router.train import load_data, load_trajectories

    data = load_data(settings, bench, "frontier", include_test=False)
    folder = settings.workspace.benchmark(bench).router()
    router = load_router(folder, expect_inputs_hash=data.frontier.content_hash())
    traj = load_trajectories(settings, data.bench, data.frontier, "train")
    policy = ProgressivePolicy(execution=data.frontier.execution, adopt="always", checkpoint_params=_SMALL)
    policy.fit(data.X_train, data.train, trajectories=traj, upfront=router)
    art = read_artifact(folder)
    save_router(
        router,
        folder,
        frontier_hash=data.frontier.content_hash(),
        workflow_hash=data.bench.workflow.content_hash,
        feature_config=art.feature_config,
        metrics=art.metrics,
        checkpoints=policy,
        note="always re-decide (test)",
    )


@pytest.fixture(scope="module", params=["qa-cascade", "live-math", "live-code"])
def served(request: pytest.FixtureRequest, compiled_settings: Settings, trained: Settings,
           tmp_path_factory: pytest.TempPathFactory):
    from flowfront.compile.jobs import compile_job, profile_job
    from flowfront.router.train import train_job

    bench = request.param
    work = tmp_path_factory.mktemp(f"progressive-{bench}")
    if bench == BENCH:  # the service tests' trained qa-cascade (a copy: its router is replaced here)
        settings = copy_workdir(trained, work, outcomes=True)
    else:
        settings = private_settings(compiled_settings, work)
        profile_job(settings, bench, progress=False)
        compile_job(settings, bench)
        train_job(settings, bench, "frontier")
    _always_switching(settings, bench)
    workflows = tmp_path_factory.mktemp(f"workflows-{bench}")
    (workflows / f"{bench}.yaml").write_text(
        (PROJECT_ROOT / "configs" / "workflows" / f"{bench}.yaml").read_text()
    )
    return bench, settings, workflows


def _exec(settings: Settings, bench_name: str, config: dict, query) -> object:
    from flowfront.benchmarks import load_benchmark
    from flowfront.runtime import benchmark_backend, execute, open_store
    from flowfront.space import Configuration

    bench = load_benchmark(bench_name, settings.configs_dir)
    with open_store(settings) as store:
        return execute(
            bench, Configuration.parse(config), [query], benchmark_backend(bench, store, settings), settings
        ).results[0]


def test_a_switched_request_answers_as_exec_of_its_last_candidate(served, tmp_path: Path) -> None:
    from flowfront.benchmarks import load_benchmark
    from flowfront.compile.artifact import Frontier
    from flowfront.router.select import Scale, frontier_estimates, lambda_sweep
    from flowfront.runtime import benchmark_queries, open_store, prepare_data
    from flowfront.store import connect

    bench_name, settings, workflows = served
    bench = load_benchmark(bench_name, settings.configs_dir)
    with open_store(settings) as store:
        queries = benchmark_queries(bench, store, prepare_data(bench, store, settings), "test")[:60]
    frontier = Frontier.load(settings.workspace.benchmark(bench_name).frontier())
    execution = frontier.execution
    acc, lat, cost = frontier_estimates(frontier)
    lambdas = lambda_sweep(Scale.from_estimates(lat, cost), acc, lat, cost, n=9)  # the evaluation's sweep
    switched = []
    outcomes = {"switched": 0.0, "kept": 0.0}
    log = tmp_path / "served.sqlite"
    with make_client(settings, workflows, TRACE_STORE=str(log)) as client:
        for q in queries:
            for lam in lambdas:
                r = client.post(
                    f"/v1/workflows/{bench_name}/run", json={"query": q.text, "preference": {"lambda": lam}}
                )
                assert r.status_code == 200, r.text
                body = r.json()
                assert [c["checkpoint"] for c in body["checkpoints"]], (
                    "every checkpoint reached is re-decided"
                )
                if any(c["switched"] for c in body["checkpoints"]):
                    switched.append((q, body))
                for c in body["checkpoints"]:
                    outcomes["switched" if c["switched"] else "kept"] += 1
        # /metrics counts the same re-decisions, by outcome
        counted = {"switched": 0.0, "kept": 0.0}
        for line in client.get("/metrics").text.splitlines():
            ours = f'workflow="{bench_name}"' in line
            if line.startswith("flowfront_checkpoint_decisions_total{") and ours:
                counted[line.split('outcome="')[1].split('"')[0]] += float(line.rsplit(" ", 1)[1])
        assert counted == outcomes
    assert switched, f"no request switched on {bench_name}: the switching path was not exercised"
    for q, body in switched[:12]:
        last = [c for c in body["checkpoints"] if c["switched"]][-1]
        assert body["candidate"]["id"] == last["to"]
        assert last["to"] in last["compatible"] and last["from"] in last["compatible"]
        expected = _exec(settings, bench_name, body["candidate"]["config"], q)
        assert body["answer"] == expected.answer
        assert body["measured"]["latency_s"] == pytest.approx(expected.latency(execution), abs=1e-9)
        assert body["measured"]["cost_usd"] == pytest.approx(expected.cost_usd, abs=1e-12)
        assert len(body["calls"]) == len(expected.calls)  # nothing called twice, nothing left out
    # The decision log keeps each re-decision beside the upfront choice.
    with connect(log) as store:
        [row] = store.decisions(ids=[switched[0][1]["trace_id"]])
    assert row.first_candidate == switched[0][1]["checkpoints"][0]["from"]
    assert row.candidate == switched[0][1]["candidate"]["id"]
    assert [c["checkpoint"] for c in row.checkpoints] == [
        c["checkpoint"] for c in switched[0][1]["checkpoints"]
    ]


def test_route_explain_shows_the_switch_the_service_made(served, tmp_path: Path) -> None:
    import orjson

    from flowfront.benchmarks import load_benchmark
    from flowfront.compile.artifact import Frontier
    from flowfront.router.select import Scale, frontier_estimates, lambda_sweep
    from flowfront.runtime import benchmark_queries, open_store, prepare_data
    from tests.helpers import flowfront

    bench_name, settings, workflows = served
    if bench_name != "qa-cascade":
        pytest.skip("one workflow is enough for the CLI's view of the same hook")
    bench = load_benchmark(bench_name, settings.configs_dir)
    with open_store(settings) as store:
        queries = benchmark_queries(bench, store, prepare_data(bench, store, settings), "test")[:60]
    acc, lat, cost = frontier_estimates(Frontier.load(settings.workspace.benchmark(bench_name).frontier()))
    found = None
    with make_client(settings, workflows, TRACE_STORE=str(tmp_path / "served.sqlite")) as client:
        for lam in lambda_sweep(Scale.from_estimates(lat, cost), acc, lat, cost, n=9):
            for q in queries:
                body = client.post(
                    f"/v1/workflows/{bench_name}/run",
                    json={"query": q.text, "preference": {"lambda": float(lam)}},
                ).json()
                if any(c["switched"] for c in body["checkpoints"]):
                    found = (q, float(lam), body)
                    break
            if found:
                break
    assert found is not None
    q, lam, body = found
    args = [
        "route",
        bench_name,
        q.text,
        "--lambda",
        repr(lam),
        "--explain",
        "--workdir",
        str(settings.workdir),
        "--data-dir",
        str(settings.data_dir),
    ]
    done = flowfront(*args, "--json")
    assert done.returncode == 0, done.stderr
    ran = orjson.loads(done.stdout)["explain"]
    assert ran["final"] == body["candidate"]["id"] and ran["answer"] == body["answer"]
    keys = ("checkpoint", "from", "to", "switched", "compatible")
    assert [{k: c[k] for k in keys} for c in ran["checkpoints"]] == [
        {k: c[k] for k in keys} for c in body["checkpoints"]
    ]
    text = flowfront(*args)
    assert text.returncode == 0, text.stderr
    assert f"switched {body['checkpoints'][0]['from']} -> " in text.stdout or "switched" in text.stdout
