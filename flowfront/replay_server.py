"""``flowfront replay-serve``: replay answers over an OpenAI-compatible HTTP endpoint.

Any OpenAI client (or litellm's ``openai/`` provider with ``api_base``) can be pointed at it. The
answers are exactly the in-process replay backend's: same lookup, same budget cut (``max_tokens``),
same missing-record error (HTTP 404 naming the model and the prompt key).
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from flowfront.backends.base import CallRequest
from flowfront.backends.replay import ReplayBackend
from flowfront.errors import BackendError, ReplayMissError

SAMPLING_KEYS = ("temperature", "top_p", "seed")


def create_replay_app(replay: ReplayBackend, *, fail_models: frozenset[str] = frozenset()) -> Any:
    """Build the app. ``fail_models`` answer 503 (fault injection for tests and drills)."""
    app = FastAPI(title="flowfront replay", version="1")
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
        body = await request.json()
        problem = _check_body(body)
        if problem:
            return JSONResponse(status_code=400, content=_error(problem, "invalid_request_error"))
        model = body["model"]
        if model in fail_models:
            refused[model] += 1
            return JSONResponse(status_code=503, content=_error(f"model {model!r} is unavailable (injected)", "server_error"))
        call = CallRequest(
            model=model,
            messages=tuple({"role": m["role"], "content": m["content"]} for m in body["messages"]),
            budget=body.get("max_tokens") or body.get("max_completion_tokens"),
            sampling={k: body[k] for k in SAMPLING_KEYS if k in body},
        )
        try:
            done = replay.answer(call)
        except ReplayMissError as exc:
            return JSONResponse(status_code=404, content=_error(str(exc), "not_found_error"))
        except BackendError as exc:
            return JSONResponse(status_code=502, content=_error(str(exc), "server_error"))
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
            "flowfront": {"latency_s": done.latency_s, "latency_source": done.latency_source, "cost_usd": done.cost_usd},
        }

    return app


def _check_body(body: Any) -> str | None:
    if not isinstance(body, dict):
        return "the body must be a JSON object"
    if not isinstance(body.get("model"), str):
        return "`model` is required and must be a string"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "`messages` must be a non-empty list"
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("content"), str) or "role" not in m:
            return f"`messages[{i}]` needs a `role` and a string `content`"
    budget = body.get("max_tokens")
    if budget is not None and (not isinstance(budget, int) or budget <= 0):
        return "`max_tokens` must be a positive integer"
    return None


def _error(message: str, kind: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind}}
