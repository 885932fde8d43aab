"""``sandboxkit fleet status``: every engine of a fleet, its state and what it holds.

The engines come from ``--engine URL`` (repeatable; ``--tls-dir`` gives docker's
``ca.pem``/``cert.pem``/``key.pem`` to the ``tcp://`` ones), ``--fleet FILE`` (JSON:
``{"engines": [URL or {"url": ..., "ca_cert": ..., "client_cert": ..., "client_key": ...,
"capacity": ...}]}``), or ``SANDBOXKIT_FLEET`` naming such a file; with none of them, the
one engine of ``DOCKER_HOST`` (with ``DOCKER_TLS_VERIFY``/``DOCKER_CERT_PATH``) or the
local socket. ``doctor`` and ``reap`` take the same options.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.table import Table

from .._backends import Backend, EngineConfig, connect, load_fleet_file
from .._errors import InvalidInput, SandboxkitError
from .._fleet.labels import LABEL_MANAGED, LABEL_OWNER
from .._fleet.reaper import orphaned
from ._common import console, run_async

T = TypeVar("T")

app = typer.Typer(
    help="Inspect the engines of a fleet.", no_args_is_help=True, rich_markup_mode=None
)

EngineOpt = Annotated[
    list[str] | None,
    typer.Option("--engine", "-e", help="an engine URL (repeat for several)"),
]
FleetOpt = Annotated[
    Path | None,
    typer.Option("--fleet", help="a JSON fleet file (default: $SANDBOXKIT_FLEET)"),
]
TlsOpt = Annotated[
    Path | None,
    typer.Option("--tls-dir", help="ca.pem, cert.pem and key.pem for the tcp:// --engine URLs"),
]
PROBE_TIMEOUT = 5.0


def engines_from(
    engine: list[str] | None, fleet: Path | None, tls_dir: Path | None
) -> list[EngineConfig]:
    """The engines the options (or the environment) name; bad ones fail here."""
    configs: list[EngineConfig] = []
    file = fleet or (
        Path(os.environ["SANDBOXKIT_FLEET"]) if os.environ.get("SANDBOXKIT_FLEET") else None
    )
    if file is not None and not engine:
        configs.extend(load_fleet_file(file))
    elif fleet is not None:
        configs.extend(load_fleet_file(fleet))
    for url in engine or []:
        if tls_dir is not None and url.startswith(("tcp://", "https://")):
            configs.append(EngineConfig.from_cert_path(url, tls_dir))
        else:
            configs.append(
                EngineConfig(url)
                if url != os.environ.get("DOCKER_HOST")
                else EngineConfig.from_env()
            )
    if not configs:
        configs.append(EngineConfig.from_env())
    seen: set[str] = set()
    unique = []
    for c in configs:
        if c.url not in seen:
            seen.add(c.url)
            unique.append(c)
    return unique


async def each_engine(
    configs: list[EngineConfig], work: Callable[[EngineConfig, Backend], Awaitable[T]]
) -> list[T | SandboxkitError]:
    """``work`` on every engine at once; an engine's failure is its entry, not a crash."""

    async def one(config: EngineConfig) -> T | SandboxkitError:
        engine = connect(config)
        try:
            return await work(config, engine)
        except SandboxkitError as exc:
            return exc
        finally:
            await engine.close()

    return list(await asyncio.gather(*(one(c) for c in configs)))


async def engine_facts(config: EngineConfig, engine: Backend) -> dict[str, Any]:
    """What ``fleet status`` shows of one engine (bounded: a silent engine is "down")."""
    try:
        await asyncio.wait_for(engine.ping(PROBE_TIMEOUT), PROBE_TIMEOUT + 1)
    except (TimeoutError, asyncio.TimeoutError):
        return {"url": config.url, "state": "down", "error": f"no answer in {PROBE_TIMEOUT:.0f}s"}
    except SandboxkitError as exc:
        return {"url": config.url, "state": "down", "error": str(exc)}
    info = await engine.info()
    containers = await engine.list_containers({LABEL_MANAGED: None})
    owners = {c.labels.get(LABEL_OWNER, "") for c in containers}
    return {
        "url": config.url,
        "state": "up",
        "tls": config.tls,
        "version": info.version,
        "api": info.api_version,
        "cpus": info.cpus,
        "memory_gb": round(info.memory_bytes / 1024**3, 1),
        "runtimes": list(info.runtimes),
        "capacity": config.capacity,
        "sandboxes": len(containers),
        "running": sum(1 for c in containers if c.state == "running"),
        "owners": len(owners - {""}),
        "orphans": sum(1 for c in containers if orphaned(c.labels)),
        "images": len(await engine.list_images("sandboxkit/*")),
    }


@app.command("status", short_help="Each engine: up or down, version, CPUs, sandboxes.")
def status(
    engine: EngineOpt = None,
    fleet: FleetOpt = None,
    tls_dir: TlsOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per engine")] = False,
) -> None:
    """Each engine: up or down (and why), version, CPUs, sandboxes (running, orphaned),
    images. Exits 1 when an engine is down."""
    try:
        configs = engines_from(engine, fleet, tls_dir)
    except InvalidInput as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    facts = run_async(each_engine(configs, engine_facts))
    rows: list[dict[str, Any]] = [
        f if isinstance(f, dict) else {"url": c.url, "state": "down", "error": str(f)}
        for c, f in zip(configs, facts, strict=True)
    ]
    if as_json:
        for row in rows:
            typer.echo(json.dumps(row))
    else:
        table = Table("engine", "state", "docker", "cpus", "sandboxes", "orphans", "images")
        for row in rows:
            if row["state"] == "up":
                table.add_row(
                    row["url"],
                    "[green]up[/green]" + (" (TLS)" if row["tls"] else ""),
                    f"{row['version']} (API {row['api']})",
                    str(row["cpus"]),
                    f"{row['sandboxes']} ({row['running']} running)",
                    str(row["orphans"]),
                    str(row["images"]),
                )
            else:
                table.add_row(row["url"], "[red]down[/red]", row["error"], "", "", "", "")
        console.print(table)
    if any(row["state"] != "up" for row in rows):
        raise typer.Exit(1)


def register(app_: typer.Typer) -> None:
    app_.add_typer(app, name="fleet")
