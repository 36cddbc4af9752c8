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

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
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
