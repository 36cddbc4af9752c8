"""Request dependencies: authentication, the app's shared resources and the state in use."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from flowfront.service.errors import Starting, UnknownWorkflow
from flowfront.service.state import ServiceState, Shared, WorkflowEntry

__all__ = ["Authorized", "Served", "ServedDep", "SharedDep", "lookup"]

_bearer = HTTPBearer(auto_error=False, description="one of FLOWFRONT_API_KEYS (required when keys are set)")


async def _authorize(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> None:
    """Declares the bearer scheme in the OpenAPI schema, nothing more: the one check is the ASGI
    middleware's (``middleware.authorized``), made before a body is read, for every path but the
    open ones, with one message."""


@dataclass(frozen=True, slots=True)
class Served:
    """What a serving endpoint needs: the app's shared resources and the state it runs on."""

    shared: Shared
    state: ServiceState


async def _served(request: Request) -> AsyncIterator[Served]:
    """The state in use, held until the response is sent (a reload's old state waits for it)."""
    shared: Shared | None = request.app.state.shared
    state: ServiceState | None = request.app.state.service_state
    if shared is None or state is None:
        raise Starting("the service is still starting or stopping", hint="retry when GET /readyz answers 200")
    state.enter()
    try:
        yield Served(shared, state)
    finally:
        state.leave()


async def _shared(request: Request) -> Shared:
    shared = request.app.state.shared
    if shared is None:
        raise Starting("the service is still starting or stopping", hint="retry when GET /readyz answers 200")
    return shared


def lookup(state: ServiceState, name: str) -> WorkflowEntry:
    """The served workflow called ``name``, or a 404 listing the served ones."""
    entry = state.entries.get(name)
    if entry is None:
        served = ", ".join(sorted(state.entries)) or "none"
        raise UnknownWorkflow(
            f"unknown workflow {name!r}", hint=f"served workflows: {served} (GET /v1/workflows)"
        )
    return entry


Authorized = Depends(_authorize)
SharedDep = Annotated[Shared, Depends(_shared)]
ServedDep = Annotated[Served, Depends(_served)]
