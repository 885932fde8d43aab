"""``sandboxkit serve``: an HTTP API compatible with Judge0 CE 1.13.1, so Judge0 clients
(the official ``judge0`` Python package among them) work unchanged.

    from sandboxkit.server import Settings, serve
    serve(host="127.0.0.1", port=2358, settings=Settings(db="judge0.sqlite3"))

A fleet shares one PostgreSQL (the ``postgres`` extra): API nodes
``serve(settings=Settings(db="postgresql://...", workers=0))`` and workers
(:func:`run_worker`, or ``sandboxkit worker``) on every host with an engine.
"""

from __future__ import annotations

from .._errors import InvalidInput
from .._validate import is_loopback
from ._app import create_app
from ._logs import LogFormat, configure_logging
from ._settings import Settings
from ._worker_main import run_worker

__all__ = ["Settings", "configure_logging", "create_app", "is_loopback", "run_worker", "serve"]


def serve(
    host: str = "127.0.0.1",
    port: int = 2358,
    settings: Settings | None = None,
    log_level: str = "info",
    log_format: LogFormat = "text",
) -> None:
    """Run the server until interrupted. Beyond loopback an auth token is required."""
    import uvicorn

    cfg = settings or Settings()
    if not is_loopback(host) and not cfg.auth_token:
        raise InvalidInput(
            f"binding {host} exposes the API beyond this machine: set an auth token "
            "(--auth-token or SANDBOXKIT_AUTH_TOKEN), which clients send as X-Auth-Token"
        )
    configure_logging(log_format, log_level)
    uvicorn.run(
        create_app(cfg),
        log_config=None,  # ours, above: one format for every line
        access_log=False,  # the app logs each request, with its token as a field
        host=host,
        port=port,
        log_level=log_level,
        proxy_headers=False,
        server_header=False,
    )
