"""Helpers shared by the commands: run a coroutine, print errors the same way, show an
image built on first use."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from enum import Enum
from typing import Annotated, Any, Literal, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.status import Status

from .._errors import SandboxkitError
from .._images.ensure import BASE, BuildProgress, build_hook

T = TypeVar("T")


class LogFormatChoice(str, Enum):
    text = "text"
    json = "json"


LogFormatOpt = Annotated[
    LogFormatChoice,
    typer.Option(
        "--log-format",
        help="text, or json: one object a line, with the token on every line about one",
    ),
]


def log_format_of(value: LogFormatChoice) -> Literal["text", "json"]:
    return "json" if value is LogFormatChoice.json else "text"


console = Console(stderr=True)


@contextmanager
def needs_extra(extra: str, what: str) -> Iterator[None]:
    """Imports inside the block that fail for want of ``extra``'s packages exit 1 with
    the pip command that installs it; any other ImportError propagates (a bug)."""
    from .._cli_entry import install_hint, missing_extra

    try:
        yield
    except ImportError as exc:
        if not missing_extra(exc, extra):
            raise
        typer.echo(install_hint(extra, what), err=True)
        raise typer.Exit(1) from None


def require_postgres_driver(db: str, what: str) -> None:
    """Exit 1 naming the ``postgres`` extra when ``db`` is a PostgreSQL URL and the
    driver is missing (checked before anything starts; the server extra is there)."""
    from ..server._store import is_postgres_url

    if is_postgres_url(db):
        with needs_extra("postgres", what):
            import asyncpg  # noqa: F401


class BuildStatus:
    """Images built on first use, on stderr: a line when a build starts and when it ends,
    and between them a spinner with the step and the seconds on a terminal (each ``Step
    n/m`` as a plain line elsewhere, e.g. in a CI log)."""

    def __init__(self, out: Console | None = None) -> None:
        self.console = out or console
        self.status: Status | None = None
        self.steps: dict[str, str] = {}  # tag -> its latest step, for builds under way

    def __call__(self, p: BuildProgress) -> None:
        out = self.console
        if p.kind == "start":
            what = "the base image" if p.language == BASE else f"the {p.language} image"
            out.print(
                f"[bold]sandboxkit:[/bold] building {what} {escape(p.tag)} "
                f"({escape(p.text)}; {p.estimate})",
                highlight=False,
            )
            self.steps[p.tag] = "starting"
            if out.is_terminal and self.status is None:
                self.status = out.status(f"building {escape(p.tag)}", spinner="dots")
                self.status.start()
        elif p.kind == "step":
            self.steps[p.tag] = p.text.split(":", 1)[0].strip().lower()
            if self.status is None:
                out.print(f"  {p.text}", markup=False, highlight=False)
        elif p.kind in ("done", "failed"):
            self.steps.pop(p.tag, None)
            if p.kind == "done":
                out.print(f"  [green]built[/green] {escape(p.tag)} in {p.elapsed:.0f} s")
            else:
                out.print(f"  [red]building {escape(p.tag)} failed[/red] after {p.elapsed:.0f} s")
            if not self.steps:
                self.stop()
            return
        if self.status is not None:
            line = " ".join(p.text.split())[:70] if p.kind == "line" else ""
            self.status.update(
                f"building {escape(p.tag)}: {self.steps.get(p.tag, '')}, {p.elapsed:.0f} s"
                + (f" [dim]{escape(line)}[/dim]" if line else "")
            )

    def stop(self) -> None:
        if self.status is not None:
            self.status.stop()
            self.status = None


@contextmanager
def image_build_status(out: Console | None = None) -> Iterator[None]:
    """Show images built on first use inside the block (:class:`BuildStatus`) instead of
    logging them: what ``run_async`` does for every command."""
    shown = BuildStatus(out)
    try:
        with build_hook(shown):
            yield
    finally:
        shown.stop()


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro``; a SandboxkitError becomes a red message and exit status 2. An image
    built on first use meanwhile shows as a status line (:func:`image_build_status`)."""
    try:
        with image_build_status():
            return asyncio.run(coro)
    except SandboxkitError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None


# the Judge0 server's and its workers' network for enable_network submissions
AllowNetworkOpt = Annotated[
    bool,
    typer.Option(
        "--allow-network",
        help="honour enable_network: such submissions get the --network-allow policy, "
        "else the engine's whole bridge",
    ),
]
NetworkAllowOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--network-allow",
        metavar="DOMAIN",
        help="with --allow-network: a host name (or *.suffix) an enable_network "
        "submission may reach over HTTP(S) (repeat), instead of the whole bridge",
    ),
]
