"""Bad input through the real CLI: one line that says what to fix, a non-zero exit, no traceback."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from tests.helpers import cli_env, flowfront

# the slow tier: it starts subprocesses or servers (make test-fast leaves it out)
pytestmark = pytest.mark.slow


def assert_clean_error(proc, *needles: str) -> None:
    assert proc.returncode != 0
    err = proc.stderr.strip()
    assert "Traceback" not in proc.stderr, proc.stderr
    assert err.startswith("error: ") and len(err.splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err


def test_malformed_workflow_yaml(tmp_path: Path) -> None:
    path = tmp_path / "wf.yaml"
    path.write_text("name: x\nnodes: {a: {kind: llm\n")
    assert_clean_error(flowfront("space", str(path)), str(path), "malformed YAML", "line")


@pytest.mark.parametrize(
    ("config", "needle"),
    [
        ('{"nodes": {"answr": {"model": "claude-v2"}}, "knobs": {"checker": "off"}}', "unknown node 'answr'"),
        (
            '{"nodes": {"answer": {"model": "gpt-5"}}, "knobs": {"checker": "off"}}',
            "model 'gpt-5' is not in its choices",
        ),
        ('{"nodes": {"solve": {"model": "claude-v2", "budget": 100}}}', "budget 100 is outside the space"),
        ("{not json", "not valid JSON"),
    ],
)
def test_bad_configuration(tmp_path: Path, config: str, needle: str) -> None:
    bench = "code-budget" if "solve" in config else "qa-cascade"
    proc = flowfront("exec", bench, "--config", config, "--workdir", str(tmp_path))
    assert_clean_error(proc, needle)


def test_missing_data_dir(tmp_path: Path) -> None:
    proc = flowfront(
        "exec", "qa-cascade", "--data-dir", str(tmp_path / "nowhere"), "--workdir", str(tmp_path)
    )
    assert_clean_error(proc, "does not exist", "FLOWFRONT_DATA_DIR")


def test_corrupt_trace_store(tmp_path: Path) -> None:
    (tmp_path / "traces.sqlite").write_bytes(b"garbage" * 1000)
    proc = flowfront("exec", "qa-cascade", "--workdir", str(tmp_path))
    assert_clean_error(proc, "traces.sqlite", "not a usable SQLite database", "move the file aside")


def test_unknown_benchmark(tmp_path: Path) -> None:
    assert_clean_error(
        flowfront("exec", "qa-cascad", "--workdir", str(tmp_path)), "unknown benchmark", "qa-cascade"
    )


def test_unknown_strategy_for_run_fails_before_any_work(tmp_path: Path) -> None:
    done = flowfront("run", "--strategies", "frontier,clustr", "--workdir", str(tmp_path / "w"))
    assert_clean_error(done, "unknown strategy 'clustr'", "cluster")
    assert not (tmp_path / "w").exists()  # nothing was imported or profiled


def test_exec_json_contract(imported_settings) -> None:
    proc = flowfront(
        "exec",
        "qa-cascade",
        "--split",
        "test",
        "--json",
        "--workdir",
        str(imported_settings.workdir),
        env=cli_env(),
    )
    assert proc.returncode == 0, proc.stderr
    out = orjson.loads(proc.stdout)
    assert {"n", "accuracy", "latency_sequential_s", "latency_parallel_s", "cost_usd"} <= set(out)
    assert out["n"] > 700 and 0 < out["accuracy"] < 1
    assert out["latency_parallel_s"] < out["latency_sequential_s"]


def test_run_warns_when_the_proxy_ranks_unlike_the_measurement() -> None:
    from rich.console import Console

    from flowfront.cli.pipeline import _warn_on_weak_proxy

    console = Console(record=True, width=200)
    warned = _warn_on_weak_proxy(
        console, "mine", {"accuracy": {"spearman": 0.43}, "latency": {"spearman": 0.95}}
    )
    assert len(warned) == 1 and "accuracy" in warned[0] and "0.43" in console.export_text()
    assert (
        _warn_on_weak_proxy(
            console, "mine", {"accuracy": {"spearman": 0.9}, "latency": {"spearman": float("nan")}}
        )
        == []
    )
