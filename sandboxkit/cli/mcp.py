"""``sandboxkit mcp``: the MCP server (the ``mcp`` extra, imported only when it runs)."""

from __future__ import annotations

import asyncio

import typer

from .._egress.policy import Egress
from .._errors import SandboxkitError
from ._common import console, needs_extra


def mcp(
    transport: str = typer.Option("stdio", "--transport", help="stdio | http (streamable HTTP)"),
    host: str = typer.Option("127.0.0.1", "--host", help="HTTP: address to bind (loopback)"),
    port: int = typer.Option(8765, "--port", help="HTTP: TCP port"),
    auth_token: str | None = typer.Option(
        None,
        "--auth-token",
        envvar="SANDBOXKIT_MCP_TOKEN",
        help="HTTP: require 'Authorization: Bearer TOKEN' (mandatory beyond loopback)",
    ),
    timeout: float = typer.Option(10.0, "--timeout", help="a run's default wall seconds"),
    max_timeout: float = typer.Option(60.0, "--max-timeout", help="larger timeouts are clamped"),
    memory: int = typer.Option(256, "--memory", help="MB of memory per sandbox"),
    max_output: int = typer.Option(100_000, "--max-output", help="bytes kept per stream"),
    sessions_per_client: int = typer.Option(4, "--sessions-per-client", min=0),
    max_sessions: int = typer.Option(16, "--max-sessions", min=0, help="sessions in all"),
    idle_timeout: float = typer.Option(600.0, "--idle-timeout", help="seconds a session may idle"),
    warm: list[str] = typer.Option(["python"], "--warm", help="languages kept warm"),
    pool_size: int = typer.Option(1, "--pool-size", min=0, max=64, help="warm per language"),
    allow_domain: list[str] | None = typer.Option(
        None,
        "--allow-domain",
        metavar="DOMAIN",
        help="a host name (or *.suffix) every sandbox may reach over HTTP(S) (repeat); "
        "default: no network",
    ),
    deny_domain: list[str] | None = typer.Option(
        None, "--deny-domain", metavar="DOMAIN", help="refused even when allowed (repeat)"
    ),
) -> None:
    """Serve sandboxkit's tools over MCP (stdio by default; --transport http)."""
    with needs_extra("mcp", "sandboxkit mcp"):
        from ..mcp import Caps, serve_http, serve_stdio
    if transport not in ("stdio", "http"):
        console.print("[red]error:[/red] --transport must be stdio or http")
        raise typer.Exit(2)
    try:
        network = (
            Egress(allow=allow_domain or [], deny=deny_domain or [])
            if allow_domain or deny_domain
            else None
        )
        caps = Caps(
            default_timeout=min(timeout, max_timeout),
            max_timeout=max_timeout,
            memory_mb=memory,
            output_bytes=max_output,
            sessions_per_client=sessions_per_client,
            max_sessions=max_sessions,
            idle_timeout=idle_timeout,
        )
        if transport == "stdio":
            asyncio.run(serve_stdio(caps, warm=tuple(warm), pool_size=pool_size, network=network))
        else:
            asyncio.run(
                serve_http(
                    caps,
                    host=host,
                    port=port,
                    token=auth_token or None,
                    warm=tuple(warm),
                    pool_size=pool_size,
                    network=network,
                )
            )
    except SandboxkitError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    except ValueError as exc:  # pydantic: a nonsense cap
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None


def register(app: typer.Typer) -> None:
    app.command("mcp", short_help="Serve sandboxkit's tools over MCP (stdio or HTTP).")(mcp)
