"""``sandboxkit reap``: remove sandboxes left behind by processes that died, on every
engine named (``--engine``, ``--fleet``, ``SANDBOXKIT_FLEET``; default: the local one)."""

from __future__ import annotations

from typing import Annotated

import typer

from .._backends import Backend, EngineConfig
from .._errors import InvalidInput, SandboxkitError
from .._fleet.reaper import ReapReport, reap
from ._common import console, run_async
from .fleet import EngineOpt, FleetOpt, TlsOpt, each_engine, engines_from


def reap_command(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List what would go; remove nothing.")
    ] = False,
    engine: EngineOpt = None,
    fleet: FleetOpt = None,
    tls_dir: TlsOpt = None,
) -> None:
    """Remove sandbox containers whose owning process is gone (live owners' are kept)."""
    try:
        configs = engines_from(engine, fleet, tls_dir)
    except InvalidInput as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None

    async def one(config: EngineConfig, backend: Backend) -> ReapReport:
        return await reap(backend, dry_run=dry_run)

    reports = run_async(each_engine(configs, one))
    verb = "would remove" if dry_run else "removed"
    failed = False
    for config, report in zip(configs, reports, strict=True):
        where = f"{config.url}: " if len(configs) > 1 else ""
        if isinstance(report, SandboxkitError):
            console.print(f"[red]{where}cannot reap[/red]: {report}")
            failed = True
            continue
        for cid in report.removed:
            console.print(f"{where}{verb} {cid[:12]}")
        for cid, why in report.failed.items():
            console.print(f"[red]{where}could not remove[/red] {cid[:12]}: {why}")
        failed |= bool(report.failed)
        console.print(f"{where}{verb} {len(report.removed)}, kept {report.kept} (owner alive)")
    if failed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("reap", short_help="Remove sandboxes whose owning process is gone.")(reap_command)
