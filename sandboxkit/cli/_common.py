"""Helpers shared by the commands: run a coroutine, print errors the same way."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from enum import Enum
from typing import Annotated, Any, Literal, TypeVar

import typer
from rich.console import Console

from .._errors import SandboxkitError

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


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro``; a SandboxkitError becomes a red message and exit status 2."""
    try:
        return asyncio.run(coro)
    except SandboxkitError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
