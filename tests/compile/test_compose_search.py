"""Sequential/parallel workflows compose exactly: same frontier as enumeration, 10^9 in seconds."""

from __future__ import annotations

import time

import numpy as np
import pytest

from flowfront.artifacts import Provenance
from flowfront.compile.artifact import ChoiceProfile, GroupProfile, NodeProfile, Profiles
from flowfront.compile.proxy import Proxy
from flowfront.compile.search import search
from flowfront.spec import Workflow, parse_model

MODELS = [f"m{i}" for i in range(10)]


def chain(n_nodes: int) -> Workflow:
    """n llm nodes: a chain of refinements, the middle two in parallel, each reading the previous."""
    nodes, flow, prev = {}, [], None
    for i in range(n_nodes):
        content = "{query}" if prev is None else f"{{query}} {{{prev}}}"
        nodes[f"n{i}"] = {"kind": "llm", "messages": [{"role": "user", "content": content}], "models": MODELS}
        prev = f"n{i}"
    nodes["n2"]["messages"][0]["content"] = "{query} {n0}"  # n1 and n2 both read n0 and run in parallel
    nodes["n3"]["messages"][0]["content"] = "{query} {n1} {n2}"
    flow = ["n0", {"parallel": [["n1"], ["n2"]]}] + [f"n{i}" for i in range(3, n_nodes)]
    return parse_model(
        Workflow, {"name": "chain", "nodes": nodes, "flow": flow, "output": f"n{n_nodes - 1}"}, "test"
    )


def profiles(wf: Workflow, seed: int) -> Profiles:
    rng = np.random.default_rng(seed)
    nodes, groups = {}, {}
    for name in wf.llm_nodes():
        acc, lat, cost = rng.uniform(0.5, 0.99, 10), rng.uniform(0.1, 3, 10), rng.uniform(1e-5, 1e-2, 10)
        choices = [ChoiceProfile(model=m, budget=None, n=50, accuracy=a, latency_mean_s=lt, latency_p90_s=lt,
                                 cost_mean_usd=c, prompt_tokens_mean=1, completion_tokens_mean=1)
                   for m, a, lt, c in zip(MODELS, acc, lat, cost, strict=True)]
        nodes[name] = NodeProfile(group=name, induced_n=50, choices=choices)
        groups[name] = GroupProfile(nodes=[name], n_inputs=50)
    return Profiles(
        workflow=wf.name,
        provenance=Provenance(workflow_hash=wf.content_hash, data_hash="t"),
        benchmark="chain",
        data_source="t",
        split="train",
        seed=seed,
        n_queries=50,
        n_reference_correct=50,
        reference={},
        nodes=nodes,
        groups=groups,
    )


@pytest.mark.parametrize(
    ("objective", "execution"), [("latency", "parallel"), ("both", "sequential"), ("cost", "parallel")]
)
def test_composition_equals_enumeration(objective, execution) -> None:
    wf = chain(5)
    proxy = Proxy(wf, profiles(wf, 3))
    enumerated = search(proxy, objective=objective, execution=execution)
    composed = search(proxy, objective=objective, execution=execution, max_enumerate=10)
    assert enumerated.method == "enumerate" and composed.method == "compose"
    key = "latency_parallel_s" if execution == "parallel" else "latency_sequential_s"
    cols = ["accuracy", key, "cost_usd"]
    a = sorted(tuple(round(p.estimates[c], 12) for c in cols) for p in enumerated.points)
    b = sorted(tuple(round(p.estimates[c], 12) for c in cols) for p in composed.points)
    assert a == b


def test_a_billion_configurations_compile_exactly_and_fast() -> None:
    wf = chain(9)
    proxy = Proxy(wf, profiles(wf, 7))
    started = time.perf_counter()
    result = search(proxy, objective="both", max_enumerate=1000)  # per-slot pruning alone would shrink it
    assert result.space_size == 10**9 and result.method == "compose"
    assert time.perf_counter() - started < 60
    assert len(result.points) > 10
