"""One pure-ASGI middleware: the body size limit and per-request metrics.

Pure ASGI rather than ``BaseHTTPMiddleware``: it costs a function call per message instead of
a task and a stream per request, which matters at hundreds of requests per second.
"""

from __future__ import annotations

import asyncio
import hmac

import orjson
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from flowfront.service.errors import error_body
from flowfront.service.metrics import Metrics

__all__ = ["ServiceMiddleware"]

_TOO_LARGE_HINT = "send a smaller body or raise FLOWFRONT_MAX_BODY_BYTES"


_OPEN_PATHS = ("/healthz", "/readyz", "/docs", "/redoc", "/openapi.json")
_BODY_GRACE_S = 2.0  # before the minimum body rate applies (connection set-up, a first chunk)


class ServiceMiddleware:
    """Authentication before anything reads the body, 413 for bodies over ``max_body_bytes``
    (declared or streamed), a read timeout per body chunk; counts every response."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, metrics: Metrics, body_timeout_s: float = 30.0,
                 body_min_bytes_per_s: float = 1024.0, api_keys: list[bytes] | None = None) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.metrics = metrics
        self.body_timeout_s = body_timeout_s
        self.body_min_bytes_per_s = body_min_bytes_per_s
        self.api_keys = api_keys or []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.api_keys and not scope.get("path", "").startswith(_OPEN_PATHS) and not self._authorized(scope):
            # before the body is read: an unauthenticated client learns nothing about the schema
            await _send_error(send, 401, "missing or invalid API key",
                              "send `Authorization: Bearer <key>` with one of the service's keys",
                              [(b"www-authenticate", b"Bearer")])
            self._count(scope, 401)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_body_bytes:
            await _too_large(send, self.max_body_bytes)
            self._count(scope, 413)
            return
        status = 500
        seen = 0
        limit = self.max_body_bytes
        started: float | None = None
        body_done = False
        loop = asyncio.get_running_loop()

        async def limited_receive() -> Message:
            nonlocal seen, started, body_done
            if body_done:  # the body is in; later reads wait for the client's disconnect (streaming)
                return await receive()
            now = loop.time()
            started = now if started is None else started
            # The whole body within body_timeout_s of the first read, and never slower than the
            # minimum rate after a short grace: a client sending a byte every few seconds is cut off
            # within seconds, not allowed to hold a slot by restarting a per-chunk timer.
            deadline = started + self.body_timeout_s
            if self.body_min_bytes_per_s > 0:
                deadline = min(deadline, started + _BODY_GRACE_S + (seen + 1) / self.body_min_bytes_per_s)
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - now))
            except TimeoutError:
                raise HTTPException(408, f"request body too slow: {seen:,} bytes in {loop.time() - started:.1f} s "
                                    f"(the whole body must arrive within {self.body_timeout_s:g} s, at "
                                    f"{self.body_min_bytes_per_s:g}+ bytes/s)",
                                    headers={"connection": "close"}) from None  # the rest of it is not wanted
            if message["type"] == "http.request":
                body_done = not message.get("more_body", False)
                seen += len(message.get("body", b""))
                if seen > limit:  # a chunked body with no (or a false) Content-Length
                    raise HTTPException(413, f"request body exceeds {limit:,} bytes ({_TOO_LARGE_HINT})")
            return message

        async def counting_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, limited_receive, counting_send)
        finally:
            self.metrics.in_flight.dec()
            self._count(scope, status)

    def _authorized(self, scope: Scope) -> bool:
        return authorized(scope, self.api_keys)

    def _count(self, scope: Scope, status: int) -> None:
        route = scope.get("route")
        endpoint = getattr(route, "path", None) or "unmatched"  # the template keeps label values bounded
        workflow = (scope.get("state") or {}).get("workflow", "-")
        self.metrics.requests.labels(endpoint=endpoint, workflow=workflow, status=str(status)).inc()


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def authorized(scope: Scope, keys: list[bytes]) -> bool:
    """Whether the request carries one of ``keys`` as a bearer token (timing-safe)."""
    if not keys:
        return True
    header = next((v for k, v in scope.get("headers", ()) if k == b"authorization"), b"")
    scheme, _, token = header.partition(b" ")
    if scheme.lower() != b"bearer" or not token:
        return False
    # Compare against every key so the time taken does not say which key nearly matched.
    return any([hmac.compare_digest(token.strip(), key) for key in keys])


async def _send_error(send: Send, status: int, message: str, hint: str, headers: list | None = None) -> None:
    payload = orjson.dumps(error_body(status, message, hint=hint))
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
                            (b"connection", b"close"), *(headers or [])]})
    await send({"type": "http.response.body", "body": payload})


async def _too_large(send: Send, limit: int) -> None:
    await _send_error(send, 413, f"request body exceeds {limit:,} bytes", _TOO_LARGE_HINT)
