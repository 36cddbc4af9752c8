"""`flowfront select` prints the choice the service makes for the same preference (static selection),
and `/v1/models` lists the served workflows for OpenAI clients."""

from __future__ import annotations

import orjson
import pytest

from tests.helpers import flowfront


@pytest.mark.parametrize("pref", [{"max_latency_s": 0.5, "on_infeasible": "nearest"}, {"lambda": 0.3},
                                  {"lambda": 0.0}, {"lambda": 2.0, "objective": "cost"}])
@pytest.mark.slow  # starts a subprocess or a server
def test_select_cli_matches_the_service(trained, client, test_queries, pref) -> None:
    args = ["select", "qa-cascade", "--json", "--workdir", str(trained.workdir)]
    flags = {"max_latency_s": "--max-latency-s", "lambda": "--lambda", "objective": "--objective",
             "on_infeasible": "--on-infeasible"}
    for key, value in pref.items():
        args += [flags[key], str(value)]
    done = flowfront(*args)
    assert done.returncode == 0, done.stderr
    chosen = orjson.loads(done.stdout)["chosen"]["id"]
    reply = client.post("/v1/workflows/qa-cascade/run", json={"query": test_queries[0], "preference": pref,
                                                               "strategy": "static"})
    assert reply.status_code == 200, reply.text
    assert reply.json()["candidate"]["id"] == chosen


def test_models_lists_the_served_workflows(client) -> None:
    body = client.get("/v1/models").json()
    assert body["object"] == "list"
    assert {m["id"] for m in body["data"]} == {"qa-cascade", "code-budget"}


@pytest.mark.slow  # starts a subprocess or a server
def test_frontier_cli_prints_every_candidate(trained) -> None:
    done = flowfront("frontier", "qa-cascade", "--json", "--workdir", str(trained.workdir))
    assert done.returncode == 0, done.stderr
    out = orjson.loads(done.stdout)
    frontier = orjson.loads((trained.workdir / "qa-cascade" / "frontier.json").read_bytes())
    assert [c["id"] for c in out["candidates"]] == [c["id"] for c in frontier["candidates"]]


@pytest.mark.slow  # starts a subprocess or a server
def test_route_cli_shows_predictions_and_the_routers_pick(trained, router, test_queries) -> None:
    from flowfront.router.select import Preference
    from tests.service.support import expected_candidate

    done = flowfront(
        "route", "qa-cascade", test_queries[3], "--lambda", "0.2", "--json", "--workdir", str(trained.workdir)
    )
    assert done.returncode == 0, done.stderr
    out = orjson.loads(done.stdout)
    assert len(out["predictions"]) == len(router[2].candidates)
    assert out["pick"] == expected_candidate(
        router, test_queries[3], Preference(lambda_=0.2, on_infeasible="nearest")
    )


@pytest.mark.slow  # starts a subprocess or a server
def test_route_cli_takes_a_task_hint_and_says_when_it_cannot_use_it(trained, router, test_queries) -> None:
    from flowfront.router.select import Preference
    from tests.service.support import expected_candidate

    task = router[0].hint_groups[-1]
    args = ["route", "qa-cascade", test_queries[3], "--lambda", "0.0", "--workdir", str(trained.workdir)]
    done = flowfront(*args, "--task", task, "--json")
    assert done.returncode == 0, done.stderr
    out = orjson.loads(done.stdout)
    assert out["hint"] == {"task": task, "used": True, "known": list(router[0].hint_groups)}
    assert out["pick"] == expected_candidate(
        router, test_queries[3], Preference(lambda_=0.0, on_infeasible="nearest"), task
    )
    unknown = flowfront(*args, "--task", "astrology")
    assert unknown.returncode == 0, unknown.stderr
    assert "task 'astrology' is not one the router was trained on" in unknown.stdout
