"""The near-front widening of a frontier: the regret test on toy points, then compile on model-route.

model-route is one node over nine models whose latency cards tie in groups, so its proxy front
keeps two models; the near front is what gives its router something to choose from.
"""

from __future__ import annotations

import numpy as np
import pytest

from flowfront.compile.search import regret
from flowfront.errors import CompileError
from tests.helpers import private_settings

LAMBDAS = np.concatenate([[0.0], np.geomspace(1e-3, 1e3, 48)])[:, None]


def test_regret_is_zero_on_the_front_and_keeps_the_gap_of_a_latency_tie() -> None:
    front = np.array([[0.6, 0.0], [0.9, 1.0]])  # accuracy, normalised latency
    points = np.array([
        [0.6, 0.0],   # a front point
        [0.5, 0.0],   # tied with the fast point, 0.1 less accurate
        [0.85, 0.2],  # above the chord between the two: some trade-off prefers it to both
        [0.88, 1.0],  # tied with the accurate point, 0.02 less accurate
        [0.7, 0.9],   # under the chord: worse than mixing the two at every trade-off
    ])
    r = regret(points, front, LAMBDAS)
    assert r[0] == 0.0 and r[2] == 0.0
    np.testing.assert_allclose(r[[1, 3]], [0.1, 0.02], atol=1e-9)
    # best case for the last point is the trade-off where both front points score the same, 0.6
    assert 0.15 < r[4] < 0.2


def test_regret_in_three_dimensions_uses_both_cost_axes() -> None:
    front = np.array([[0.9, 1.0, 1.0], [0.6, 0.0, 0.0]])
    cheap_slow = np.array([[0.9, 1.0, 0.0]])  # as accurate as the best, free: dominates it
    grid = np.stack(np.meshgrid(LAMBDAS[:, 0], LAMBDAS[:, 0], indexing="ij"), axis=-1).reshape(-1, 2)
    assert regret(cheap_slow, front, grid)[0] == 0.0
    assert regret(np.array([[0.5, 1.0, 1.0]]), front, grid)[0] == pytest.approx(0.4)


@pytest.fixture(scope="module")
def profiled(imported_settings, tmp_path_factory):
    from flowfront.compile.jobs import profile_job

    settings = private_settings(imported_settings, tmp_path_factory.mktemp("near-front"))
    profile_job(settings, "model-route", max_queries=1500, seed=0, progress=False)
    return settings


def _models(frontier) -> list[str]:
    return [c.config["nodes"]["answer"]["model"] for c in frontier.candidates]


def test_near_front_widens_the_model_route_frontier_by_regret(profiled) -> None:
    from flowfront.compile.jobs import compile_job

    _, pareto = compile_job(profiled, "model-route", near_front=0.0, out_name="pareto")
    _, wide = compile_job(profiled, "model-route", near_front=0.3, out_name="wide")
    _, capped = compile_job(profiled, "model-route", near_front=0.3, max_candidates=3, out_name="capped")
    assert len(pareto.candidates) == 2 and "near-front" not in pareto.method
    assert set(_models(pareto)) < set(_models(capped)) < set(_models(wide))
    assert len(capped.candidates) == 3 and len(set(_models(wide))) == len(wide.candidates) <= 9
    assert wide.filters["near_front"] == 0.3 and wide.method.endswith(
        f"near-front({len(wide.candidates) - 2})"
    )
    # the capped frontier adds the model that loses least against the front
    front = np.array([[c.estimates.accuracy, c.estimates.latency_parallel_s] for c in pareto.candidates])
    lo, span = front[:, 1].min(), np.ptp(front[:, 1])
    points = np.array(
        [[c.estimates.accuracy, (c.estimates.latency_parallel_s - lo) / span] for c in wide.candidates]
    )
    r = dict(zip(_models(wide), regret(points, (front - [0, lo]) / [1, span], LAMBDAS), strict=True))
    added = (set(_models(capped)) - set(_models(pareto))).pop()
    assert r[added] == min(r[m] for m in set(r) - set(_models(pareto))) and 0 < r[added] <= 0.3
    lat = [c.estimates.latency_sequential_s for c in wide.candidates]
    assert lat == sorted(lat)  # one order for every frontier: by latency


def test_near_front_arguments_out_of_range(profiled) -> None:
    from flowfront.compile.jobs import compile_job

    with pytest.raises(CompileError, match="near_front=-0.1"):
        compile_job(profiled, "model-route", near_front=-0.1)
    with pytest.raises(CompileError, match="max_candidates=0"):
        compile_job(profiled, "model-route", max_candidates=0)
