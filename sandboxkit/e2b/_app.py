"""The two listeners of ``sandboxkit e2b``: the control plane (``E2B_API_URL``, API key
checked) and the sandbox address (``E2B_SANDBOX_URL``): envd's Connect services and file
routes, and the code interpreter when ``E2b-Sandbox-Port`` names port 49999."""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from e2b.envd.filesystem.filesystem_connect import FilesystemASGIApplication
from e2b.envd.process.process_connect import ProcessASGIApplication
from fastapi import FastAPI, Request
from fastapi.responses import Response

from .._languages import LanguageSpec
from .._sandbox_pool import SandboxPool
from ._access import refusal, signed_by
from ._control import control_router, error
from ._envd import FilesystemService, ProcessService
from ._files import files_router
from ._interpreter import interpreter_router
from ._registry import Registry
from ._templates import Template, resolve

JUPYTER_PORT = "49999"
Scope = dict[str, Any]
ASGI = Callable[[Scope, Any, Any], Awaitable[None]]


@dataclass
class Settings:
    host: str = "127.0.0.1"
    port: int = 3000
    sandbox_port: int = 49983
    api_keys: Sequence[str] = field(default_factory=tuple)
    max_sandboxes: int = 64
    pool: SandboxPool | None = None
    # template ids beyond ``base`` and ``code-interpreter-v1``: each a sandboxkit language
    # (by name or spec) in E2B's shape (see _templates); an id given replaces a built-in
    templates: Mapping[str, str | LanguageSpec | Template] = field(default_factory=dict)


def api_app(registry: Registry, api_keys: Sequence[str]) -> FastAPI:
    """The control plane. Sandboxes live as long as the registry (started and closed by
    whoever runs both apps), not as long as this app."""
    app = FastAPI(title="sandboxkit e2b", docs_url=None, redoc_url=None, openapi_url=None)
    keys = [k.encode() for k in api_keys]

    @app.middleware("http")
    async def check_key(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        if keys and request.url.path != "/health":
            given = (request.headers.get("x-api-key") or "").encode()
            # compare with every key in constant time: no early exit tells which matched
            if not any([hmac.compare_digest(given, k) for k in keys]):
                return error(401, "Invalid API key, it must start with 'e2b_' prefix")
        return await call_next(request)

    app.include_router(control_router(registry))
    return app


def sandbox_app(registry: Registry) -> ASGI:
    """One address for every sandbox: routed by ``E2b-Sandbox-Port`` and path."""
    process = ProcessASGIApplication(ProcessService(registry))  # type: ignore[arg-type]
    filesystem = FilesystemASGIApplication(FilesystemService(registry))  # type: ignore[arg-type]
    files = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    files.include_router(files_router(registry))
    interpreter = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    interpreter.include_router(interpreter_router(registry))

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await files(scope, receive, send)
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        path = scope.get("path", "")
        on_interpreter = headers.get(b"e2b-sandbox-port", b"").decode() == JUPYTER_PORT
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        entry = registry.get(headers.get(b"e2b-sandbox-id", b"").decode("latin-1"))
        if entry is None and b"e2b-sandbox-id" not in headers and not on_interpreter:
            # a signed file URL opened by any client, without the SDK's headers
            entry = signed_by(registry.all(), scope.get("method", ""), path, query)
            if entry is not None:
                scope = _with_sandbox(scope, entry.sandbox_id)
            elif "signature" in query:  # signed by no sandbox's token: envd's refusal
                return await error(401, "invalid signature")(scope, receive, send)
        if entry is not None:  # an unknown sandbox: each route answers as E2B's proxy does
            why = refusal(
                entry.access_token,
                scope.get("method", ""),
                path,
                headers,
                query,
                interpreter=on_interpreter,
            )
            if why is not None:
                return await error(401, why)(scope, receive, send)
        if on_interpreter:
            await interpreter(scope, receive, send)
        elif path.startswith("/process.Process/"):
            await process(scope, receive, send)
        elif path.startswith("/filesystem.Filesystem/"):
            await filesystem(scope, receive, send)
        else:
            await files(scope, receive, send)

    return app


def _with_sandbox(scope: Scope, sandbox_id: str) -> Scope:
    """``scope`` as if the SDK had named the sandbox in ``E2b-Sandbox-Id``."""
    headers = [*scope.get("headers", []), (b"e2b-sandbox-id", sandbox_id.encode("latin-1"))]
    return {**scope, "headers": headers}


@asynccontextmanager
async def running_registry(settings: Settings) -> AsyncIterator[Registry]:
    registry = Registry(settings.pool, settings.max_sandboxes, resolve(settings.templates))
    await registry.start()
    try:
        yield registry
    finally:
        await registry.close()


async def serve(settings: Settings, started: asyncio.Event | None = None) -> None:
    """Run both listeners until cancelled; every sandbox is killed on the way out."""
    import uvicorn

    async with running_registry(settings) as registry:
        servers = [
            uvicorn.Server(
                uvicorn.Config(
                    app, host=settings.host, port=port, log_level="warning", lifespan="off"
                )
            )
            for app, port in (
                (api_app(registry, settings.api_keys), settings.port),
                (sandbox_app(registry), settings.sandbox_port),
            )
        ]
        tasks = [asyncio.create_task(s.serve()) for s in servers]
        if started is not None:
            # uvicorn's Server says it is listening by a flag only: no event to await
            while not all(s.started for s in servers):  # noqa: ASYNC110
                await asyncio.sleep(0.02)
            started.set()
        try:
            await asyncio.gather(*tasks)
        finally:
            for s in servers:
                s.should_exit = True
            await asyncio.gather(*tasks, return_exceptions=True)
