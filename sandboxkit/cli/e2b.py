"""``sandboxkit e2b``: the E2B-compatible server (the ``e2b`` extra, imported when it runs)."""

from __future__ import annotations

import asyncio
import os

import typer

from .._errors import SandboxkitError
from .._validate import is_loopback
from ._common import console, needs_extra


def e2b(
    host: str = typer.Option("127.0.0.1", "--host", help="address to bind (loopback by default)"),
    port: int = typer.Option(3000, "--port", help="the control plane (E2B_API_URL)"),
    sandbox_port: int = typer.Option(
        49983, "--sandbox-port", help="envd and the code interpreter (E2B_SANDBOX_URL)"
    ),
    api_key: list[str] = typer.Option(
        [], "--api-key", help="an accepted E2B_API_KEY (repeat; mandatory beyond loopback)"
    ),
    max_sandboxes: int = typer.Option(64, "--max-sandboxes", min=1, help="past it: 429"),
    pool_size: int = typer.Option(
        2, "--pool-size", min=0, max=64, help="warm sandboxes of each template"
    ),
    template: list[str] = typer.Option(
        [],
        "--template",
        help="NAME=LANGUAGE: a template id over a sandboxkit language, in E2B's shape (repeat)",
    ),
    runtime: str = typer.Option(
        "runc", "--runtime", help="runc, or runsc (gVisor: the stronger wall; user='root' works)"
    ),
) -> None:
    """Serve E2B's API: the unmodified e2b SDKs run on sandboxkit (docs/e2b.md)."""
    with needs_extra("e2b", "sandboxkit e2b"):
        from ..e2b import Settings, serve
        from ..e2b._templates import parse_template_flag, resolve
    if runtime not in ("runc", "runsc"):
        console.print(f"[red]error:[/red] --runtime {runtime}: runc or runsc")
        raise typer.Exit(2)
    try:
        templates = resolve(dict(parse_template_flag(t) for t in template))
    except SandboxkitError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    keys = [*api_key, *filter(None, os.environ.get("SANDBOXKIT_E2B_API_KEYS", "").split(","))]
    if not is_loopback(host) and not keys:
        console.print(f"[red]error:[/red] --host {host} is not loopback: give --api-key too")
        raise typer.Exit(2)

    async def main() -> None:
        from .._sandbox_pool import SandboxPool

        languages = sorted({t.language for t in templates.values()})
        async with SandboxPool(
            languages=languages,
            size=pool_size,
            runtime="runsc" if runtime == "runsc" else "runc",
        ) as pool:
            settings = Settings(
                host=host,
                port=port,
                sandbox_port=sandbox_port,
                api_keys=keys,
                max_sandboxes=max_sandboxes,
                pool=pool,
                templates=templates,
            )
            console.print(
                f"E2B_API_URL=http://{host}:{port} E2B_SANDBOX_URL=http://{host}:{sandbox_port}"
            )
            await serve(settings)

    try:
        asyncio.run(main())
    except SandboxkitError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        pass


def register(app: typer.Typer) -> None:
    app.command("e2b", short_help="Serve E2B's API: the e2b SDKs run on sandboxkit.")(e2b)
