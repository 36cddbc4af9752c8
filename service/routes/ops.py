"""Operations: health, readiness, Prometheus metrics, atomic reload.

Readiness rule (``/readyz``): 200 when both stores answer, every backend passes its check and at
least one workflow can serve; its body then lists any workflow that cannot serve as asked under
``degraded`` (artifacts present but unusable: a corrupt frontier, a router that fails to load) or
``not_compiled`` (no artifacts yet). 503 otherwise, naming what is wrong. Callers without a key
(when keys are set) get only ``{"status": ...}``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from flowfront.errors import BackendError, StoreError
from flowfront.service.deps import Authorized, SharedDep
from flowfront.service.errors import JSONBody, Starting, error_body
from flowfront.service.middleware import authorized
from flowfront.service.state import ServiceState, Shared

api_routes = APIRouter(tags=["operations"])
log = logging.getLogger("flowfront.service")


@api_routes.get("/healthz")
async def healthz() -> dict:
    """The process is up (liveness)."""
    return {"status": "ok"}


@api_routes.get(
    "/readyz",
    responses={
        503: {
            "description": "not ready: starting, a store or a backend is unreachable, "
            "or no workflow can serve"
        }
    },
)
async def readyz(request: Request) -> JSONBody:
    """Ready once artifacts are loaded, the stores answer and every backend answers its check."""
    shared: Shared | None = getattr(request.app.state, "shared", None)
    state: ServiceState | None = getattr(request.app.state, "service_state", None)
    lifecycle = getattr(request.app.state, "lifecycle", None)
    detailed = authorized(request.scope, request.app.state.api_keys)
    if shared is None or state is None or lifecycle is None:
        why = (
            lifecycle.problem
            if lifecycle is not None and lifecycle.problem not in (None, "starting")
            else None
        )
        message = why or "artifacts are still loading"
        return JSONBody(
            error_body(503, message if detailed else "not ready", hint="retry shortly"), status_code=503
        )
    problems = await _problems(shared)
    servable = [n for n, e in state.entries.items() if e.frontier is not None]
    if not servable:
        problems.append(
            "no workflow can serve: " + "; ".join(f"{n}: {e.status}" for n, e in state.entries.items())
        )
    if not detailed:
        return JSONBody(
            {"status": "ready" if not problems else "not ready"}, status_code=200 if not problems else 503
        )
    degraded = {n: e.status for n, e in state.entries.items() if e.health == "degraded"}
    missing = {n: e.status for n, e in state.entries.items() if e.health == "missing"}
    body: dict[str, Any] = {
        "generation": state.generation,
        "artifacts": _fingerprint(state),
        "replica": shared.replica,
        "workflows": {n: e.status for n, e in state.entries.items()},
        "degraded": degraded,
        "not_compiled": missing,
        "breakers": shared.breakers.snapshot(),
        "store": shared.settings.store_url.shown,
        "served_store": shared.writer.url.shown,
    }
    if problems:
        return JSONBody(
            error_body(
                503,
                "; ".join(problems),
                hint="see the problems named; the service retries the stores by itself",
                ready=False,
                **body,
            ),
            status_code=503,
        )
    return JSONBody({"status": "degraded" if degraded else "ready", **body})


async def _problems(shared: Shared) -> list[str]:
    problems = []
    seen: set[int] = set()
    for name, store in (("store", shared.store), ("served-request store", shared.writer.store)):
        if store is None or id(store) in seen:
            continue
        seen.add(id(store))
        try:
            await asyncio.to_thread(store.ping)
        except StoreError as exc:
            problems.append(f"{name}: {shared.redactor.scrub(str(exc))}")
            if store is shared.writer.store:
                shared.writer.observed(exc)
        else:
            if store is shared.writer.store:  # a load balancer's readiness poll ends an outage at once
                shared.writer.observed(None)
    for models, backend in list(shared.backends.items()):
        try:
            await backend.check()
        except BackendError as exc:
            problems.append(f"backend for {len(models)} models: {shared.redactor.scrub(str(exc))}")
    return problems


def _fingerprint(state: ServiceState) -> str:
    """One short hash of every served frontier and router: equal on replicas serving the same."""
    import hashlib

    parts = sorted(f"{n}:{e.frontier_hash}:{e.router_generation}" for n, e in state.entries.items())
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


@api_routes.get("/metrics", dependencies=[Authorized], response_class=Response,
                responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
async def metrics(shared: SharedDep) -> Response:
    """Prometheus text exposition: requests, decision and execution latency, candidates, errors, fallbacks,
    tokens and cost."""
    return Response(shared.metrics.render(), media_type=CONTENT_TYPE_LATEST)


@api_routes.post(
    "/admin/reload",
    dependencies=[Authorized],
    responses={409: {"description": "new artifacts are invalid or missing; the old ones stay in use"}},
)
async def reload(request: Request, allow_downgrade: bool = False) -> dict:
    """Load the artifacts again and swap them in; requests in flight finish on the old ones. Every
    replica sharing the served-request store follows within its poll interval."""
    lifecycle = request.app.state.lifecycle
    if lifecycle is None:
        raise Starting("the service is still starting", hint="retry when GET /readyz answers 200")
    started = time.perf_counter()
    new = await lifecycle.reload(allow_downgrade=allow_downgrade)
    return {"status": "reloaded", "generation": new.generation, "seconds": time.perf_counter() - started,
            "workflows": {n: e.status for n, e in new.entries.items()}}
