"""``POST /v1/chat/completions``: the OpenAI wire format over a served workflow.

``model`` is the workflow, the one user message is the query and the preference rides in the
extra body fields ``preference`` and ``strategy`` (``extra_body=`` in the OpenAI SDK); what
cannot apply to a compiled workflow is refused or listed (``ChatRequest`` says which). ``usage``
sums the tokens of every call the workflow made; ``x-flowfront-candidate`` names the candidate.
With ``stream: true`` the answer's tokens stream as the model produces them where the workflow
allows it (``service/streaming.py``), else the whole answer arrives as one chunk, then ``[DONE]``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from flowfront.errors import FlowfrontError
from flowfront.service.deps import Authorized, ServedDep, lookup
from flowfront.service.engine import Outcome, run_request
from flowfront.service.errors import InvalidRequest, JSONBody, error_parts
from flowfront.service.routes import documented
from flowfront.service.routes.workflows import headers, run_response
from flowfront.service.schemas import ChatRequest
from flowfront.service.streaming import ChunkStream, chunks, first_token_or_done

api_routes = APIRouter(prefix="/v1", tags=["openai"], dependencies=[Authorized])


@api_routes.get("/models", responses={401: {"description": "missing or invalid API key"}})
async def list_models(served: ServedDep) -> dict:
    """The served workflows, as OpenAI's model list (``client.models.list()``)."""
    return {"object": "list", "data": [
        {"id": name, "object": "model", "created": 0, "owned_by": "flowfront", "status": entry.status}
        for name, entry in sorted(served.state.entries.items())]}


@api_routes.post(
    "/chat/completions",
    responses={
        200: {"description": "a chat.completion (or an SSE stream of chat.completion.chunk)"},
        **documented(401, 404, 409, 413, 422, 502, 503, 504),
    },
)
async def chat_completions(body: ChatRequest, served: ServedDep, request: Request) -> Any:
    """Run workflow ``model`` on the last user message."""
    entry = lookup(served.state, body.model)
    request.state.workflow = entry.name
    query = _last_user_text(body)
    scrub = served.shared.redactor.scrub
    if body.stream:
        return await _streamed(served, entry, body, query, request)
    outcome = await run_request(served.shared, entry, query, body.preference.to_preference(), body.strategy,
                                body.task, endpoint="chat")
    content, details = _content(outcome, scrub), _details(outcome, body, scrub)
    return JSONBody(_completion(outcome, content, details), headers=headers(outcome))


async def _streamed(served: Any, entry: Any, body: ChatRequest, query: str, request: Request) -> Any:
    """Start the request; answer with its first token (or, when it never streams, at its end)."""
    scrub = served.shared.redactor.scrub
    stream = ChunkStream(scrub)
    task = asyncio.ensure_future(run_request(served.shared, entry, query, body.preference.to_preference(),
                                             body.strategy, body.task, endpoint="chat", stream=stream))
    await first_token_or_done(stream, task)
    if not stream.started:  # nothing streamed: an error (fallbacks done) or a one-piece answer
        outcome = await task
        content, details = _content(outcome, scrub), _details(outcome, body, scrub)
        return StreamingResponse(_one_piece(outcome, content, details), media_type="text/event-stream",
                                 headers=headers(outcome))
    base = {
        "id": f"chatcmpl-{stream.trace_id}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": entry.name,
        "system_fingerprint": entry.frontier_hash,
    }

    def finish(outcome: Outcome) -> tuple[dict, str]:
        details = _details(outcome, body, scrub)
        truncated = bool(outcome.result and outcome.result.calls and outcome.result.calls[-1].truncated)
        return {"usage": _usage(outcome), "flowfront": details}, "length" if truncated else "stop"

    def error(exc: FlowfrontError) -> dict:
        return error_parts(request, exc)[1]

    return StreamingResponse(
        chunks(stream, task, base, finish, error),
        media_type="text/event-stream",
        headers={
            "x-flowfront-candidate": stream.candidate,
            "x-flowfront-trace-id": stream.trace_id,
            "x-flowfront-streamed": "true",
        },
    )


def _details(outcome: Outcome, body: ChatRequest, scrub: Any) -> dict:
    details = {k: v for k, v in run_response(outcome, scrub).items() if k not in ("text", "answer")}
    details["ignored"] = body.ignored()
    if _content(outcome, scrub) is None:
        details["content_unavailable"] = "the replayed data records this answer's grade, not its text"
    return details


def _last_user_text(body: ChatRequest) -> str:
    for i in range(len(body.messages) - 1, -1, -1):
        if body.messages[i].role == "user":
            text = body.messages[i].text()
            if not text.strip():
                raise InvalidRequest("the last user message is empty", field=f"messages[{i}].content",
                                     hint="put the query in the last user message")
            return text
    raise InvalidRequest("no user message: the last user message is the workflow's query", field="messages",
                         hint='add {"role": "user", "content": "<query>"}')


def _content(outcome: Outcome, scrub) -> str | None:
    """The answer's text; None (JSON null) when the replayed data graded the call but kept no text
    (LLMRouter's tables record scores only), which an empty string would misreport as an answer."""
    answer = outcome.result.answer
    if answer is None:
        value = outcome.result.value
        return scrub(value.text) if value is not None and value.text is not None else None
    return scrub(str(answer))


def _usage(outcome: Outcome) -> dict[str, int]:
    prompt = sum(c.prompt_tokens for c in outcome.result.calls)
    completion = sum(c.completion_tokens for c in outcome.result.calls)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _completion(outcome: Outcome, content: str | None, details: dict) -> dict:
    return {
        "id": f"chatcmpl-{outcome.trace_id}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": outcome.entry.name,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": _usage(outcome),
        "system_fingerprint": outcome.entry.frontier_hash,
        "flowfront": details,
    }


def _one_piece(outcome: Outcome, content: str | None, details: dict) -> Iterator[bytes]:
    base = {
        "id": f"chatcmpl-{outcome.trace_id}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": outcome.entry.name,
        "system_fingerprint": outcome.entry.frontier_hash,
    }
    first = {
        **base,
        "choices": [{"index": 0, "delta": {"role": "assistant", "content": content}, "finish_reason": None}],
    }
    last = {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "usage": _usage(outcome),
            "flowfront": details}
    for chunk in (first, last):
        yield b"data: " + orjson.dumps(chunk) + b"\n\n"
    yield b"data: [DONE]\n\n"
