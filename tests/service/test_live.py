"""A live ``flowfront serve`` on loopback: the official OpenAI client, and schemathesis over its schema."""

from __future__ import annotations

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from flowfront.router.select import Preference
from tests.service.support import BENCH, expected_candidate, live_server

# the slow tier: it starts subprocesses or servers (make test-fast leaves it out)
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(trained, workflows_dir, tmp_path_factory):
    with live_server(trained, workflows_dir, tmp_path_factory.mktemp("live-logs")) as srv:
        yield srv


def test_openai_client_gets_answers_routed_as_the_router_predicts(server, router, test_queries) -> None:
    from openai import OpenAI

    client = OpenAI(base_url=f"{server.base}/v1", api_key="unused", max_retries=0)  # loopback needs no key
    low, high = Preference(lambda_=0.0), Preference(lambda_=5.0)
    differing = 0
    for query in test_queries[:6]:
        chosen = {}
        for name, pref in (("low", low), ("high", high)):
            raw = client.chat.completions.with_raw_response.create(
                model=BENCH, messages=[{"role": "user", "content": query}],
                extra_body={"preference": {"lambda": pref.lambda_}, "strategy": "router"})
            completion = raw.parse()
            assert completion.choices[0].message.content, "the workflow produced no answer"
            assert completion.usage.total_tokens > 0
            chosen[name] = raw.headers["x-flowfront-candidate"]
            assert chosen[name] == expected_candidate(router, query, pref)
        differing += chosen["low"] != chosen["high"]
    assert differing >= 1, "lambda 0 and lambda 5 chose the same candidate for every query"
    stream = client.chat.completions.create(
        model=BENCH,
        messages=[{"role": "user", "content": test_queries[0]}],
        stream=True,
        extra_body={"preference": {"lambda": 1.0}},
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text


def test_openai_client_sees_errors_as_api_errors(server) -> None:
    from openai import NotFoundError, OpenAI, UnprocessableEntityError

    client = OpenAI(base_url=f"{server.base}/v1", api_key="x", max_retries=0)
    with pytest.raises(NotFoundError, match="unknown workflow"):
        client.chat.completions.create(model="no-such-workflow", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(UnprocessableEntityError, match="preference.lambda"):
        client.chat.completions.create(model=BENCH, messages=[{"role": "user", "content": "hi"}],
                                       extra_body={"preference": {"lambda": -2}})


def test_no_server_errors_for_any_schema_input(server) -> None:
    """Every operation of the app's own OpenAPI schema, 25 deterministic examples each: never a 5xx.

    The schema is loaded from the live server, so this runs the code users hit. (schemathesis'
    ``from_fixture`` + ``parametrize`` does not run under this pytest, hence one test looping over
    the operations with hypothesis directly.)
    """
    schema = schemathesis.openapi.from_url(f"{server.base}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {
        "/v1/workflows/{name}/run",
        "/v1/chat/completions",
        "/admin/reload",
    }
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=25, derandomize=True, database=None, deadline=None,
                  suppress_health_check=list(HealthCheck))
        def no_5xx(case) -> None:
            case.call_and_validate(checks=[not_a_server_error], timeout=60)

        no_5xx()


def test_server_still_serves_after_fuzzing(server, test_queries) -> None:
    r = httpx.post(f"{server.base}/v1/workflows/{BENCH}/run", json={"query": test_queries[3]}, timeout=60)
    assert r.status_code == 200 and r.json()["answer"] is not None
