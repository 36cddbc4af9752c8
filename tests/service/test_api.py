"""The HTTP API in process: endpoints, routing decisions, and every kind of bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pytest

from flowfront.router.select import Preference, select
from tests.service.support import BENCH, copy_workdir, expected_candidate, make_client

RUN = f"/v1/workflows/{BENCH}/run"


def test_lists_workflows_and_the_frontier(client) -> None:
    listed = {w["name"]: w for w in client.get("/v1/workflows").json()}
    assert listed[BENCH]["strategies"] == ["router", "static"] and listed[BENCH]["status"] == "ready"
    assert (
        listed["code-budget"]["strategies"] == [] and "flowfront compile" in listed["code-budget"]["status"]
    )
    front = client.get(f"/v1/workflows/{BENCH}/frontier").json()
    assert front["router"] is True and len(front["candidates"]) >= 3
    lat = [c["latency_s"] for c in front["candidates"]]
    assert all(c["latency_s"] == c[f"latency_{front['execution']}_s"] for c in front["candidates"])
    assert min(lat) < max(lat)
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready" and ready["workflows"][BENCH] == "ready"


def test_run_routes_each_query_as_the_router_predicts(client, router, test_queries) -> None:
    for query in test_queries[:4]:
        for lam in (0.0, 5.0):
            r = client.post(RUN, json={"query": query, "preference": {"lambda": lam}})
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["strategy"] == "router" and not body["fell_back"]
            assert body["candidate"]["id"] == expected_candidate(router, query, Preference(lambda_=lam))
            assert r.headers["x-flowfront-candidate"] == body["candidate"]["id"]
            assert body["calls"] and body["measured"]["cost_usd"] == pytest.approx(
                sum(c["cost_usd"] for c in body["calls"])
            )
            assert body["answer"] is not None and len(body["trace_id"]) == 32


def test_a_task_hint_is_used_when_the_router_knows_the_task_and_said_otherwise(
    client, router, test_queries
) -> None:
    model = router[0]
    known = model.hint_groups
    assert len(known) >= 2  # qa-cascade's router learned its groups from the task labels
    query, pref = test_queries[5], {"lambda": 0.0}
    seen = set()
    for task in known:
        body = client.post(RUN, json={"query": query, "preference": pref, "task": task}).json()
        assert body["hint"] == {"task": task, "used": True, "reason": None}
        assert body["candidate"]["id"] == expected_candidate(router, query, Preference(lambda_=0.0), task)
        seen.add(body["predicted"]["accuracy"])
    assert len(seen) > 1  # the hint moved the estimate
    plain = client.post(RUN, json={"query": query, "preference": pref}).json()
    assert plain["hint"] is None
    unknown = client.post(RUN, json={"query": query, "preference": pref, "task": "astrology"}).json()
    assert unknown["hint"]["used"] is False and all(t in unknown["hint"]["reason"] for t in known)
    assert unknown["candidate"] == plain["candidate"] and unknown["predicted"] == plain["predicted"]
    static = client.post(RUN, json={"query": query, "strategy": "static", "task": known[0]}).json()
    assert static["hint"] == {"task": known[0], "used": False, "reason": "static selection takes no hints"}
    chat = client.post("/v1/chat/completions", json={"model": BENCH, "task": known[0],
                                                     "messages": [{"role": "user", "content": query}]}).json()
    assert chat["flowfront"]["hint"]["used"] is True and "task" not in chat["flowfront"]["ignored"]
    r = client.post(RUN, json={"query": query, "task": ""})
    assert r.status_code == 422 and "task" in r.text


def test_static_strategy_matches_static_selection(client, router, test_queries) -> None:
    _, _, frontier = router
    est = [c.estimates for c in frontier.candidates]
    from flowfront.router.select import Scale

    acc = np.array([e.accuracy for e in est])
    lat = np.array([e.latency(frontier.execution) for e in est])
    cost = np.array([e.cost_usd for e in est])
    pref = Preference(max_latency_s=float(np.median(lat)))
    want = frontier.candidates[int(select(acc, lat, cost, pref, Scale.from_estimates(lat, cost)).index)].id
    body = client.post(RUN, json={"query": test_queries[0], "strategy": "static",
                                  "preference": {"max_latency_s": float(np.median(lat))}}).json()
    assert body["strategy"] == "static" and body["candidate"]["id"] == want
    assert body["predicted"]["latency_s"] <= float(np.median(lat))


def test_chat_completions_shape(client, test_queries) -> None:
    body = {
        "model": BENCH,
        "messages": [{"role": "system", "content": "ignored"}, {"role": "user", "content": test_queries[1]}],
        "preference": {"lambda": 1.0},
    }
    r = client.post("/v1/chat/completions", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["object"] == "chat.completion" and out["model"] == BENCH
    assert out["choices"][0]["message"]["content"] and out["usage"]["total_tokens"] > 0
    assert r.headers["x-flowfront-candidate"] == out["flowfront"]["candidate"]["id"]
    stream = client.post("/v1/chat/completions", json={**body, "stream": True})
    assert stream.status_code == 200 and stream.headers["content-type"].startswith("text/event-stream")
    events = [line.removeprefix("data: ") for line in stream.text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    first = orjson.loads(events[0])
    assert first["choices"][0]["delta"]["content"] == out["choices"][0]["message"]["content"]


@pytest.mark.parametrize(("extra", "field", "words"), [
    ({"n": 2}, "n", "one answer per request"),
    ({"max_tokens": 64}, "max_tokens", "sets each node's budget"),
    ({"max_completion_tokens": 64}, "max_completion_tokens", "sets each node's budget"),
    ({"messages": [{"role": "user", "content": "earlier"}, {"role": "assistant", "content": "reply"},
                   {"role": "user", "content": "now"}]}, "messages", "3 conversation turns"),
])
def test_chat_fields_that_cannot_apply_are_refused_not_dropped(
    client, test_queries, extra, field, words
) -> None:
    body = {"model": BENCH, "messages": [{"role": "user", "content": test_queries[1]}], **extra}
    r = client.post("/v1/chat/completions", json=body)
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["field"] == field and words in err["message"]


def test_chat_sampling_fields_are_accepted_and_named_as_ignored(client, test_queries) -> None:
    body = {
        "model": BENCH,
        "n": 1,
        "temperature": 0.7,
        "top_p": 0.9,
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": test_queries[1]}],
    }
    r = client.post("/v1/chat/completions", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["flowfront"]["ignored"] == ["temperature", "top_p", "messages[0] (system)"]


@pytest.mark.parametrize(("body", "status", "field"), [
    ({"query": ""}, 422, "query"),
    ({"query": "   \n"}, 422, "query"),
    ({"query": "x" * 40_000}, 422, "query"),  # over FLOWFRONT_MAX_QUERY_CHARS, under the body limit
    ({"query": "q", "preference": {"lambda": -1}}, 422, "preference.lambda"),
    ({"query": "q", "preference": {"min_accuracy": 1.5}}, 422, "preference.min_accuracy"),
    ({"query": "q", "preference": {"max_latency_s": 0}}, 422, "preference.max_latency_s"),
    ({"query": "q", "preference": {"speed": "fast"}}, 422, "preference.speed"),
    ({"query": "q", "strategy": "psychic"}, 422, "strategy"),
    ({"query": "What is the capital of a place nobody recorded?"}, 422, "query"),  # not in the replay data
    ({}, 422, "query"),
])
def test_bad_input_names_the_field(client, body, status, field) -> None:
    r = client.post(RUN, json=body)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["field"] == field and err["message"] and err["hint"]


def test_body_size_unknown_workflow_and_infeasible(client, test_queries) -> None:
    big = client.post(
        RUN, content=orjson.dumps({"query": "x" * 300_000}), headers={"content-type": "application/json"}
    )
    assert big.status_code == 413 and "FLOWFRONT_MAX_BODY_BYTES" in big.json()["error"]["hint"]
    missing = client.post("/v1/workflows/nope/run", json={"query": "q"})
    assert missing.status_code == 404 and BENCH in missing.json()["error"]["hint"]
    chat_missing = client.post(
        "/v1/chat/completions", json={"model": "nope", "messages": [{"role": "user", "content": "q"}]}
    )
    assert chat_missing.status_code == 404
    not_compiled = client.post("/v1/workflows/code-budget/run", json={"query": "q"})
    assert not_compiled.status_code == 409 and "compile" in not_compiled.json()["error"]["message"]
    r = client.post(RUN, json={"query": test_queries[0], "preference": {"max_latency_s": 1e-4}})
    assert r.status_code == 409
    nearest = r.json()["error"]["nearest"]
    assert nearest["candidate"].startswith("c") and nearest["latency_s"] > 1e-4
    relaxed = client.post(
        RUN,
        json={"query": test_queries[0], "preference": {"max_latency_s": 1e-4, "on_infeasible": "nearest"}},
    )
    assert relaxed.status_code == 200 and relaxed.json()["feasible"] is False
    assert relaxed.json()["candidate"]["id"] == nearest["candidate"]
    no_user = client.post(
        "/v1/chat/completions", json={"model": BENCH, "messages": [{"role": "system", "content": "q"}]}
    )
    assert no_user.status_code == 422 and no_user.json()["error"]["field"] == "messages"


def test_api_keys(trained, workflows_dir, test_queries) -> None:
    key = "k-test-0123456789"
    with make_client(trained, workflows_dir, API_KEYS=f"other-key-xyz,{key}") as c:
        assert c.post(RUN, json={"query": test_queries[0]}).status_code == 401
        wrong = c.post(
            RUN, json={"query": test_queries[0]}, headers={"Authorization": "Bearer wrong-key-123"}
        )
        assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
        assert c.get("/metrics").status_code == 401
        assert c.get("/healthz").status_code == 200  # probes stay open
        ok = c.post(RUN, json={"query": test_queries[0]}, headers={"Authorization": f"Bearer {key}"})
        assert ok.status_code == 200
        assert key not in ok.text and "other-key-xyz" not in c.get("/readyz").text


def test_public_bind_needs_keys(trained) -> None:
    from flowfront.errors import SpecError
    from flowfront.service.app import service_settings
    from flowfront.service.config import ServiceSettings, check_bind

    open_settings = service_settings(trained)
    for host in ("127.0.0.1", "::1", "localhost"):
        check_bind(open_settings, host)
    for host in ("0.0.0.0", "192.168.1.5", "example.com"):
        with pytest.raises(SpecError, match="FLOWFRONT_API_KEYS"):
            check_bind(open_settings, host)
    keyed = ServiceSettings(**trained.model_dump(), api_keys="abcdefgh12, second-key-99")
    assert [k.get_secret_value() for k in keyed.api_keys] == ["abcdefgh12", "second-key-99"]
    assert "abcdefgh12" not in repr(keyed)
    check_bind(keyed, "0.0.0.0")


def test_router_requests_without_a_router_get_409(
    trained, workflows_dir, tmp_path: Path, test_queries
) -> None:
    static_only = copy_workdir(trained, tmp_path, router=False)
    with make_client(static_only, workflows_dir) as c:
        assert {w["name"]: w["strategies"] for w in c.get("/v1/workflows").json()}[BENCH] == ["static"]
        r = c.post(RUN, json={"query": test_queries[0], "strategy": "router"})
        assert r.status_code == 409 and "flowfront train" in r.json()["error"]["message"]
        default = c.post(RUN, json={"query": test_queries[0]})
        assert default.status_code == 200 and default.json()["strategy"] == "static"


def test_metrics_count_requests_and_decisions(client, test_queries) -> None:
    client.post(RUN, json={"query": test_queries[2], "preference": {"lambda": 0.3}})
    text = client.get("/metrics").text
    assert (
        'flowfront_requests_total{endpoint="/v1/workflows/{name}/run",status="200",workflow="qa-cascade"}'
        in text
    )
    assert "flowfront_decision_seconds_count" in text and "flowfront_execution_seconds_count" in text
    assert 'flowfront_chosen_candidates_total{candidate="' in text
    assert 'flowfront_router_lookups_total{result="memo"}' in text


@pytest.mark.slow  # starts a subprocess or a server
def test_replay_serving_never_imports_litellm_or_torch(trained, workflows_dir, test_queries) -> None:
    """Start-up and a routed request on replay stay off litellm (~4 s import) and torch."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from fastapi.testclient import TestClient\n"
        "from service.app import create_app\n"
        "from service.config import ServiceSettings\n"
        f"config = ServiceSettings(workdir=Path({str(trained.workdir)!r}), "
        f"data_dir=Path({str(trained.data_dir)!r}))\n"
        f"with TestClient(create_app(config, Path({str(workflows_dir)!r}))) as c:\n"
        f"    r = c.post('/v1/workflows/{BENCH}/run', json={{'query': {test_queries[0]!r}}})\n"
        "    assert r.status_code == 200, r.text\n"
        "print(sorted(m for m in ('litellm', 'torch', 'transformers') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"
