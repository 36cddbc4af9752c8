"""No frontier candidate is tied with another on accuracy and latency yet dearer (a property over the
built-in benchmarks), and the strict Pareto front holds no dominated candidate."""

from __future__ import annotations

import itertools

import pytest

from flowfront.compile.jobs import compile_job, profile_job
from tests.helpers import private_settings


@pytest.fixture(scope="module")
def profiled(imported_settings, tmp_path_factory):
    settings = private_settings(imported_settings, tmp_path_factory.mktemp("twins"))
    for name in ("qa-cascade", "model-route", "code-budget"):
        profile_job(settings, name, progress=False)
    return settings


@pytest.mark.parametrize("name", ["qa-cascade", "model-route", "code-budget"])
@pytest.mark.parametrize("near_front", [0.0, 0.2])
def test_no_candidate_is_a_dearer_twin(profiled, name: str, near_front: float) -> None:
    _, frontier = compile_job(profiled, name, near_front=near_front, out_name=f"twins-{near_front}")
    est = [c.estimates for c in frontier.candidates]
    for a, b in itertools.permutations(est, 2):
        same = (a.accuracy, a.latency_sequential_s, a.latency_parallel_s) == (b.accuracy, b.latency_sequential_s,
                                                                              b.latency_parallel_s)
        assert not (same and a.cost_usd > b.cost_usd), (a, b)
    if near_front == 0.0:  # the strict front: nothing dominated on accuracy x latency
        for a, b in itertools.permutations(est, 2):
            dominated = (b.accuracy >= a.accuracy and b.latency_parallel_s <= a.latency_parallel_s
                         and (b.accuracy > a.accuracy or b.latency_parallel_s < a.latency_parallel_s))
            assert not dominated, (a, b)
