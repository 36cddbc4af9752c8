"""The one place the exception tree becomes HTTP.

Every error body has the OpenAI shape ``{"error": {"type", "message", ...}}`` (so the OpenAI SDK
shows the message) plus ``hint`` (what to fix), ``field`` for validation errors, ``nearest`` for
an infeasible preference and ``retryable`` for backend failures.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from flowfront.errors import (
    BackendError,
    CallTimeoutError,
    CompileError,
    FlowfrontError,
    InfeasibleError,
    ReplayMissError,
    RoutingError,
    SpecError,
    StoreError,
)

__all__ = [
    "DeadlineExceeded",
    "JSONBody",
    "InvalidRequest",
    "NotReady",
    "Starting",
    "UnknownResponse",
    "UnknownWorkflow",
    "error_body",
    "install_handlers",
    "status_for",
]

log = logging.getLogger("flowfront.service")


class JSONBody(Response):
    """JSON through orjson (error bodies and hand-built responses)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


class InvalidRequest(SpecError):
    """A request field the schema cannot check alone (limits set in the settings)."""

    def __init__(self, message: str, *, field: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.field = field


class UnknownWorkflow(SpecError):
    """The path or ``model`` names no served workflow."""


class UnknownResponse(SpecError):
    """Feedback names a response id the decision log does not hold (never served, or pruned)."""


class NotReady(RoutingError):
    """The workflow lacks an artifact the request needs (a frontier, or a router)."""


class Starting(BackendError):
    """The service is still starting (or its store is unreachable) or is stopping: retry shortly."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message, retryable=True, hint=hint)


class DeadlineExceeded(BackendError):
    """The whole request (routing, execution, fallbacks) ran past its deadline."""

    def __init__(self, deadline_s: float) -> None:
        super().__init__(
            f"the request did not finish within its {deadline_s:g} s deadline",
            retryable=True,
            hint="retry later, relax the preference towards faster candidates, or raise "
                 "FLOWFRONT_REQUEST_DEADLINE_S",
        )


def status_for(exc: FlowfrontError, *, provider: bool = False) -> int:
    """HTTP status of a flowfront error; the order matters (subclasses first).

    ``provider``: the app stands in for a model provider (``replay-serve``). A missing record is
    then 404, a provider's "no such completion": OpenAI clients and litellm expect that from a
    provider and fail to read a 422 (litellm raised ``'NoneType' object has no attribute
    'choices'``). To a caller of a served workflow it is 422: send another query.
    """
    if isinstance(exc, (UnknownWorkflow, UnknownResponse)):
        return 404
    if isinstance(exc, ReplayMissError):
        return 404 if provider else 422
    if isinstance(exc, (DeadlineExceeded, CallTimeoutError)):
        return 504
    if isinstance(exc, BackendError):
        return 503 if exc.retryable else 502
    if isinstance(exc, (RoutingError, CompileError)):
        return 409  # the artifacts on disk cannot serve this request as asked
    if isinstance(exc, SpecError):
        return 422
    if isinstance(exc, StoreError):
        return 503
    return 500


def _kind(status: int) -> str:
    return {
        401: "authentication_error",
        404: "not_found_error",
        409: "conflict_error",
        413: "request_too_large",
        422: "invalid_request_error",
        429: "rate_limit_error",
    }.get(status, "server_error" if status >= 500 else "invalid_request_error")


def error_body(status: int, message: str, **extra: Any) -> dict[str, Any]:
    """The error JSON every endpoint returns."""
    body = {"type": _kind(status), "message": message, "code": status}
    body.update({k: v for k, v in extra.items() if v is not None})
    return {"error": body}


def _redact(request: Request, text: str) -> str:
    redactor = getattr(request.app.state, "redactor", None)
    return redactor.scrub(text) if redactor is not None else text


def flowfront_response(request: Request, exc: FlowfrontError) -> JSONBody:
    """Render a flowfront error as its HTTP response."""
    status, body, headers = error_parts(request, exc)
    if status >= 500:
        log.warning("%s %s -> %d: %s", request.method, request.url.path, status, exc)
    return JSONBody(body, status_code=status, headers=headers)


def error_parts(request: Request, exc: FlowfrontError) -> tuple[int, dict[str, Any], dict[str, str] | None]:
    """Status, body and headers of a flowfront error (a stream's error event uses the body)."""
    status = status_for(exc, provider=getattr(request.app.state, "provider", False))
    extra: dict[str, Any] = {"hint": _redact(request, exc.hint) if exc.hint else None}
    if isinstance(exc, InvalidRequest):
        extra["field"] = exc.field
    elif isinstance(exc, ReplayMissError):
        extra["field"] = "query"
    if isinstance(exc, InfeasibleError):
        extra["nearest"] = exc.nearest
    if isinstance(exc, BackendError):
        extra["retryable"] = exc.retryable
        extra["model"] = exc.model
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    if status in (503, 504):
        # when breakers are open, the time until they let a probe through: earlier retries only fail
        wait = exc.retry_after_s if isinstance(exc, BackendError) and exc.retry_after_s is not None else 1.0
        headers = {"Retry-After": str(max(1, math.ceil(wait)))}
    return status, error_body(status, _redact(request, exc.message), **extra), headers


async def _on_flowfront(request: Request, exc: Exception) -> JSONBody:
    assert isinstance(exc, FlowfrontError)
    return flowfront_response(request, exc)


_UNION_TAGS = {"str", "int", "float", "bool", "list", "dict", "none"}


def _field_path(loc: list) -> str:
    """``preference.lambda`` or ``messages[0].content`` from a pydantic location."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.lower() not in _UNION_TAGS and "[" not in part and "(" not in part:
            out += f".{part}" if out else part  # pydantic's union member tags are not fields
    return out or "body"


async def _on_validation(request: Request, exc: Exception) -> JSONBody:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
    if first.get("type") == "json_invalid":  # the location is a character offset, not a field
        return await _bad_json(request, first)
    loc = [p for p in first.get("loc", ()) if p != "body"]
    field = _field_path(loc)
    msg = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    message = f"`{field}`: {msg}{more}"
    return JSONBody(
        error_body(
            422,
            _redact(request, message),
            field=field,
            hint="fix this field; GET /docs shows the request schema",
        ),
        status_code=422,
    )


async def _bad_json(request: Request, error: dict) -> JSONBody:
    """Malformed JSON, said by line and column of the body."""
    offset = next((p for p in reversed(error.get("loc", ())) if isinstance(p, int)), 0)
    body = (await request.body())[:offset].decode("utf-8", errors="replace")
    line, column = body.count("\n") + 1, offset - (body.rfind("\n") + 1) + 1
    detail = (error.get("ctx") or {}).get("error", "invalid JSON")
    message = f"the body is not valid JSON: {detail} at line {line}, column {column}"
    return JSONBody(
        error_body(422, message, field="body", hint="send a JSON object; GET /docs shows the schema"),
        status_code=422,
    )


async def _on_http(request: Request, exc: Exception) -> JSONBody:
    assert isinstance(exc, StarletteHTTPException)
    hint = "see GET /docs for the endpoints" if exc.status_code in (404, 405) else None
    return JSONBody(error_body(exc.status_code, str(exc.detail), hint=hint), status_code=exc.status_code,
                          headers=getattr(exc, "headers", None))


async def _on_bug(request: Request, exc: Exception) -> JSONBody:
    # Not a FlowfrontError: a bug. Logged with its traceback (scrubbed by the log filter).
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONBody(error_body(500, "internal error; the server log has the details",
                                     hint="report this as a bug"), status_code=500)


def install_handlers(app: FastAPI, *, provider: bool = False) -> None:
    """Register the handlers on ``app``; ``provider`` as in :func:`status_for`."""
    app.state.provider = provider
    app.add_exception_handler(FlowfrontError, _on_flowfront)
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(StarletteHTTPException, _on_http)
    app.add_exception_handler(Exception, _on_bug)
