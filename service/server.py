"""``flowfront serve``: the app under uvicorn, with a safe bind, a graceful SIGTERM and workers.

``--workers N`` runs N worker processes on one port (uvicorn's supervisor; each worker a full
app with its own breakers, caches and batchers). The workers get their settings through one
environment variable, share the served-request store (so a reload on one reaches the others)
and write their metrics into one multiprocess folder that ``/metrics`` sums. SIGHUP: one process
reloads its artifacts gracefully; the supervisor of N workers replaces them one by one.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import orjson
from pydantic import SecretStr

from flowfront.service.config import ServiceSettings, check_bind
from flowfront.settings import Settings

__all__ = ["serve", "worker_app"]

_WORKER_ENV = "FLOWFRONT__WORKER_CONFIG"  # settings for the workers (a private variable, not a setting)


def serve(settings: Settings, workflows_dir: Path, host: str, port: int, *, workers: int = 1) -> None:
    """Serve ``workflows_dir`` on ``host:port`` until SIGINT/SIGTERM.

    Refuses a non-loopback ``host`` without API keys. On SIGTERM uvicorn stops accepting,
    waits up to ``shutdown_grace_s`` for requests in flight, then the lifespan flushes traces.
    """
    import uvicorn

    from flowfront.service.app import create_app, service_settings
    from flowfront.service.protocol import GuardedH11Protocol

    config = service_settings(settings)
    check_bind(config, host)
    logging.getLogger("flowfront.service").setLevel(config.log_level.upper())
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
    options: dict[str, Any] = dict(
        host=host, port=port, log_level=config.log_level, access_log=config.access_log,
        timeout_graceful_shutdown=int(max(1, config.shutdown_grace_s)), lifespan="on", server_header=False,
        proxy_headers=False, http=GuardedH11Protocol, timeout_keep_alive=config.keep_alive_s,
        limit_concurrency=config.max_connections, h11_max_incomplete_event_size=config.max_head_bytes)
    if workers <= 1:
        uv = uvicorn.Config(create_app(config, workflows_dir), **options)
        uv.header_timeout_s = config.header_timeout_s  # type: ignore[attr-defined]  # read by GuardedH11Protocol
        uv.max_head_bytes = config.max_head_bytes  # type: ignore[attr-defined]
        server = uvicorn.Server(uv)
        server.run()
        if not server.started:
            raise SystemExit(3)  # start-up failed; uvicorn logged why
        return
    _serve_workers(config, workflows_dir, workers, options)


def _serve_workers(
    config: ServiceSettings, workflows_dir: Path, workers: int, options: dict[str, Any]
) -> None:
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    metrics_dir = tempfile.mkdtemp(prefix="flowfront-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir  # before any worker imports prometheus_client
    os.environ[_WORKER_ENV] = orjson.dumps(
        {"settings": _plain(config), "workflows": str(workflows_dir)}
    ).decode()
    try:
        uv = uvicorn.Config("flowfront.service.server:worker_app", factory=True, workers=workers, **options)
        uv.header_timeout_s = config.header_timeout_s  # type: ignore[attr-defined]
        uv.max_head_bytes = config.max_head_bytes  # type: ignore[attr-defined]
        Multiprocess(uv, sockets=[uv.bind_socket()]).run()
    finally:
        os.environ.pop(_WORKER_ENV, None)
        shutil.rmtree(metrics_dir, ignore_errors=True)


def _plain(config: ServiceSettings) -> dict[str, Any]:
    """The settings as JSON, secrets included (they stay in this process tree's environment)."""
    out = {}
    for name, value in config.model_dump().items():
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        elif isinstance(value, list):
            value = [v.get_secret_value() if isinstance(v, SecretStr) else v for v in value]
        elif isinstance(value, Path):
            value = str(value)
        out[name] = value
    return out


def worker_app() -> Any:
    """The app of one worker process (uvicorn's factory), from the supervisor's settings."""
    from flowfront.service.app import create_app
    from flowfront.service.metrics import forget_dead_workers, multiprocess_dir

    payload = orjson.loads(os.environ[_WORKER_ENV])
    folder = multiprocess_dir()
    if folder is not None:
        forget_dead_workers(folder)
    return create_app(ServiceSettings(**payload["settings"]), Path(payload["workflows"]))
