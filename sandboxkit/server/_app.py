"""The FastAPI application: Judge0's routes over a store and its workers, and Piston's
v2 API at ``/api/v2`` (``sandboxkit.piston``, a wing of its own).

A submission is stored (In Queue) before the answer says 201; workers — in this process
(``workers`` > 0) or in ``sandboxkit worker`` processes sharing a PostgreSQL store —
claim it, judge it in a sandbox and store the result. Any node answers for any token.

This module wires the parts: the service (store, workers) on ``app.state`` and its
lifespan, the guard every request passes (auth token, body size, access log), CORS, the
error answers, and the routers of ``routes/``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response

from .._version import __version__
from ..piston import create_router as piston_router
from ._render import NOT_UTF8, NotUtf8
from ._service import Judge0Service
from ._settings import Settings
from ._store import StoreUnavailable
from .routes import auth, health, languages, submissions, system
from .routes._common import authenticated, error

log = logging.getLogger("sandboxkit.server")
access_log = logging.getLogger("sandboxkit.access")


def _access(request: Request, status: int) -> None:
    """One line per request (uvicorn's own access log is off), with the token as a
    field when the path names one."""
    path = request.url.path
    parts = path.split("/")
    extra = {"status": status, "method": request.method}
    if len(parts) == 3 and parts[1] == "submissions" and parts[2] != "batch":
        extra["token"] = parts[2]
    access_log.info("%s %s %d", request.method, path, status, extra=extra)


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    service: Judge0Service = app.state.service
    await service.start()
    try:
        yield
    finally:
        await service.stop()


async def _guard(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    """Every request: the auth token checked, the body's declared size capped, a line
    in the access log."""
    cfg: Settings = request.app.state.service.settings
    if not authenticated(request, cfg):
        return Response(status_code=401)
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > cfg.max_request_bytes:
        return error(413, f"request body over {cfg.max_request_bytes} bytes")
    try:
        response = await call_next(request)
    except NotUtf8:
        response = error(400, NOT_UTF8)
    _access(request, response.status_code)
    return response


async def _not_utf8(request: Request, exc: Exception) -> JSONResponse:
    return error(400, NOT_UTF8)


async def _store_unavailable(request: Request, exc: Exception) -> JSONResponse:
    log.warning("store unavailable on %s: %s", request.url.path, exc)
    return error(503, "the database is unavailable; try again")


async def _internal(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s", request.url.path)
    return error(500, f"internal error: {type(exc).__name__}")


def create_app(settings: Settings | None = None) -> FastAPI:
    """The Judge0-compatible application (serve it with uvicorn)."""
    cfg = settings or Settings()
    app = FastAPI(
        title="sandboxkit (Judge0 CE compatible)",
        version=__version__,
        lifespan=_lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.service = Judge0Service(cfg)
    app.middleware("http")(_guard)
    # outermost: preflights and every answer (401s too) carry CORS headers, as Judge0's
    # rack-cors does
    app.add_middleware(
        CORSMiddleware,
        allow_origins=list(cfg.cors_origins),
        allow_methods=["GET", "POST", "PUT", "DELETE", "OPTIONS", "HEAD"],
        allow_headers=["*"],
        expose_headers=["*"],
        max_age=86400,
    )
    app.add_exception_handler(NotUtf8, _not_utf8)
    app.add_exception_handler(StoreUnavailable, _store_unavailable)
    app.add_exception_handler(Exception, _internal)
    for area in (system, health, auth, languages, submissions):
        app.include_router(area.router)
    if cfg.piston is not None:
        piston = piston_router(cfg.piston, pool=cfg.pool, auth_token=cfg.auth_token)
        app.include_router(piston, prefix="/api/v2")
    return app
