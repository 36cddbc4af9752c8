"""The one atomic writer every artifact goes through."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowfront.artifacts import package_versions, write_atomic


def test_write_replaces_whole_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "frontier.json"
    assert write_atomic(path, b"old") == path and path.read_bytes() == b"old"
    write_atomic(path, b"new", durable=False)
    assert path.read_bytes() == b"new" and sorted(p.name for p in path.parent.iterdir()) == ["frontier.json"]


def test_a_failed_write_keeps_the_previous_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_atomic(tmp_path / "results.json", b"previous")

    def refuse(*_: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("flowfront.artifacts.os.replace", refuse)
    with pytest.raises(OSError, match="disk full"):
        write_atomic(path, b"half")
    assert path.read_bytes() == b"previous" and [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_package_versions_name_what_is_installed() -> None:
    versions = package_versions(("numpy", "no-such-package-here"))
    assert set(versions) == {"numpy"} and versions["numpy"][0].isdigit()


# --- the one Artifact base --------------------------------------------------------------------


def _kinds() -> dict[str, type]:
    from flowfront.compile.artifact import Frontier, Profiles
    from flowfront.eval.report import EvalResults
    from flowfront.router.artifact import RouterArtifact
    from flowfront.router.base import OutcomesHeader

    return {"profiles": Profiles, "frontier": Frontier, "router": RouterArtifact, "outcomes": OutcomesHeader,
            "eval": EvalResults}


def test_the_five_artifacts_share_the_base_and_name_their_kind() -> None:
    from flowfront.artifacts import Artifact

    for kind, cls in _kinds().items():
        assert issubclass(cls, Artifact) and cls.expected()[0] == kind
        assert "provenance" in cls.model_fields and cls.REBUILD.startswith("re-run `flowfront ")


def _results(**provenance: str):
    from flowfront.artifacts import Provenance
    from flowfront.eval.report import EvalResults

    return EvalResults(benchmark="b", strategies={"static": {"eu": 0.5}},
                       provenance=Provenance(**{"workflow_hash": "w1", "data_hash": "d1", **provenance}))


def test_save_load_round_trips_and_checks_provenance(tmp_path: Path) -> None:
    from flowfront.errors import FlowfrontError
    from flowfront.eval.report import EvalResults

    path = _results().save(tmp_path / "results.json")
    loaded = EvalResults.load(path, expect_workflow_hash="w1", expect_inputs_hash="d1")
    assert loaded.model_dump()["strategies"] == {"static": {"eu": 0.5}} and loaded == EvalResults.load(path)
    with pytest.raises(FlowfrontError, match="another version of the workflow"):
        EvalResults.load(path, expect_workflow_hash="w2")
    with pytest.raises(FlowfrontError, match="other inputs"):
        EvalResults.load(path, expect_inputs_hash="d2")


def test_an_edited_or_foreign_file_is_refused_with_the_fix(tmp_path: Path) -> None:
    import orjson

    from flowfront.compile.artifact import Frontier
    from flowfront.errors import CompileError, FlowfrontError
    from flowfront.eval.report import EvalResults

    path = _results().save(tmp_path / "results.json")
    data = orjson.loads(path.read_bytes())
    path.write_bytes(orjson.dumps({**data, "benchmark": "other"}))
    with pytest.raises(FlowfrontError, match="checksum mismatch") as err:
        EvalResults.load(path)
    assert err.value.hint == "re-run `flowfront eval`"
    with pytest.raises(CompileError, match="not a frontier artifact"):
        Frontier.load(path)
    with pytest.raises(CompileError, match="not found"):
        Frontier.load(tmp_path / "missing.json")


def test_content_hash_is_of_content_and_inputs_not_of_when_or_where() -> None:
    a, b = _results(), _results().model_copy(update={"provenance": _results().provenance.model_copy(
        update={"created_at": 0.0, "packages": {}, "environment": {"git_commit": "x"}})})
    assert a.content_hash() == b.content_hash()
    assert a.content_hash() != _results(data_hash="d2").content_hash()


@pytest.mark.parametrize(
    ("field", "value"), [("accuracy", 2.5), ("latency_parallel_s", -1.0), ("cost_usd", -0.5)]
)
def test_a_frontier_with_out_of_range_estimates_is_refused_even_with_a_valid_checksum(
    tmp_path: Path, field, value
) -> None:
    """A checksum says the file is as written, not that what was written is sane."""
    import orjson

    from flowfront.artifacts import checksum
    from flowfront.compile.artifact import Estimates, Frontier
    from flowfront.errors import CompileError
    from flowfront.spec import load_workflow
    from tests.helpers import PROJECT_ROOT

    wf = load_workflow(PROJECT_ROOT / "configs" / "workflows" / "model-route.yaml")
    good = Estimates(accuracy=0.5, latency_sequential_s=1.0, latency_parallel_s=1.0, cost_usd=0.01)
    path = Frontier.of_configurations(wf, [{"knobs": {}, "nodes": {"answer": {"model": "m"}}}], [good]).save(
        tmp_path / "frontier.json")
    data = orjson.loads(path.read_bytes())
    data.pop("checksum")
    data["candidates"][0]["estimates"][field] = value
    path.write_bytes(orjson.dumps({**data, "checksum": checksum(data)}))
    with pytest.raises(CompileError, match=f"invalid frontier at `candidates.0.estimates.{field}`"):
        Frontier.load(path)
