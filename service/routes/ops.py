"""Operations: health, readiness, Prometheus metrics, atomic reload."""

from __future__ import annotations

import asyncio
import logging
import time

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from flowfront.errors import BackendError
from flowfront.service.deps import Authorized, SharedDep
from flowfront.service.errors import JSONBody, error_body
from flowfront.service.middleware import authorized
from flowfront.service.state import load_state

api_routes = APIRouter(tags=["operations"])
log = logging.getLogger("flowfront.service")


@api_routes.get("/healthz")
async def healthz() -> dict:
    """The process is up (liveness)."""
    return {"status": "ok"}


@api_routes.get("/readyz", responses={503: {"description": "not ready: starting, or a backend is unreachable"}})
async def readyz(request: Request) -> JSONBody:
    """Ready once artifacts are loaded and every backend answers its check."""
    shared = getattr(request.app.state, "shared", None)
    state = getattr(request.app.state, "service_state", None)
    if shared is None or state is None:
        return JSONBody(error_body(503, "artifacts are still loading", hint="retry shortly"), status_code=503)
    # Without a key (when keys are set) only ready / not ready: paths, workflows and breaker
    # states are for operators.
    detailed = authorized(request.scope, request.app.state.api_keys)
    problems = []
    for models, backend in list(shared.backends.items()):
        try:
            await backend.check()
        except BackendError as exc:
            problems.append(f"backend for {len(models)} models: {shared.redactor.scrub(str(exc))}")
    if not detailed:
        return JSONBody({"status": "ready" if not problems else "not ready"}, status_code=200 if not problems else 503)
    body = {"status": "ready" if not problems else "degraded", "generation": state.generation,
            "workflows": {n: e.status for n, e in state.entries.items()}, "breakers": shared.breakers.snapshot()}
    if problems:
        return JSONBody(error_body(503, "; ".join(problems), hint="check the backend", **body), status_code=503)
    return JSONBody(body)


@api_routes.get("/metrics", dependencies=[Authorized], response_class=Response,
                responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
async def metrics(shared: SharedDep) -> Response:
    """Prometheus text exposition: requests, decision and execution latency, candidates, errors, fallbacks."""
    return Response(shared.metrics.render(), media_type=CONTENT_TYPE_LATEST)


@api_routes.post("/admin/reload", dependencies=[Authorized],
                 responses={409: {"description": "new artifacts are invalid; the old ones stay in use"}})
async def reload(request: Request, shared: SharedDep) -> dict:
    """Load the artifacts again and swap them in; requests in flight finish on the old ones."""
    lock: asyncio.Lock = request.app.state.reload_lock
    async with lock:  # one reload at a time; generations stay ordered
        started = time.perf_counter()
        old = request.app.state.service_state
        new = await load_state(shared, request.app.state.workflows_dir, old.generation + 1, strict=True)
        request.app.state.service_state = new
        # The old state is closed once its last request is done; the reload does not wait for it.
        task = asyncio.get_running_loop().create_task(old.retire(), name=f"retire-generation-{old.generation}")
        request.app.state.background.add(task)
        task.add_done_callback(request.app.state.background.discard)
    log.info("reloaded artifacts: generation %d, %d workflows", new.generation, len(new.entries))
    return {"status": "reloaded", "generation": new.generation, "seconds": time.perf_counter() - started,
            "workflows": {n: e.status for n, e in new.entries.items()}}
