"""``sandboxkit images build|list|prune|bootstrap``."""

from __future__ import annotations

import typer
from rich.table import Table

from .._dockerfile import BASE_IMAGE, build_context
from .._engine import Engine
from .._images import bootstrap_base, ensure_image
from .._languages import REGISTRY, get_language
from ._common import console, run_async

app = typer.Typer(help="Manage sandbox images.", no_args_is_help=True)


@app.command()
def bootstrap(
    force: bool = typer.Option(False, "--force", help="rebuild even if the base exists"),
) -> None:
    """Build the base image from this machine's Debian mirror (no registry needed)."""

    async def go() -> None:
        engine = Engine()
        try:
            if not force and await engine.image_exists(BASE_IMAGE):
                console.print(f"{BASE_IMAGE} is present")
                return
            await bootstrap_base(engine, on_line=lambda line: console.print(f"  {line}"))
            console.print(f"[green]built {BASE_IMAGE}[/green]")
        finally:
            await engine.close()

    run_async(go())


@app.command()
def build(
    languages: list[str] = typer.Argument(None, help="languages (default: all)"),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Build the images of LANGUAGES (only what is missing or changed)."""
    names = languages or REGISTRY.names()

    async def go() -> None:
        engine = Engine()
        try:
            for name in names:
                spec = get_language(name)
                console.print(f"[bold]{spec.name}[/bold] → {build_context(spec).tag}")
                on_line = None if quiet else (lambda line: console.print(f"  {line}", markup=False, highlight=False))
                tag = await ensure_image(engine, spec, on_line)
                console.print(f"  [green]ready[/green] {tag}")
        finally:
            await engine.close()

    run_async(go())


@app.command("list")
def list_() -> None:
    """List sandboxkit images, marking the ones current specs use."""

    async def go() -> None:
        engine = Engine()
        try:
            current = {build_context(get_language(n)).tag for n in REGISTRY.names()}
            table = Table("image", "size", "current")
            for img in await engine.list_images("sandboxkit/*"):
                for tag in img.get("RepoTags") or []:
                    mark = "yes" if tag in current or tag == BASE_IMAGE else "stale"
                    table.add_row(tag, f"{img.get('Size', 0) / 1e6:.0f} MB", mark)
            console.print(table)
        finally:
            await engine.close()

    run_async(go())


@app.command()
def prune() -> None:
    """Remove sandboxkit images that no current spec uses."""

    async def go() -> None:
        engine = Engine()
        try:
            current = {build_context(get_language(n)).tag for n in REGISTRY.names()}
            for img in await engine.list_images("sandboxkit/*"):
                for tag in img.get("RepoTags") or []:
                    if tag not in current and tag != BASE_IMAGE:
                        await engine.remove_image(tag)
                        console.print(f"removed {tag}")
        finally:
            await engine.close()

    run_async(go())
