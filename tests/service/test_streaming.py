"""`stream: true` streams the answer's call where the workflow allows it, on the replay backend.

A one-node workflow answering with its text (parser raw) over recorded RouterBench models: its one
call is final when it starts, so its text streams; every chunk names the candidate and model; the
streamed text equals the non-streamed answer; a model failing before its first token falls back.
(Token-by-token timing and a failure after tokens were sent need a live model: tests/live.)
"""

from __future__ import annotations

import shutil

import orjson
import pytest

from flowfront.executor import streamed_call
from flowfront.spec import load_workflow
from tests.helpers import PROJECT_ROOT, hand_frontier
from tests.service.support import copy_artifacts, copy_store, make_client

MODELS = ("gpt-3.5-turbo-1106", "mistralai/mixtral-8x7b-chat")
WORKFLOW = f"""
name: qa-raw
description: One model answers in its own words.
nodes:
  answer:
    kind: llm
    messages: [{{role: user, content: "{{query}}"}}]
    parser: raw
    models: {list(MODELS)}
flow: [answer]
output: answer
"""


@pytest.fixture(scope="module")
def served(trained, tmp_path_factory):
    folder = tmp_path_factory.mktemp("streaming")
    workflows = folder / "workflows"
    workflows.mkdir()
    (workflows / "qa-raw.yaml").write_text(WORKFLOW)
    shutil.copy(PROJECT_ROOT / "configs" / "workflows" / "qa-cascade.yaml", workflows)
    work = folder / "work"
    copy_store(trained, work)
    copy_artifacts(trained, work)
    hand_frontier(workflows / "qa-raw.yaml", [{"knobs": {}, "nodes": {"answer": {"model": m, "budget": None}}}
                                              for m in MODELS], work)
    return trained.model_copy(update={"workdir": work}), workflows


@pytest.fixture(scope="module")
def code_queries(trained) -> list[str]:
    """MBPP prompts: the recorded answers are code of many words (ARC and Winogrande answers are a letter)."""
    from flowfront.benchmarks import load_benchmark
    from flowfront.runtime import benchmark_queries, open_store, prepare_data

    bench = load_benchmark("code-budget", trained.configs_dir)
    with open_store(trained) as store:
        return [
            q.text for q in benchmark_queries(bench, store, prepare_data(bench, store, trained), "test")[:20]
        ]


def _events(text: str) -> list[dict]:
    lines = [line.removeprefix("data: ") for line in text.splitlines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    return [orjson.loads(line) for line in lines[:-1]]


def _chat(client, query: str, **extra):
    return client.post(
        "/v1/chat/completions",
        json={
            "model": "qa-raw",
            "messages": [{"role": "user", "content": query}],
            "preference": {"lambda": 0.0},
            **extra,
        },
    )


def test_which_call_streams_follows_the_workflow() -> None:
    configs = PROJECT_ROOT / "configs" / "workflows"
    assert streamed_call(load_workflow(configs / "model-route.yaml"), {}) == ("answer", 0)  # one raw node
    assert (
        streamed_call(load_workflow(configs / "qa-cascade.yaml"), {"checker": "on"}) is None
    )  # a parsed choice
    raw_cascade = load_workflow(configs / "qa-cascade.yaml").model_copy(deep=True)
    for node in ("answer", "check", "escalate"):
        raw_cascade.nodes[node] = raw_cascade.nodes[node].model_copy(update={"parser": "raw"})
    assert streamed_call(raw_cascade, {"checker": "on"}) == (
        "escalate",
        0,
    )  # the escalation is final when it runs
    assert streamed_call(raw_cascade, {"checker": "off"}) == ("answer", 0)  # no escalation: the answer is
    assert (
        streamed_call(load_workflow(configs / "qa-vote.yaml"), {"k": 3}) is None
    )  # a vote decides afterwards


def _wordy(client, queries: list[str]) -> tuple[str, dict]:
    """A recorded query whose answer has several words (a one-word answer is held back whole)."""
    for query in queries:
        plain = client.post("/v1/chat/completions", json={"model": "qa-raw", "preference": {"lambda": 0.0},
                                                           "messages": [{"role": "user", "content": query}]})
        assert plain.status_code == 200, plain.text
        if len((plain.json()["choices"][0]["message"]["content"] or "").split()) > 5:
            return query, plain.json()
    raise AssertionError("no recorded answer of several words")


@pytest.mark.slow  # a 10 s end-to-end stream: the edit loop leaves it to make test
def test_the_answer_streams_and_equals_the_unstreamed_one(served, code_queries) -> None:
    settings, workflows = served
    with make_client(settings, workflows) as c:
        query, plain = _wordy(c, code_queries)
        streamed = _chat(c, query, stream=True)
    assert streamed.status_code == 200 and streamed.headers.get("x-flowfront-streamed") == "true", (
        streamed.text[:800]
    )
    events = _events(streamed.text)
    pieces = [e for e in events if e["choices"][0]["delta"].get("content")]
    assert pieces and all(e["flowfront"] == {"candidate": "c0", "model": MODELS[0]} for e in pieces)
    assert (
        "".join(e["choices"][0]["delta"]["content"] for e in pieces)
        == plain["choices"][0]["message"]["content"]
    )
    assert (
        events[-1]["choices"][0]["finish_reason"] in ("stop", "length")
        and events[-1]["usage"]["total_tokens"] > 0
    )
    assert events[-1]["flowfront"]["candidate"]["id"] == "c0"


def test_a_model_failing_before_its_first_token_falls_back(served, code_queries) -> None:
    settings, workflows = served
    with make_client(settings, workflows) as c:
        query, _ = _wordy(c, code_queries)
    with make_client(settings, workflows, FAULT_FAIL_MODELS=MODELS[0]) as c:
        streamed = _chat(c, query, stream=True)
    assert streamed.status_code == 200 and streamed.headers["x-flowfront-candidate"] == "c1"
    pieces = [e for e in _events(streamed.text) if e["choices"][0]["delta"].get("content")]
    assert pieces and {e["flowfront"]["model"] for e in pieces} == {MODELS[1]}
    assert _events(streamed.text)[-1]["flowfront"]["fell_back"] is True


def test_every_model_failing_before_a_token_is_an_ordinary_error(served, test_queries) -> None:
    settings, workflows = served
    with make_client(settings, workflows, FAULT_FAIL_MODELS=",".join(MODELS)) as c:
        streamed = _chat(c, test_queries[2], stream=True)
    assert streamed.status_code == 503 and streamed.json()["error"]["retryable"] is True


def test_a_workflow_that_cannot_stream_answers_in_one_chunk(served, test_queries) -> None:
    settings, workflows = served
    with make_client(settings, workflows) as c:
        streamed = c.post(
            "/v1/chat/completions",
            json={
                "model": "qa-cascade",
                "stream": True,
                "messages": [{"role": "user", "content": test_queries[2]}],
            },
        )
    assert streamed.status_code == 200 and "x-flowfront-streamed" not in streamed.headers
    pieces = [e for e in _events(streamed.text) if e["choices"][0]["delta"].get("content")]
    assert len(pieces) == 1
