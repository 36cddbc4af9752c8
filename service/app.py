"""Assembles the FastAPI app; nothing else happens here.

Artifacts (workflows, frontiers, routers), the embedding model, the replay index and the trace
writer are set up in the lifespan, so importing this module does no work and a test can build
several apps in one process (each has its own Prometheus registry). On shutdown (SIGTERM:
uvicorn stops accepting and drains the requests in flight first) the lifespan exit stops the
batchers and writes every queued trace.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from pydantic import ValidationError

from flowfront.errors import FlowfrontError, SpecError, first_invalid
from flowfront.redact import Redactor, install_redaction, uninstall_redaction
from flowfront.service.config import ServiceSettings
from flowfront.service.errors import install_handlers
from flowfront.service.lifecycle import Lifecycle
from flowfront.service.metrics import Metrics
from flowfront.service.middleware import ServiceMiddleware
from flowfront.service.routes import feedback, ops, workflows
from flowfront.service.routes import openai as openai_routes
from flowfront.service.state import Shared
from flowfront.service.telemetry import Telemetry
from flowfront.settings import Settings

__all__ = ["create_app", "service_settings"]

log = logging.getLogger("flowfront.service")


def service_settings(settings: Settings | None = None) -> ServiceSettings:
    """Service settings from the environment, on top of ``settings`` (e.g. the CLI's) when given."""
    if isinstance(settings, ServiceSettings):
        return settings
    try:
        return ServiceSettings(**(settings.model_dump() if settings is not None else {}))
    except ValidationError as exc:
        name, why = first_invalid(exc, "settings")
        raise SpecError(
            f"invalid service setting FLOWFRONT_{name.upper()}: {why}",
            hint="fix or unset that environment variable",
        ) from None


def create_app(
    settings: Settings | None, workflows_dir: Path, *, telemetry: Telemetry | None = None
) -> FastAPI:
    """The service over the workflow YAMLs in ``workflows_dir`` and their artifacts in ``settings.workdir``;
    ``telemetry`` replaces the OpenTelemetry export the environment asks for (tests)."""
    config = service_settings(settings)
    workflows_dir = Path(workflows_dir).expanduser().resolve()
    metrics = Metrics.create()
    redactor = Redactor.from_environment(extra=config.key_values())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        wrapped = install_redaction(
            redactor
        )  # uvicorn's handlers exist by now; every line they render is scrubbed
        shared = await asyncio.to_thread(Shared, config, metrics, redactor, telemetry)
        app.state.shared = shared
        lifecycle = app.state.lifecycle = Lifecycle(app, shared, workflows_dir)
        try:
            await lifecycle.start()
            _on_sighup(lifecycle)
            yield
        finally:
            await _shutdown(app, shared, lifecycle)
            uninstall_redaction(wrapped)

    app = FastAPI(title="flowfront", version="1",
                  description="Per-query routing over a compiled frontier of workflow configurations.",
                  lifespan=lifespan)
    app.state.api_keys = [key.encode() for key in config.key_values()]
    app.state.redactor = redactor
    app.state.workflows_dir = workflows_dir
    app.state.lifecycle = None
    app.state.shared = None
    app.state.service_state = None
    app.state.openapi_names = None
    install_handlers(app)
    app.add_middleware(ServiceMiddleware, max_body_bytes=config.max_body_bytes, metrics=metrics,
                       body_timeout_s=config.body_timeout_s, body_min_bytes_per_s=config.body_min_bytes_per_s,
                       api_keys=app.state.api_keys)
    for module in (workflows, openai_routes, feedback, ops):
        app.include_router(module.api_routes)
    app.openapi = lambda: _openapi(app)
    return app


def _openapi(app: FastAPI) -> dict:
    """FastAPI's schema, with the served workflow names as the enum of ``{name}`` and chat ``model``.

    Clients (and schemathesis) then see which workflows exist; requests naming others still get
    a 404 from the handler. Rebuilt after a reload, since the names may change.
    """
    from fastapi.openapi.utils import get_openapi

    state = app.state.service_state
    names = sorted(state.entries) if state is not None else []
    key = tuple(names)
    if app.openapi_schema is not None and app.state.openapi_names == key:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    if names:
        for path in schema.get("paths", {}).values():
            for op in path.values():
                for param in op.get("parameters", []):
                    if param.get("name") == "name" and param.get("in") == "path":
                        param["schema"] = {**param.get("schema", {}), "enum": names}
        model = (
            schema.get("components", {})
            .get("schemas", {})
            .get("ChatRequest", {})
            .get("properties", {})
            .get("model")
        )
        if model is not None:
            model["enum"] = names
    app.openapi_schema, app.state.openapi_names = schema, key
    return schema


def _on_sighup(lifecycle: Lifecycle) -> None:
    """SIGHUP reloads the artifacts gracefully (in-flight requests finish on the old ones)."""
    import signal

    loop = asyncio.get_running_loop()

    def reload() -> None:
        async def run() -> None:
            try:
                await lifecycle.reload()
            except FlowfrontError as exc:
                log.error("SIGHUP reload refused: %s", exc)

        lifecycle.spawn(run(), "sighup-reload")

    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):  # not the main thread (tests)
        loop.add_signal_handler(signal.SIGHUP, reload)


async def _shutdown(app: FastAPI, shared: Shared, lifecycle: Lifecycle) -> None:
    """Stop batchers (current and retiring generations), then flush traces and close files."""
    await lifecycle.aclose()
    state = app.state.service_state
    app.state.service_state = None
    if state is not None:
        await state.retire()
    await shared.aclose()
    log.info("stopped: %d served rows written to %s", shared.writer.written, shared.writer.url.shown)
