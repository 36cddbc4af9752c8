"""``flowfront serve``: the app under uvicorn, with a safe bind and a graceful SIGTERM."""

from __future__ import annotations

import logging
from pathlib import Path

from flowfront.service.config import check_bind
from flowfront.settings import Settings

__all__ = ["serve"]


def serve(settings: Settings, workflows_dir: Path, host: str, port: int) -> None:
    """Serve ``workflows_dir`` on ``host:port`` until SIGINT/SIGTERM.

    Refuses a non-loopback ``host`` without API keys. On SIGTERM uvicorn stops accepting,
    waits up to ``shutdown_grace_s`` for requests in flight, then the lifespan flushes traces.
    """
    import uvicorn

    from flowfront.service.app import create_app, service_settings

    config = service_settings(settings)
    check_bind(config, host)
    logging.getLogger("flowfront.service").setLevel(config.log_level.upper())
    if not logging.getLogger().handlers:
        logging.basicConfig(level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from flowfront.service.protocol import guarded_protocol

    app = create_app(config, workflows_dir)
    uvicorn.run(app, host=host, port=port, log_level=config.log_level, access_log=config.access_log,
                timeout_graceful_shutdown=int(max(1, config.shutdown_grace_s)), lifespan="on",
                server_header=False, proxy_headers=False, http=guarded_protocol(config.header_timeout_s),
                timeout_keep_alive=config.keep_alive_s, limit_concurrency=config.max_connections,
                h11_max_incomplete_event_size=16 * 1024)
