"""Auth before parsing, a quiet /readyz for strangers, strict types, JSON errors by line and column,
settings errors naming the variable, and Retry-After from the breaker's remaining open time."""

from __future__ import annotations

import pytest

from tests.helpers import workflow_models
from tests.service.support import make_client

KEY = "svc-key-" + "0123456789"
RUN = "/v1/workflows/qa-cascade/run"


@pytest.fixture(scope="module")
def keyed(trained, workflows_dir):
    with make_client(trained, workflows_dir, API_KEYS=KEY) as c:
        yield c


def test_unauthenticated_requests_learn_nothing_about_the_body(keyed) -> None:
    r = keyed.post(
        RUN, content=b'{"query": 5, "preference": {"speed": 1}}', headers={"content-type": "application/json"}
    )
    assert r.status_code == 401 and "field" not in r.json()["error"] and "preference" not in r.text
    assert (
        keyed.post(RUN, json={"query": "x"}, headers={"Authorization": "Bearer wrong-key-000"}).status_code
        == 401
    )


def test_readyz_without_a_key_says_only_ready(keyed) -> None:
    bare = keyed.get("/readyz").json()
    assert bare == {"status": "ready"}
    full = keyed.get("/readyz", headers={"Authorization": f"Bearer {KEY}"}).json()
    assert {"generation", "workflows", "breakers"} <= set(full)


@pytest.mark.parametrize(("body", "field"), [
    ({"query": "q", "preference": {"lambda": True}}, "preference.lambda"),
    ({"query": "q", "preference": {"lambda": "0.3"}}, "preference.lambda"),
])
def test_types_are_strict(client, body, field) -> None:
    r = client.post(RUN, json=body)
    assert r.status_code == 422 and r.json()["error"]["field"] == field, r.text


def test_stream_takes_a_boolean_only(client) -> None:
    r = client.post("/v1/chat/completions", json={"model": "qa-cascade", "stream": "yes",
                                                  "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 422 and r.json()["error"]["field"] == "stream"


def test_malformed_json_names_line_and_column(client) -> None:
    r = client.post(RUN, content=b'{\n  "query": "q",\n  "preference": {lambda: 1}\n}',
                    headers={"content-type": "application/json"})
    error = r.json()["error"]
    assert r.status_code == 422 and error["field"] == "body"
    assert "line 3, column 18" in error["message"], error["message"]


def test_a_short_api_key_names_its_variable(trained, monkeypatch) -> None:
    from flowfront.errors import SpecError
    from flowfront.service.app import service_settings

    monkeypatch.setenv("FLOWFRONT_API_KEYS", "short")
    with pytest.raises(SpecError, match="FLOWFRONT_API_KEYS: every API key must have at least 8 characters"):
        service_settings(trained)


def test_retry_after_follows_the_breaker(trained, workflows_dir, test_queries) -> None:
    models = ",".join(workflow_models("qa-cascade", "answer"))
    with make_client(
        trained,
        workflows_dir,
        FAULT_FAIL_MODELS=models,
        BREAKER_FAILURES="1",
        BREAKER_RESET_S="40",
        MAX_FALLBACKS="10",
    ) as c:
        for q in test_queries[:3]:  # open every breaker
            c.post(RUN, json={"query": q, "strategy": "static"})
        r = c.post(RUN, json={"query": test_queries[4], "strategy": "static"})
        assert r.status_code == 503, r.text
        assert 30 <= int(r.headers["retry-after"]) <= 40


@pytest.mark.parametrize(("extra", "field"), [
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]}, "tools"),
    ({"tool_choice": "auto"}, "tool_choice"),
    ({"response_format": {"type": "json_object"}}, "response_format"),
    ({"functions": [{"name": "f"}]}, "functions"),
])
def test_fields_a_workflow_cannot_honour_are_refused_not_ignored(client, test_queries, extra, field) -> None:
    r = client.post("/v1/chat/completions", json={"model": "qa-cascade", **extra,
                                                  "messages": [{"role": "user", "content": test_queries[0]}]})
    assert r.status_code == 422 and r.json()["error"]["field"] == field, r.text
    plain = client.post(
        "/v1/chat/completions",
        json={
            "model": "qa-cascade",
            "response_format": {"type": "text"},
            "messages": [{"role": "user", "content": test_queries[0]}],
        },
    )
    assert plain.status_code == 200


def test_metrics_count_tokens_and_cost_per_model(client, test_queries) -> None:
    assert client.post(RUN, json={"query": test_queries[4]}).status_code == 200
    text = client.get("/metrics").text
    tokens = [line for line in text.splitlines() if line.startswith("flowfront_tokens_total{")]
    cost = [line for line in text.splitlines() if line.startswith("flowfront_cost_usd_total{")]
    assert any('kind="prompt"' in line and float(line.rsplit(" ", 1)[1]) > 0 for line in tokens)
    assert any('kind="completion"' in line for line in tokens) and cost


def test_a_failing_backend_check_is_503_with_the_reason_not_500(trained, workflows_dir) -> None:
    """A live backend whose server is gone: /readyz names it (it used to answer 500)."""
    from tests.helpers import free_port

    nowhere = f"http://127.0.0.1:{free_port()}/v1"
    with make_client(trained, workflows_dir, BACKEND="litellm", API_BASE=nowhere) as c:
        r = c.get("/readyz")
    assert r.status_code == 503, r.text
    error = r.json()["error"]
    assert (
        "nothing usable answers at" in error["message"]
        and nowhere in error["message"]
        and error["ready"] is False
    )
