"""Piston's v2 routes (api/src/api/v2.js): runtimes, execute, packages and the
interactive WebSocket, as an :class:`APIRouter` to mount at ``/api/v2``.

Errors answer ``{"message": ...}`` with Piston's statuses: 400 for a request that cannot
run, 415 for a body that is not JSON, 429 past the rate limit (when on), 403 for package
changes the operator has not allowed.
"""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI, Request, WebSocket
from fastapi.responses import JSONResponse

from .._sandbox_pool import SandboxPool
from ._connect import serve_connection
from ._job import JobError, check_request, parse_job
from ._service import PackageError, PistonService
from ._settings import PistonSettings

# Piston answers 415 unless the body is JSON; the public instance (and so the clients
# written for it, piston-client among them: node-fetch sends its JSON string as
# text/plain) read JSON whatever the type said. Both are honoured: a type that cannot
# carry JSON is refused.
_JSON_TYPES = ("application/json", "text/plain", "")
POLICY_VIOLATION = 1008


def _message(status: int, message: str) -> JSONResponse:
    return JSONResponse({"message": message}, status_code=status)


async def _json_body(request: Request) -> Any:
    """The request's JSON body, or a JSONResponse saying why there is none."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind not in _JSON_TYPES and not kind.endswith("+json"):
        return _message(415, "requests must be of type application/json")
    try:
        return json.loads(await request.body())
    except ValueError as exc:
        return _message(400, f"the request body is not JSON: {exc}")


def _token_ok(given: str, token: str | None) -> bool:
    return token is None or hmac.compare_digest(given.encode(), token.encode())


def create_router(
    settings: PistonSettings | None = None,
    *,
    pool: SandboxPool | None = None,
    auth_token: str | None = None,
) -> APIRouter:
    """Piston's v2 API as a router (mount it with ``prefix="/api/v2"``); its lifespan
    makes and closes the sandbox pool it runs in (``pool``: one of yours, left open).

    ``auth_token``: the X-Auth-Token every WebSocket handshake must carry (header or
    query parameter); HTTP routes are guarded by the application that mounts them."""
    service = PistonService(settings or PistonSettings(), pool)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    router = APIRouter(lifespan=lifespan)

    @router.get("/runtimes")
    async def runtimes() -> list[dict[str, object]]:
        return [rt.row() for rt in await service.runtimes()]

    @router.post("/execute")
    async def execute(request: Request) -> JSONResponse:
        body = await _json_body(request)
        if isinstance(body, JSONResponse):
            return body
        limiter = service.limiter
        client = request.client.host if request.client else ""
        if limiter is not None and not limiter.admit(client, time.monotonic()):
            return _message(429, limiter.message)
        try:
            check_request(body)  # before the runtimes are asked for, as Piston orders it
            job = parse_job(body, await service.runtimes(), service.settings)
            return JSONResponse(await service.execute(job))
        except JobError as exc:
            return _message(400, exc.message)

    @router.get("/packages")
    async def packages() -> list[dict[str, Any]]:
        return await service.packages()

    async def _package(
        request: Request, change: Callable[[object], Awaitable[dict[str, Any]]]
    ) -> JSONResponse:
        """An install or a removal: its JSON body, the change, Piston's answer."""
        body = await _json_body(request)
        if isinstance(body, JSONResponse):
            return body
        try:
            return JSONResponse(await change(body))
        except PackageError as exc:
            return _message(exc.status, exc.message)

    @router.post("/packages")
    async def install(request: Request) -> JSONResponse:
        return await _package(request, service.install)

    @router.delete("/packages")
    async def uninstall(request: Request) -> JSONResponse:
        return await _package(request, service.uninstall)

    @router.websocket("/connect")
    async def connect(ws: WebSocket) -> None:
        given = ws.headers.get("x-auth-token") or ws.query_params.get("X-Auth-Token", "")
        if not _token_ok(given, auth_token):
            await ws.close(POLICY_VIOLATION)
            return
        await serve_connection(ws, service)

    return router
