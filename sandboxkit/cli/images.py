"""``sandboxkit images build|list|prune|bootstrap``."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Annotated

import typer
from rich.table import Table

from .._backends import Backend, connect
from .._errors import ImageError
from .._fleet.labels import LABEL_LANGUAGE
from .._images.dockerfile import BASE_IMAGE, base_image
from .._images.ensure import bootstrap_base, context_for, ensure_image
from .._languages import REGISTRY, LanguageSpec, get_language
from ._common import console, run_async

app = typer.Typer(help="Manage sandbox images.", no_args_is_help=True, rich_markup_mode=None)


def _with_wings() -> None:
    """Register the wings' own images (the E2B server's templates) when their extra is
    installed: built with the rest, listed as current, kept by prune."""
    with contextlib.suppress(ImportError):
        import sandboxkit.e2b  # noqa: F401 - importing it registers its templates


@app.command(short_help="Build the base image from this machine's Debian mirror.")
def bootstrap(
    force: Annotated[bool, typer.Option("--force", help="rebuild even if the base exists")] = False,
) -> None:
    """Build the base image from this machine's Debian mirror (no registry needed)."""

    async def go() -> None:
        engine = connect()
        try:
            if not force and await engine.image_exists(BASE_IMAGE):
                console.print(f"{BASE_IMAGE} is present")
                return
            await bootstrap_base(engine, on_line=lambda line: console.print(f"  {line}"))
            console.print(f"[green]built {BASE_IMAGE}[/green]")
        finally:
            await engine.close()

    run_async(go())


class _Progress:
    """Build output: a spinner with the latest line on a terminal, plain lines otherwise.

    ``Step n/m`` lines are always kept on screen, so a terminal shows where a build is
    and a CI log shows everything.
    """

    def __init__(self, quiet: bool, prefix: str = "") -> None:
        self.quiet = quiet
        self.prefix = prefix
        spin = not quiet and not prefix and console.is_terminal
        self.status = console.status("") if spin else None

    def __enter__(self) -> _Progress:
        if self.status is not None:
            self.status.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.status is not None:
            self.status.stop()

    def line(self, text: str) -> None:
        if self.quiet or not text.strip():
            return
        if self.status is None or text.startswith("Step "):
            console.print(f"  {self.prefix}{text}", markup=False, highlight=False)
        if self.status is not None:
            self.status.update(text[:120], spinner="dots")


@app.command(short_help="Build the images of LANGUAGES (missing or changed ones).")
def build(
    languages: Annotated[
        list[str] | None, typer.Argument(help="languages to build (default: all)")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no build output")] = False,
    jobs: Annotated[
        int, typer.Option("--jobs", "-j", min=1, max=8, help="images built at the same time")
    ] = 1,
) -> None:
    """Build the images of LANGUAGES (only what is missing or changed)."""
    _with_wings()
    names = languages or REGISTRY.names()

    async def one(engine: Backend, spec: LanguageSpec, gate: asyncio.Semaphore) -> bool:
        async with gate:
            console.print(f"[bold]{spec.name}[/bold] → {context_for(spec).tag}")
            started = time.monotonic()
            try:
                # parallel builds interleave: prefix their lines, no spinner
                with _Progress(quiet, prefix=f"{spec.name}: " if jobs > 1 else "") as progress:
                    tag = await ensure_image(engine, spec, progress.line)
            except ImageError as exc:
                console.print(f"  [red]{spec.name} failed[/red]: {exc}")
                return False
            took = time.monotonic() - started
            console.print(f"  [green]ready[/green] {tag} ({took:.1f} s)")
            return True

    async def go() -> None:
        specs = [get_language(name) for name in names]  # unknown names fail before any build
        engine = connect()
        try:
            gate = asyncio.Semaphore(jobs)
            done = await asyncio.gather(*(one(engine, spec, gate) for spec in specs))
        finally:
            await engine.close()
        failed = [spec.name for spec, ok in zip(specs, done, strict=True) if not ok]
        if failed:
            raise ImageError(
                f"could not build: {', '.join(failed)} (see the log above); fix the specs "
                "or the package mirror and run `sandboxkit images build` again"
            )

    run_async(go())


async def _current_tags() -> set[str]:
    _with_wings()
    specs = [get_language(n) for n in REGISTRY.names()]
    return {context_for(s).tag for s in specs} | {base_image(s.suite) for s in specs}


@app.command("list")
def list_() -> None:
    """List sandboxkit images; "stale" ones no current spec uses."""

    async def go() -> None:
        engine = connect()
        try:
            current = await _current_tags()
            known = set(REGISTRY.names())
            table = Table()
            table.add_column("image", no_wrap=True)
            table.add_column("size", no_wrap=True, justify="right")
            table.add_column("state", no_wrap=True)
            states: set[str] = set()
            for img in await engine.list_images("sandboxkit/*"):
                language = img.labels.get(LABEL_LANGUAGE, "")
                if img.tag in current:
                    state = "current"
                elif language in known:
                    state = "stale"
                else:
                    state = "custom"
                states.add(state)
                table.add_row(img.tag, f"{img.size / 1e6:.0f} MB", state)
            console.print(table)
            if "stale" in states:
                console.print("stale: built from an older spec; `sandboxkit images prune` removes")
            if "custom" in states:
                console.print(
                    "custom: a language this process does not register (your own spec); "
                    "`sandboxkit images prune --unknown` removes"
                )
        finally:
            await engine.close()

    run_async(go())


@app.command(short_help="Remove images no current spec uses (keeps the base).")
def prune(
    unknown: Annotated[
        bool,
        typer.Option(
            "--unknown",
            help="also remove images of languages not registered here (user-defined specs)",
        ),
    ] = False,
) -> None:
    """Remove sandboxkit images that no current spec uses (keeps the base)."""

    async def go() -> None:
        engine = connect()
        try:
            current = await _current_tags()
            known = set(REGISTRY.names())
            removed = 0
            for img in await engine.list_images("sandboxkit/*"):
                language = img.labels.get(LABEL_LANGUAGE, "")
                if not language or (language not in known and not unknown):
                    continue
                if img.tag not in current:
                    await engine.remove_image(img.tag)
                    console.print(f"removed {img.tag}")
                    removed += 1
            console.print(f"{removed} image(s) removed")
        finally:
            await engine.close()

    run_async(go())
