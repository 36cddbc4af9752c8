"""The litellm backend retries retryable provider errors with backoff, then fails clearly."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from flowfront.backends.base import CallRequest
from flowfront.backends.litellm_client import LiteLLMBackend, budget_params
from flowfront.data import user_messages
from flowfront.errors import BackendError
from flowfront.runtime import load_cards
from tests.helpers import replay_server

# the slow tier: it starts subprocesses or servers (make test-fast leaves it out)
pytestmark = pytest.mark.slow


def test_retryable_errors_are_retried_then_reported(imported_settings) -> None:
    settings = imported_settings.model_copy(update={"max_retries": 2})
    with replay_server(settings.workdir, "--fail-model", "claude-v2") as url:
        backend = LiteLLMBackend(load_cards(settings), settings, api_base=f"{url}/v1")
        request = CallRequest("claude-v2", user_messages("anything"), budget=16)
        with pytest.raises(BackendError) as info:
            asyncio.run(backend.complete(request))
        refused = httpx.get(f"{url}/v1/stats").json()["refused_by_model"]["claude-v2"]
    assert info.value.retryable and info.value.model == "claude-v2"
    assert refused == 3  # the first attempt and two retries


def test_missing_record_is_not_retried(imported_settings) -> None:
    with replay_server(imported_settings.workdir) as url:
        backend = LiteLLMBackend(load_cards(imported_settings), imported_settings, api_base=f"{url}/v1")
        with pytest.raises(BackendError) as info:
            asyncio.run(backend.complete(CallRequest("claude-v2", user_messages("never recorded"))))
    assert not info.value.retryable and "no record" in str(info.value)


def test_budget_maps_onto_the_providers_knob(imported_settings) -> None:
    cards = load_cards(imported_settings)
    card = cards["gpt-4-1106-preview"]
    assert budget_params(card, 256) == {"max_tokens": 256}
    assert budget_params(card, None) == {}
    thinking = card.model_copy(update={"budget_style": "thinking"})
    assert budget_params(thinking, 2048) == {"thinking": {"type": "enabled", "budget_tokens": 2048}}
    effort = card.model_copy(update={"budget_style": "reasoning_effort"})
    assert budget_params(effort, 8192)["reasoning_effort"] == "high"


def test_replay_server_answers_errors_like_the_service(imported_settings) -> None:
    """One error mapping (as a provider): a miss is 404 with the service's body, a bad body names
    its field."""
    with replay_server(imported_settings.workdir, "--fail-model", "claude-v2") as url:
        miss = httpx.post(
            f"{url}/v1/chat/completions",
            json={"model": "claude-v1", "messages": [{"role": "user", "content": "never recorded"}]},
        )
        bad = httpx.post(f"{url}/v1/chat/completions", json={"model": "claude-v1", "messages": []})
        down = httpx.post(f"{url}/v1/chat/completions",
                          json={"model": "claude-v2", "messages": [{"role": "user", "content": "x"}]})
    assert miss.status_code == 404 and miss.json()["error"]["field"] == "query"
    assert "no record" in miss.json()["error"]["message"] and miss.json()["error"]["hint"]
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "messages"
    assert down.status_code == 503 and down.json()["error"]["retryable"] is True
    assert "Retry-After" in down.headers
