"""The eval harness end to end on code-budget (small), train/test separation, and the written outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pytest

from flowfront.errors import RoutingError, SpecError
from flowfront.eval.harness import Strategy, check_disjoint
from flowfront.eval.jobs import eval_job, evaluate
from flowfront.eval.report import write_report
from flowfront.router.baselines import RandomPolicy, StaticRouter
from flowfront.router.train import load_data
from tests.helpers import writable_copy


@pytest.fixture(scope="module")
def compiled(compiled_settings, tmp_path_factory):
    return writable_copy(compiled_settings, tmp_path_factory.mktemp("eval"), "code-budget")


@pytest.fixture(scope="module")
def result(compiled) -> dict:
    return evaluate(
        compiled, "code-budget", strategies=["random", "knn"], seeds=(0, 1), n_boot=300, progress=False
    )


def test_structure_and_reference_strategies(result) -> None:
    assert set(result["strategies"]) == {"random", "knn", "static", "best-single", "oracle"}
    assert result["schema_version"] == 2 and result["benchmark"] == "code-budget"
    assert result["latency_source"] == "modeled" and result["execution"] == "parallel"
    lambdas = np.array(result["lambdas"])
    assert len(lambdas) == 9 and lambdas[0] == 0.0 and np.all(np.diff(lambdas) > 0)
    assert len(result["latency_budgets_s"]) == 5
    st = result["strategies"]
    assert st["random"]["runs"] == 2 and [p["seed"] for p in st["random"]["per_seed"]] == [0, 1]
    assert st["static"]["runs"] == 1 and st["static"]["per_seed"][0]["seed"] is None
    assert st["oracle"]["decision_latency"] is None and st["oracle"]["fitted_on"].startswith("test")
    assert st["knn"]["decision_latency"]["p50_ms"] > 0 and st["knn"]["decision_latency"]["n_queries"] == 50
    orjson.dumps(result)  # plain JSON: no numpy, no NaN


def test_values_are_sane(result) -> None:
    st = result["strategies"]
    oracle_acc0 = st["oracle"]["lambda_sweep"][0]["accuracy"]["mean"]
    for name, s in st.items():
        eu = s["expected_utility"]
        assert eu["low"] <= eu["mean"] <= eu["high"], name
        for point in s["lambda_sweep"]:
            acc = point["accuracy"]
            assert 0.0 <= acc["low"] <= acc["mean"] <= acc["high"] <= 1.0, name
        assert oracle_acc0 >= s["lambda_sweep"][0]["accuracy"]["mean"] - 1e-12, name
        assert st["oracle"]["expected_utility"]["mean"] >= eu["mean"] - 1e-12, name
        assert s["compare"]["gap_to_oracle"]["oracle"]["expected_utility"]["mean"] >= -1e-12, name
        assert 0.0 <= s["hypervolume"]["latency"]["mean"] <= 2.0, name
        for b in s["budgets"]:
            assert 0.0 <= b["infeasible_share"] <= 1.0 and 0.0 <= b["over_budget_share"] <= 1.0
    # Paired differences are consistent with the strategies' own means.
    diff = st["random"]["compare"]["expected_utility_minus"]["static"]
    assert diff["mean"] == pytest.approx(
        st["random"]["expected_utility"]["mean"] - st["static"]["expected_utility"]["mean"]
    )
    assert diff["low"] <= diff["mean"] <= diff["high"]
    # Random ignores the preference, so its utility is well below static selection's.
    assert diff["high"] < 0
    # best-single against itself: speed-up exactly 1 at its own accuracy.
    assert st["best-single"]["compare"]["speedup_vs_best-single"]["at_baseline_best"] == pytest.approx(1.0)
    # Routing baselines in the run are compared at matched accuracy too (FlowCompile's comparison).
    assert "speedup_vs_knn" in st["random"]["compare"] and "speedup_vs_knn" not in st["knn"]["compare"]
    seeds = [p["expected_utility"] for p in st["random"]["per_seed"]]
    assert st["random"]["expected_utility"]["mean"] == pytest.approx(np.mean(seeds))


class RecordingRouter(StaticRouter):
    """Static selection that records, in ``log``, the queries and feature rows it was fitted on."""

    def __init__(self, log: list, execution: str = "parallel") -> None:
        super().__init__(execution=execution)
        self.log = log

    def fit(self, X, Y):
        self.log.append((list(Y.query_ids), np.array(X, copy=True)))
        return super().fit(X, Y)


def test_training_never_sees_the_test_split(compiled) -> None:
    seen: list[tuple[list[str], np.ndarray]] = []
    spy = Strategy("spy", lambda seed, execution: RecordingRouter(seen, execution), "frontier", seeded=True)
    evaluate(compiled, "code-budget", strategies=[spy], seeds=(0, 1), n_boot=50, progress=False)
    data = load_data(compiled, "code-budget", "frontier")
    assert len(seen) == 2  # one fit per seed
    for ids, X in seen:
        assert ids == data.train.query_ids
        assert not set(ids) & set(data.test.query_ids)
        np.testing.assert_array_equal(X, data.X_train)
    with pytest.raises(RoutingError, match="also in the train split"):
        check_disjoint(data.train, data.train.rows(np.arange(3)))


def test_execution_budgets_and_bad_arguments(compiled) -> None:
    res = evaluate(compiled, "code-budget", strategies=[], seeds=(0,), execution="sequential",
                   latency_budgets=[2.0, 1.0], n_boot=50, progress=False)
    assert res["execution"] == "sequential" and res["latency_budgets_s"] == [1.0, 2.0]
    with pytest.raises(SpecError, match="execution model"):
        evaluate(compiled, "code-budget", strategies=[], execution="quantum", progress=False)
    with pytest.raises(SpecError, match="positive seconds"):
        evaluate(compiled, "code-budget", strategies=[], latency_budgets=[-1.0], progress=False)
    with pytest.raises(RoutingError, match="unknown strategy 'psychic'"):
        evaluate(compiled, "code-budget", strategies=["psychic"], progress=False)


@pytest.mark.slow  # starts a subprocess or a server
def test_eval_job_and_report_say_where_the_router_loses(compiled, tmp_path: Path) -> None:
    # A "frontier router" that ignores the query and the preference: it must be reported as losing.
    weak = Strategy(
        "frontier", lambda seed, execution: RandomPolicy(seed=seed, execution=execution), seeded=True
    )
    path, res = eval_job(compiled, "code-budget", strategies=[weak], seeds=(0,), n_boot=200, progress=True)
    folder = compiled.workdir / "code-budget" / "eval"
    assert path == folder / "results.json" and (folder / "curves.png").stat().st_size > 10_000
    stored = orjson.loads(path.read_bytes())
    assert stored["provenance"]["packages"]["numpy"] and stored["provenance"]["created_at"]
    # write_results completes a copy of the provenance; the result it was given is unchanged
    assert (
        set(res["provenance"]) == {"workflow_hash", "data_hash"}
        and stored["frontier_hash"] == res["frontier_hash"]
    )
    assert stored["provenance"]["data_hash"] == res["frontier_hash"] and stored["checksum"]
    report = write_report(
        [res], tmp_path / "report.md", extra_sections={"Timings": "stage table"}
    ).read_text()
    assert report.index("## Headline") < report.index("## code-budget") < report.index("## Timings")
    assert "| code-budget | frontier |" in report and "| code-budget | static |" in report
    assert "**The frontier router loses** on expected utility to: static" in report
    assert "**modeled**" in report and "MasRouter-style and MaAS-style" in report
    assert "run `flowfront validate`" in report  # no validation.png yet: said so, not linked
    (compiled.workdir / "code-budget" / "validation.png").write_bytes(b"\x89PNG")
    report = write_report([res], tmp_path / "report.md").read_text()
    assert "](" in report and "validation.png)" in report


def test_the_router_is_evaluated_beside_its_prior_and_the_cluster_router(compiled, tmp_path: Path) -> None:
    res = evaluate(compiled, "code-budget", strategies=["frontier", "frontier-prior", "cluster"], seeds=(0,),
                   n_boot=200, progress=False)
    st = res["strategies"]
    assert set(load_data(compiled, "code-budget", "frontier").train.tasks) == {"mbpp"}
    assert "frontier-hinted" not in st  # one task: a hint would say nothing
    assert st["frontier"]["hints"] is None and st["frontier"]["hinted_share"] is None
    minus = st["frontier"]["compare"]["expected_utility_minus"]
    assert {"cluster", "frontier-prior", "static"} <= set(minus)
    report = write_report([res], tmp_path / "report.md").read_text()
    section = report[report.index("## Against the field's simple routers"):]
    assert "| code-budget |" in section and (
        "never significantly below" in section or "Significantly below" in section
    )


def test_the_hinted_run_hands_each_test_query_its_task() -> None:
    import dataclasses

    from flowfront.eval.harness import CandidateSet, Context, run_all, with_hinted
    from flowfront.router.model import LightGBMRouter
    from flowfront.router.select import Scale
    from flowfront.router.testing import DIM, synthetic

    (X_tr, Y_tr), (X_te, Y_te) = synthetic(300, 1), synthetic(120, 2)
    Y_te = dataclasses.replace(Y_te, query_ids=[f"test-{q}" for q in Y_te.query_ids])
    sets = {"frontier": CandidateSet(Y_te, X_te, Y_tr, X_tr)}
    router = Strategy(
        "frontier",
        lambda seed, execution: LightGBMRouter(seed=seed, n_estimators=40, embedding_dim=DIM),
        seeded=True,
    )
    plan = with_hinted([router], sets)
    assert (
        [s.name for s in plan] == ["frontier", "frontier-hinted", "per-task"]
        and plan[1].hinted
        and plan[2].hinted
    )
    ctx = Context("parallel", Scale.from_estimates(Y_tr.latency_parallel_s.mean(0), Y_tr.cost_usd.mean(0)),
                  np.array([0.0, 0.3]), np.array([2.0, 4.0]), sets)
    runs = run_all(plan[:2], ctx, [0, 1], progress=False)
    plain, hinted = runs["frontier"][0], runs["frontier-hinted"][0]
    assert plain.hinted_share is None and hinted.hinted_share == 1.0
    # the hinted runs reuse the frontier fits of the same seeds: one router, asked two ways
    assert [r.fit_seconds for r in runs["frontier-hinted"]] == [r.fit_seconds for r in runs["frontier"]]
    assert (
        with_hinted(plan[:1], {"frontier": CandidateSet(Y_te, X_te, Y_tr.rows(np.arange(1)), X_tr[:1])})
        == plan[:1]
    )
