from pathlib import Path

import pytest

from flowfront.benchmarks import list_benchmarks, load_benchmark
from flowfront.errors import SpecError
from flowfront.spec import load_workflow
from tests.helpers import CONFIGS

WF = """name: t
knobs: {k: {values: [1, 3], default: 1}}
nodes:
  a: {kind: llm, messages: [{role: user, content: "{query}"}], models: [m1, m2], budgets: [64, null]}
  v: {kind: code, fn: majority_vote, inputs: [a]}
flow: [{sample: a, k: {knob: k}}, v]
output: v
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "wf.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("name", list_benchmarks(CONFIGS))
def test_builtin_benchmarks_load(name: str) -> None:
    bench = load_benchmark(name, CONFIGS)
    assert bench.workflow.output in bench.workflow.nodes
    assert len(bench.workflow.content_hash) == 16


def test_content_hash_ignores_formatting_but_not_content(tmp_path: Path) -> None:
    base = load_workflow(write(tmp_path, WF)).content_hash
    reformatted = load_workflow(
        write(tmp_path, "# a comment\n" + WF.replace("[m1, m2]", "[ m1 , m2 ]"))
    ).content_hash
    changed = load_workflow(write(tmp_path, WF.replace("[m1, m2]", "[m1, m3]"))).content_hash
    assert base == reformatted
    assert base != changed


@pytest.mark.parametrize(
    ("mutation", "expected"),
    [
        (lambda s: s.replace("role: user,", "role: user"), "malformed YAML"),
        (lambda s: s.replace("[64, null]", "[0, null]"), "nodes.a.budgets"),
        (lambda s: s.replace("inputs: [a]", "inputs: [b]"), "unknown node 'b'"),
        (lambda s: s.replace("{knob: k}", "{knob: z}"), "flow[0].k: unknown knob 'z'"),
        (lambda s: s.replace("majority_vote", "majority"), "nodes.v.fn: unknown code function"),
        (lambda s: s.replace("[{sample", "[{smaple"), "flow[0]"),
        (lambda s: s.replace("output: v", "output: w"), "output: unknown node 'w'"),
        (lambda s: s + "extra: 1\n", "extra"),
    ],
)
def test_invalid_workflows_name_the_path(tmp_path: Path, mutation, expected: str) -> None:
    path = write(tmp_path, mutation(WF))
    with pytest.raises(SpecError) as info:
        load_workflow(path)
    message = str(info.value)
    assert str(path) in message
    assert expected in message
    assert "\n" not in message
