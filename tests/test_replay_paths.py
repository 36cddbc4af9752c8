"""Replay answered three ways — in process, through litellm's custom provider, and over HTTP
through litellm's OpenAI provider — gives the same answers."""

from __future__ import annotations

import asyncio

import pytest

from flowfront.backends.litellm_client import LiteLLMBackend
from flowfront.benchmarks import load_benchmark
from flowfront.executor import Executor
from flowfront.runtime import benchmark_queries, execute, load_cards, make_backend, open_store, prepare_data
from flowfront.space import Configuration, resolve
from tests.helpers import replay_server

BUDGETED = Configuration.parse({"nodes": {"solve": {"model": "gpt-3.5-turbo-1106", "budget": 128}}})


@pytest.fixture(scope="module")
def imported(imported_settings):
    """The shared store with RouterBench imported, and qa-cascade / code-budget test queries."""
    shared_settings = imported_settings
    with open_store(shared_settings) as store:
        out = {}
        for name in ("qa-cascade", "code-budget"):
            bench = load_benchmark(name, shared_settings.configs_dir)
            data = prepare_data(bench, store, shared_settings)
            out[name] = (bench, benchmark_queries(bench, store, data, "test")[:40])
    return out


def fingerprint(out) -> list[tuple]:
    return [
        (
            r.answer,
            s,
            r.latency_sequential_s,
            r.latency_parallel_s,
            r.cost_usd,
            [c.completion_tokens for c in r.calls],
        )
        for r, s in zip(out.results, out.scores, strict=True)
    ]


@pytest.mark.parametrize("name", ["qa-cascade", "code-budget"])
def test_litellm_custom_provider_path_is_identical(imported, shared_settings, name) -> None:
    bench, queries = imported[name]
    config = BUDGETED if name == "code-budget" else bench.default_config
    cards = load_cards(shared_settings)
    with open_store(shared_settings) as store:
        models = bench.workflow.all_models()
        direct, via = (
            execute(bench, config, queries, make_backend(kind, store, cards, shared_settings, models=models),
                    shared_settings)
            for kind in ("replay", "replay-litellm")
        )
    assert fingerprint(direct) == fingerprint(via)
    if name == "code-budget":
        assert any(c.truncated for r in direct.results for c in r.calls)


@pytest.mark.slow  # starts a subprocess or a server
def test_replay_serve_over_http_matches_in_process(imported, shared_settings) -> None:
    bench, queries = imported["code-budget"]
    cards = load_cards(shared_settings)
    wf = bench.workflow
    with open_store(shared_settings) as store:
        direct = execute(
            bench,
            BUDGETED,
            queries,
            make_backend("replay", store, cards, shared_settings, models=wf.all_models()),
            shared_settings,
        )
    with replay_server(shared_settings.workdir) as url:
        backend = LiteLLMBackend(cards, shared_settings, api_base=f"{url}/v1")
        executor = Executor(wf, backend, concurrency=8)
        results = asyncio.run(executor.run_batch(resolve(wf, BUDGETED), queries))
    assert [r.error for r in results] == [None] * len(queries)
    assert [r.answer for r in results] == [r.answer for r in direct.results]
    over_http = [(c.prompt_tokens, c.completion_tokens, c.truncated) for r in results for c in r.calls]
    in_process = [
        (c.prompt_tokens, c.completion_tokens, c.truncated) for r in direct.results for c in r.calls
    ]
    assert over_http == in_process
    assert all(c.latency_source == "measured" for r in results for c in r.calls)
