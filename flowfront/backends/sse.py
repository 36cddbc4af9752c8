"""A lean reader of one streamed OpenAI-compatible chat completion (httpx + orjson).

Opt-in (``live_transport=direct``): litellm's stream wrapper builds pydantic objects and runs its
hooks on every chunk, about twice the client CPU of this reader per token, which a 2-core machine
shares with its llama.cpp server. bench/results/live.json measures both transports' decode
throughput and client CPU against the server alone. This reader parses each ``data:`` line once
and keeps only what a trace needs; errors become the same ``BackendError`` lines the litellm path
gives, and retries stay with the caller.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flowfront.errors import BackendError


@dataclass
class Streamed:
    """What one stream gave: the text pieces with their end offsets and arrival times."""

    parts: list[str] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    finish: str | None = None
    usage: dict[str, Any] | None = None

    def add(self, delta: str, at: float) -> None:
        self.parts.append(delta)
        self.offsets.append((self.offsets[-1] if self.offsets else 0) + len(delta))
        self.times.append(at)


def _error(status: int, body: str, model: str, base: str) -> BackendError:
    first = body.strip().splitlines()[0][:300] if body.strip() else f"HTTP {status}"
    if status == 404:
        return BackendError(f"NotFoundError from {model!r}: {first}", model=model,
                            hint=f"the server at {base} does not serve {model!r}: check its model alias "
                                 f"(GET {base}/models)")
    if status in (401, 403):
        return BackendError(f"AuthenticationError from {model!r}: HTTP {status}", model=model,
                            hint="set the server's key in FLOWFRONT_PROVIDER_API_KEY")
    retryable = status == 429 or status >= 500
    hint = (
        "retry later"
        if retryable
        else "the server rejected the request; check the model's parameters and budget"
    )
    return BackendError(f"HTTP {status} from {model!r}: {first}", model=model, retryable=retryable, hint=hint)


async def stream_chat(
    base: str,
    key: str,
    model: str,
    alias: str,
    body: dict[str, Any],
    timeout_s: float,
    started: float,
    on_delta: Callable[[str], None] | None = None,
) -> Streamed:
    """POST ``{base}/chat/completions`` with ``stream: true`` and read it to the end."""
    import asyncio

    import httpx
    import orjson

    out = Streamed()
    payload = orjson.dumps({**body, "model": alias, "stream": True})
    headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}
    try:
        async with asyncio.timeout(timeout_s), httpx.AsyncClient(timeout=timeout_s) as client, \
                client.stream("POST", f"{base}/chat/completions", content=payload, headers=headers) as reply:
            if reply.status_code != 200:
                raise _error(reply.status_code, (await reply.aread()).decode(errors="replace"), model, base)
            async for line in reply.aiter_lines():
                if not line.startswith("data: {"):
                    continue  # blank keep-alives, comments and the final "data: [DONE]"
                chunk = orjson.loads(line[6:])
                out.usage = chunk.get("usage") or out.usage
                for choice in chunk.get("choices") or ():
                    delta = (choice.get("delta") or {}).get("content")
                    if delta:
                        out.add(delta, time.perf_counter() - started)
                        if on_delta is not None:
                            on_delta(delta)
                    out.finish = choice.get("finish_reason") or out.finish
    except TimeoutError:
        raise BackendError(f"Timeout from {model!r}: no complete answer within {timeout_s:g} s", model=model,
                           retryable=True, hint="retry later, or raise call_timeout_s") from None
    except httpx.ConnectError:
        raise BackendError(
            f"APIConnectionError from {model!r}: connection refused",
            model=model,
            retryable=True,
            hint=f"nothing answers at {base}: start the server (`flowfront models serve`) or fix --api-base",
        ) from None
    except (httpx.HTTPError, orjson.JSONDecodeError) as exc:
        raise BackendError(f"{type(exc).__name__} from {model!r} mid-stream: {str(exc)[:200]}", model=model,
                           retryable=True, hint="retry later; check the server's log") from None
    return out
