"""uvicorn's h11 protocol with a deadline for request headers (slowloris).

uvicorn closes idle keep-alive connections, but a client that opens a connection and sends its
headers one byte at a time holds the connection for as long as it likes. Here every connection
must deliver a complete request head within ``header_timeout_s`` of connecting (or of its
previous response), or it is closed. Bodies are bounded by the middleware's read timeout; the
number of connections by uvicorn's ``limit_concurrency``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["GuardedH11Protocol"]


class GuardedH11Protocol(H11Protocol):
    """An H11Protocol whose connections must send their request head within ``header_timeout_s``
    (an attribute of uvicorn's Config, so the class is importable by worker processes)."""

    _header_timer: asyncio.TimerHandle | None = None

    def __init__(self, config: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        self.header_timeout_s = float(getattr(config, "header_timeout_s", 10.0))
        self.max_head_bytes = int(getattr(config, "max_head_bytes", 16 * 1024))
        self._head_bytes = 0
        self._tail = b""

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        waiting = self.cycle is None or self.cycle.response_complete
        if waiting and self._head_too_large(data):
            return
        super().data_received(data)
        if self.cycle is not None and not self.cycle.response_complete:
            self._disarm()  # the head arrived; the body has its own deadline
        elif self._header_timer is None:
            self._arm()  # waiting for the next request's head on a kept-alive connection

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._disarm()  # uvicorn's keep-alive timer takes over until new data arrives

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _head_too_large(self, data: bytes) -> bool:
        """Count a request head's bytes up to its blank line; past the limit, answer 431 and close
        (a head that arrives whole in one read never meets h11's incomplete-event limit)."""
        end = (self._tail + data).find(b"\r\n\r\n")
        size = self._head_bytes + (len(data) if end < 0 else end + 4 - len(self._tail))
        if size <= self.max_head_bytes:
            self._head_bytes, self._tail = (size, (self._tail + data)[-3:]) if end < 0 else (0, b"")
            return False
        body = (b'{"error":{"type":"invalid_request_error","code":431,"message":"request head exceeds '
                + str(self.max_head_bytes).encode() + b' bytes","hint":"send fewer or smaller headers"}}')
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n" + body
        )
        self._disarm()
        self.transport.close()
        return True

    def _arm(self) -> None:
        self._disarm()
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._slow_head)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _slow_head(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing() and (self.cycle is None or self.cycle.response_complete):
            self.transport.close()
