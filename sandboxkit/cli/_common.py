"""Helpers shared by the commands: run a coroutine, print errors the same way."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import typer
from rich.console import Console

from .._errors import SandboxkitError

T = TypeVar("T")
console = Console(stderr=True)


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro``; a SandboxkitError becomes a red message and exit status 2."""
    try:
        return asyncio.run(coro)
    except SandboxkitError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
