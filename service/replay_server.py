"""``flowfront replay-serve``: replay answers over an OpenAI-compatible HTTP endpoint.

Any OpenAI client (or litellm's ``openai/`` provider with ``api_base``) can be pointed at it. The
answers are exactly the in-process replay backend's: same lookup, same budget cut (``max_tokens``),
same missing-record error. Errors go through the service's one mapping (``service.errors``, as a
provider): the same body shape and hints as the service, a miss 404 naming the model and the
prompt key (what a provider answers; the service says 422), a malformed body 422 with the field,
an injected or backend failure 503/502 with ``retryable``.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from typing import Any

from fastapi import FastAPI, Request

from flowfront.backends.base import CallRequest
from flowfront.backends.replay import ReplayBackend
from flowfront.errors import BackendError
from flowfront.service.errors import InvalidRequest, install_handlers

SAMPLING_KEYS = ("temperature", "top_p", "seed")


def create_replay_app(replay: ReplayBackend, *, fail_models: frozenset[str] = frozenset()) -> Any:
    """Build the app. ``fail_models`` answer 503 (fault injection for tests and drills)."""
    app = FastAPI(title="flowfront replay", version="1")
    install_handlers(app, provider=True)
    served: Counter[str] = Counter()
    refused: Counter[str] = Counter()

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok"}

    @app.get("/v1/stats")
    async def stats() -> dict[str, Any]:
        """How many times each call key was answered (lets tests prove nothing was repeated)."""
        return {"requests": sum(served.values()), "by_key": dict(served), "refused_by_model": dict(refused)}

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        try:
            body = await request.json()
        except ValueError:
            raise InvalidRequest("the body is not JSON", field="body",
                                 hint="send a JSON chat completion request") from None
        _check_body(body)
        model = body["model"]
        if model in fail_models:
            refused[model] += 1
            raise BackendError(f"model {model!r} is unavailable (injected)", model=model, retryable=True,
                               hint="a fault drill: restart replay-serve without --fail-model")
        call = CallRequest(
            model=model,
            messages=tuple({"role": m["role"], "content": m["content"]} for m in body["messages"]),
            budget=body.get("max_tokens") or body.get("max_completion_tokens"),
            sampling={k: body[k] for k in SAMPLING_KEYS if k in body},
        )
        done = replay.answer(call)  # a miss or a backend failure is answered by service.errors
        served[call.key] += 1
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": done.text or ""},
                "finish_reason": "length" if done.truncated else "stop",
            }],
            "usage": {
                "prompt_tokens": done.prompt_tokens,
                "completion_tokens": done.completion_tokens,
                "total_tokens": done.prompt_tokens + done.completion_tokens,
            },
            "flowfront": {"latency_s": done.latency_s, "latency_source": done.latency_source,
                          "cost_usd": done.cost_usd},
        }

    return app


def _check_body(body: Any) -> None:
    """Refuse what the replay lookup cannot use; the error names the field to fix."""
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object", field="body")
    if not isinstance(body.get("model"), str):
        raise InvalidRequest("`model` is required and must be a string", field="model")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("`messages` must be a non-empty list", field="messages")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("content"), str) or "role" not in m:
            raise InvalidRequest(
                f"`messages[{i}]` needs a `role` and a string `content`", field=f"messages[{i}]"
            )
    budget = body.get("max_tokens")
    if budget is not None and (not isinstance(budget, int) or isinstance(budget, bool) or budget <= 0):
        raise InvalidRequest("`max_tokens` must be a positive integer", field="max_tokens")
