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
        if await self._refused(scope, send):
            return
        status = 500

        async def counting_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        reader = _BodyReader(receive, self.max_body_bytes, self.body_timeout_s, self.body_min_bytes_per_s)
        self.metrics.in_flight.inc()
        try:
            await self.app(scope, reader, counting_send)
        finally:
            self.metrics.in_flight.dec()
            self._count(scope, status)

    async def _refused(self, scope: Scope, send: Send) -> bool:
        """Answer what is refused before the body is read: a missing key (an unauthenticated client
        learns nothing about the schema) or a declared body over the limit."""
        guarded = self.api_keys and not scope.get("path", "").startswith(_OPEN_PATHS)
        if guarded and not self._authorized(scope):
            await _send_error(send, 401, "missing or invalid API key",
                              "send `Authorization: Bearer <key>` with one of the service's keys",
                              [(b"www-authenticate", b"Bearer")])
            self._count(scope, 401)
            return True
        declared = _content_length(scope)
        if declared is not None and declared > self.max_body_bytes:
            await _too_large(send, self.max_body_bytes)
            self._count(scope, 413)
            return True
        return False

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
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                (b"connection", b"close"),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


async def _too_large(send: Send, limit: int) -> None:
    await _send_error(send, 413, f"request body exceeds {limit:,} bytes", _TOO_LARGE_HINT)


class _BodyReader:
    """The app's ``receive`` with the body's limits: its size (a chunked body has no trustworthy
    Content-Length), a total time and a minimum rate."""

    def __init__(self, receive: Receive, limit: int, timeout_s: float, min_bytes_per_s: float) -> None:
        self.receive, self.limit, self.timeout_s, self.min_rate = receive, limit, timeout_s, min_bytes_per_s
        self.seen, self.done = 0, False
        self.started: float | None = None
        self.loop = asyncio.get_running_loop()

    async def __call__(self) -> Message:
        if self.done:  # the body is in; later reads wait for the client's disconnect (streaming)
            return await self.receive()
        now = self.loop.time()
        self.started = now if self.started is None else self.started
        # The whole body within timeout_s of the first read, and never slower than the minimum rate
        # after a short grace: a client sending a byte every few seconds is cut off within seconds,
        # not allowed to hold a slot by restarting a per-chunk timer.
        deadline = self.started + self.timeout_s
        if self.min_rate > 0:
            deadline = min(deadline, self.started + _BODY_GRACE_S + (self.seen + 1) / self.min_rate)
        try:
            message = await asyncio.wait_for(self.receive(), max(0.0, deadline - now))
        except TimeoutError:
            took = self.loop.time() - self.started
            raise HTTPException(408, f"request body too slow: {self.seen:,} bytes in {took:.1f} s (the "
                                f"whole body must arrive within {self.timeout_s:g} s, at {self.min_rate:g}+ "
                                "bytes/s)",
                                headers={"connection": "close"}) from None  # the rest of it is not wanted
        if message["type"] == "http.request":
            self.done = not message.get("more_body", False)
            self.seen += len(message.get("body", b""))
            if self.seen > self.limit:
                raise HTTPException(413, f"request body exceeds {self.limit:,} bytes ({_TOO_LARGE_HINT})")
        return message
