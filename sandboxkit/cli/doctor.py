"""``sandboxkit doctor``: is everything a run needs here, and what to do if not."""

from __future__ import annotations

import shutil

import typer
from rich.table import Table

from .._backends import HOW_TO_START, connect
from .._dockerfile import BASE_IMAGE, build_context
from .._errors import SandboxkitError
from .._images import debian_mirror
from .._languages import REGISTRY, get_language
from ._common import console, run_async


def doctor() -> None:
    """Check the engine, runtimes, cgroups and images; say how to fix each problem."""

    async def go() -> bool:
        table = Table("check", "state", "what to do")
        ok = True
        engine = connect()
        try:
            try:
                version = await engine.version()
                info = await engine.info()
            except SandboxkitError as exc:
                table.add_row("engine", f"[red]unreachable[/red] ({exc})", HOW_TO_START)
                console.print(table)
                return False
            table.add_row(
                "engine", f"Docker {version.get('Version')} (API {version.get('ApiVersion')})", ""
            )
            table.add_row(
                "cgroup", f"v{info.get('CgroupVersion', '?')} ({info.get('CgroupDriver', '?')})", ""
            )
            runtimes = sorted((info.get("Runtimes") or {}).keys())
            gvisor = "runsc" in runtimes
            table.add_row(
                "runtimes",
                ", ".join(runtimes),
                "" if gvisor else "optional: install runsc and run scripts/engine-up.sh",
            )
            base = await engine.image_exists(BASE_IMAGE)
            ok &= base
            table.add_row(
                "base image",
                BASE_IMAGE if base else "[red]missing[/red]",
                "" if base else "sudo sandboxkit images bootstrap",
            )
            table.add_row(
                "debian mirror",
                debian_mirror() or "[yellow]none found[/yellow]",
                "" if debian_mirror() else "set SANDBOXKIT_DEBIAN_MIRROR",
            )
            table.add_row(
                "debootstrap",
                "yes" if shutil.which("debootstrap") else "no",
                "" if shutil.which("debootstrap") else "apt-get install debootstrap",
            )
            for name in REGISTRY.names():
                tag = build_context(get_language(name)).tag
                present = await engine.image_exists(tag)
                table.add_row(
                    f"image {name}",
                    tag if present else "not built yet",
                    "" if present else f"sandboxkit images build {name} (or first run)",
                )
        finally:
            await engine.close()
        console.print(table)
        return ok

    if not run_async(go()):
        raise typer.Exit(1)
