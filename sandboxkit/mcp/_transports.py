"""Serving the MCP server: stdio (default) or streamable HTTP.

HTTP binds loopback unless a bearer token is given; with a token every request must
carry ``Authorization: Bearer TOKEN`` (as ``sandboxkit serve`` asks for its token).
"""

from __future__ import annotations

import hmac
from typing import Any

from .._egress.policy import Egress
from .._errors import InvalidInput
from .._validate import is_loopback
from ._caps import Caps
from ._server import SandboxkitMCP

Scope = dict[str, Any]


def check_bind(host: str, token: str | None) -> None:
    """Refuse to serve beyond loopback without a token: anyone reaching it runs code."""
    if not is_loopback(host) and not token:
        raise InvalidInput(
            f"refusing to bind {host} without a bearer token: anyone who reaches it could "
            "run code. Give --auth-token (or SANDBOXKIT_MCP_TOKEN), or bind 127.0.0.1"
        )


class BearerAuth:
    """ASGI middleware: HTTP requests need ``Authorization: Bearer <token>``."""

    def __init__(self, app: Any, token: str) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope.get("type") == "http":
            given = dict(scope.get("headers") or []).get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                await send(
                    {
                        "type": "http.response.start",
                        "status": 401,
                        "headers": [
                            (b"content-type", b"text/plain"),
                            (b"www-authenticate", b"Bearer"),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": b"missing or wrong token\n"})
                return
        await self.app(scope, receive, send)


async def serve_stdio(
    caps: Caps, *, warm: tuple[str, ...], pool_size: int, network: Egress | None = None
) -> None:
    async with SandboxkitMCP(caps, warm=warm, pool_size=pool_size, network=network) as app:
        await app.server.run_stdio_async()


def http_app(app: SandboxkitMCP, *, host: str, token: str | None) -> Any:
    """The ASGI application: the SDK's streamable HTTP app at ``/mcp``, behind a token."""
    from mcp.server.transport_security import TransportSecuritySettings

    security = None
    if not is_loopback(host):
        # beyond loopback the token is the guard; DNS-rebinding checks are for loopback
        security = TransportSecuritySettings(enable_dns_rebinding_protection=False)
    asgi = app.server.streamable_http_app(
        host=host,
        transport_security=security,
        session_idle_timeout=app.caps.idle_timeout,
    )
    return BearerAuth(asgi, token) if token else asgi


async def serve_http(
    caps: Caps,
    *,
    host: str,
    port: int,
    token: str | None,
    warm: tuple[str, ...],
    pool_size: int,
    log_level: str = "warning",
    network: Egress | None = None,
) -> None:
    import uvicorn

    check_bind(host, token)
    async with SandboxkitMCP(caps, warm=warm, pool_size=pool_size, network=network) as app:
        asgi = http_app(app, host=host, token=token)
        config = uvicorn.Config(asgi, host=host, port=port, log_level=log_level)
        await uvicorn.Server(config).serve()
