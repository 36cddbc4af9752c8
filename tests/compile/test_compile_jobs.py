"""profile → compile on replayed data, filters, and the errors a user can hit."""

from __future__ import annotations

import shutil
from pathlib import Path

import orjson
import pytest

from flowfront.compile.artifact import Frontier, Profiles
from flowfront.compile.jobs import compile_job, profile_job
from flowfront.errors import CompileError
from flowfront.settings import Settings
from tests.helpers import flowfront, private_settings, workflow_models

CASCADE_MODELS = workflow_models("qa-cascade", "answer")


@pytest.fixture(scope="module")
def profiled(imported_settings, tmp_path_factory) -> Settings:
    """A private workdir sharing the imported store, with qa-cascade profiled on 400 train queries."""
    settings = private_settings(imported_settings, tmp_path_factory.mktemp("compile"))
    profile_job(settings, "qa-cascade", max_queries=400, seed=1, progress=False)
    return settings


def test_profiles_artifact(profiled) -> None:
    profiles = Profiles.load(profiled.workdir / "qa-cascade" / "profiles.json")
    assert profiles.n_queries == 400 and 0 < profiles.n_reference_correct <= 400
    answer = profiles.nodes["answer"]
    assert len(answer.choices) == 11 and answer.group == profiles.nodes["check"].group
    by_model = {c.model: c for c in answer.choices}
    assert by_model["gpt-4-1106-preview"].accuracy > by_model["mistralai/mistral-7b-chat"].accuracy
    assert all(c.latency_p90_s >= c.latency_mean_s * 0.5 for c in answer.choices)
    assert profiles.groups[answer.group].joint is not None


@pytest.mark.parametrize("model", CASCADE_MODELS)
def test_restricting_to_any_single_model_leaves_a_frontier(profiled, model) -> None:
    _, frontier = compile_job(
        profiled, "qa-cascade", models=[model], out_name=f"only-{model.replace('/', '_')}"
    )
    assert frontier.candidates
    for cand in frontier.candidates:
        settings = cand.config["nodes"].values()
        assert all(s["model"] == model for s in settings)


def test_frontier_artifact_and_plot(profiled) -> None:
    path, frontier = compile_job(profiled, "qa-cascade", objective="both", mode="correlated", near_front=0.0)
    loaded = Frontier.load(path)
    assert loaded.candidates == frontier.candidates and loaded.objective == "both"
    assert path.with_suffix(".png").stat().st_size > 10_000
    assert (
        loaded.provenance.data_hash
        == Profiles.load(profiled.workdir / "qa-cascade" / "profiles.json").content_hash()
    )
    est = [
        (c.estimates.accuracy, c.estimates.latency_parallel_s, c.estimates.cost_usd)
        for c in loaded.candidates
    ]
    for i, a in enumerate(est):  # nothing on the frontier is dominated by another frontier point
        assert not any(
            b != a and b[0] >= a[0] and b[1] <= a[1] and b[2] <= a[2] for b in est[:i] + est[i + 1 :]
        )


def test_filters_that_leave_nothing_and_unknown_models(profiled) -> None:
    with pytest.raises(CompileError, match="unknown model 'gpt-5'"):
        compile_job(profiled, "qa-cascade", models=["gpt-5"])
    with pytest.raises(CompileError, match="leaves no structure"):
        compile_job(profiled, "qa-cascade", knobs={"checker": ["sometimes"]})
    with pytest.raises(CompileError, match="leave no choice"):
        compile_job(profiled, "qa-cascade", max_budget=10)  # every budget here is unlimited


@pytest.mark.slow  # starts a subprocess or a server
def test_corrupt_or_empty_profiles_are_clear_errors(profiled, tmp_path: Path) -> None:
    work = tmp_path / "w"
    (work / "qa-cascade").mkdir(parents=True)
    target = work / "qa-cascade" / "profiles.json"
    target.write_text("{not json")
    proc = flowfront("compile", "qa-cascade", "--workdir", str(work))
    assert proc.returncode != 0 and "corrupt profiles file" in proc.stderr and "Traceback" not in proc.stderr
    data = orjson.loads((profiled.workdir / "qa-cascade" / "profiles.json").read_bytes())
    data["nodes"] = {}
    target.write_bytes(orjson.dumps(data))
    proc = flowfront("compile", "qa-cascade", "--workdir", str(work))
    assert proc.returncode != 0 and "checksum mismatch" in proc.stderr and "Traceback" not in proc.stderr


def test_validate_reports_rank_correlation_recall_and_hypervolume(profiled) -> None:
    from flowfront.compile.validate import validate_job

    _, frontier = compile_job(profiled, "qa-cascade")
    path, report = validate_job(profiled, "qa-cascade", n_front=12, n_sample=16)
    assert report["accuracy"]["spearman"] >= 0.8
    assert report["latency"]["spearman"] >= 0.9
    assert 0 < report["frontier_recall"] <= 1
    assert report["hypervolume"]["ratio"] > 0.8
    assert report["n_frontier_executed"] == min(12, len(frontier.candidates)) and report["n_sampled"] == 16
    assert path.with_suffix(".png").stat().st_size > 10_000


@pytest.mark.slow  # starts a subprocess or a server
def test_cli_compile_writes_the_default_frontier_and_filtered_ones_beside_it(profiled, tmp_path) -> None:
    work = tmp_path / "cli"
    shutil.copytree(profiled.workdir, work, ignore=shutil.ignore_patterns("frontier*"))
    assert flowfront("compile", "qa-cascade", "--workdir", str(work)).returncode == 0
    first = (work / "qa-cascade" / "frontier.json").read_bytes()
    filtered = flowfront("compile", "qa-cascade", "--models", "claude-v2", "--workdir", str(work))
    assert filtered.returncode == 0, filtered.stderr
    assert (work / "qa-cascade" / "frontier.json").read_bytes() == first  # the default one is untouched
    assert len(list((work / "qa-cascade").glob("frontier-*.json"))) == 1
    again = flowfront("compile", "qa-cascade", "--workdir", str(work))
    from flowfront.compile.artifact import Frontier

    assert again.returncode == 0
    assert (
        Frontier.load(work / "qa-cascade" / "frontier.json").content_hash()
        == Frontier.model_validate(
            {k: v for k, v in orjson.loads(first).items() if k != "checksum"}
        ).content_hash()
    )
