"""``stream: true`` on chat completions: the answer's tokens as the model produces them.

The request runs as a task that hands the answer's call to a :class:`ChunkStream` (when the
workflow allows it: ``executor.streamed_call``). The response starts with the first token; a
failure before it is an ordinary error response (fallbacks included, as without streaming). From
then on every chunk is an OpenAI ``chat.completion.chunk`` naming the candidate and the model
that produced it; a failure after tokens went out ends the stream with an error event, never
silently. A workflow whose answer cannot stream arrives in one chunk at the end.

Secrets are scrubbed on whitespace boundaries: text is held back until the word it ends in is
complete, so a key split across tokens is masked whole (keys contain no spaces).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson

from flowfront.backends.base import DeltaSink
from flowfront.errors import FlowfrontError

__all__ = ["ChunkStream", "sse"]

_DONE = object()


def sse(obj: Any) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


class ChunkStream:
    """The engine's :class:`~service.engine.StreamSink`: collects scrubbed text pieces for the response."""

    def __init__(self, scrub: Callable[[str], str]) -> None:
        self.scrub = scrub
        self.started = False
        self.pieces: asyncio.Queue[tuple[str, str, str] | object] = asyncio.Queue()
        self.first = asyncio.Event()
        self._held = ""
        self._source: tuple[str, str] = ("", "")
        self.trace_id = ""
        self.sent_text: list[str] = []

    def opened(self, trace_id: str, candidate: str, model: str) -> DeltaSink:
        self.trace_id, self._source, self._held = trace_id, (candidate, model), ""

        def take(piece: str) -> None:
            self._held += piece
            cut = max(self._held.rfind(" "), self._held.rfind("\n"), self._held.rfind("\t"))
            if cut >= 0:
                self._emit(self._held[: cut + 1])
                self._held = self._held[cut + 1:]

        return take

    @property
    def candidate(self) -> str:
        """The candidate whose call is streaming."""
        return self._source[0]

    def _emit(self, text: str) -> None:
        if text:
            clean = self.scrub(text)
            self.started = True
            self.sent_text.append(clean)
            self.pieces.put_nowait((clean, *self._source))
            self.first.set()

    def finish(self) -> None:
        """The call ended: what was held back goes out."""
        self._emit(self._held)
        self._held = ""


async def first_token_or_done(stream: ChunkStream, task: asyncio.Task) -> None:
    """Wait until the first piece is out or the request has finished (either way)."""
    waiter = asyncio.ensure_future(stream.first.wait())
    try:
        await asyncio.wait([waiter, task], return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()


async def chunks(stream: ChunkStream, task: asyncio.Task, base: dict[str, Any],
                 finish: Callable[[Any], tuple[dict[str, Any], str]],
                 error_body: Callable[[FlowfrontError], dict[str, Any]]) -> AsyncIterator[bytes]:
    """The SSE body: the role, every text piece as it comes, then the last chunk (usage, details)
    or an error event. ``finish(outcome)`` gives the last chunk's extras and finish reason."""
    yield sse(
        {
            **base,
            "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}],
        }
    )
    pump = asyncio.ensure_future(_close_when_done(stream, task))
    try:
        while True:
            item = await stream.pieces.get()
            if item is _DONE:
                break
            text, candidate, model = item  # type: ignore[misc]
            yield sse({**base, "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}],
                       "flowfront": {"candidate": candidate, "model": model}})
        try:
            outcome = await task
        except FlowfrontError as exc:
            yield sse(error_body(exc))
            yield b"data: [DONE]\n\n"
            return
        extra, reason = finish(outcome)
        yield sse({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": reason}], **extra})
        yield b"data: [DONE]\n\n"
    finally:
        pump.cancel()


async def _close_when_done(stream: ChunkStream, task: asyncio.Task) -> None:
    await asyncio.wait([task])  # its outcome or error is read by the generator
    stream.finish()
    stream.pieces.put_nowait(_DONE)

