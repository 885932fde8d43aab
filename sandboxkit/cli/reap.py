"""``sandboxkit reap``: remove sandboxes left behind by processes that died."""

from __future__ import annotations

import typer

from .._backends import connect
from .._reaper import ReapReport, reap
from ._common import console, run_async


def reap_command(
    dry_run: bool = typer.Option(False, "--dry-run", help="List what would go; remove nothing."),
) -> None:
    """Remove sandbox containers whose owning process is gone (live owners' are kept)."""

    async def go() -> ReapReport:
        engine = connect()
        try:
            return await reap(engine, dry_run=dry_run)
        finally:
            await engine.close()

    report = run_async(go())
    verb = "would remove" if dry_run else "removed"
    for cid in report.removed:
        console.print(f"{verb} {cid[:12]}")
    for cid, why in report.failed.items():
        console.print(f"[red]could not remove[/red] {cid[:12]}: {why}")
    console.print(f"{verb} {len(report.removed)}, kept {report.kept} (owner alive)")
    if report.failed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("reap")(reap_command)
