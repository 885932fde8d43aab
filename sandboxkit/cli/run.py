"""``sandboxkit run FILE``: run a file in a sandbox, streaming its output live."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from .._default import aclose
from .._languages import REGISTRY
from .._models import Limits
from .._sandbox import Sandbox
from ._common import console, run_async

_EXTENSIONS = {
    ".py": "python",
    ".js": "javascript",
    ".mjs": "javascript",
    ".ts": "typescript",
    ".c": "c",
    ".cc": "cpp",
    ".cpp": "cpp",
    ".cxx": "cpp",
    ".java": "java",
    ".go": "go",
    ".rs": "rust",
    ".rb": "ruby",
    ".sh": "bash",
}


def guess_language(path: Path) -> str:
    lang = _EXTENSIONS.get(path.suffix.lower())
    if lang is None or lang not in REGISTRY.names():
        raise typer.BadParameter(f"cannot tell the language of {path.name}; pass --lang")
    return lang


def run(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="source file to run"),
    lang: str | None = typer.Option(None, "--lang", "-l", help="language (default: by extension)"),
    stdin: Path | None = typer.Option(None, "--stdin", exists=True, dir_okay=False),
    time: float = typer.Option(10.0, "--time", help="wall-clock limit, seconds"),
    memory: int = typer.Option(256, "--memory", help="memory limit, MB"),
) -> None:
    """Run FILE in a fresh sandbox; output streams live; exit with the program's code."""
    language = lang or guess_language(file)
    code = file.read_text()
    data = stdin.read_bytes() if stdin is not None else None
    limits = Limits(time=time, memory_mb=memory)

    async def go() -> int:
        try:
            async for ev in Sandbox.stream(code, language=language, stdin=data, limits=limits):
                if ev.kind == "stdout":
                    sys.stdout.write(ev.data)
                    sys.stdout.flush()
                elif ev.kind == "stderr":
                    sys.stderr.write(ev.data)
                    sys.stderr.flush()
                elif ev.result is not None:
                    r = ev.result
                    if r.status != "ok":
                        console.print(
                            f"[yellow]sandboxkit:[/yellow] status {r.status}"
                            + (f", signal {r.signal}" if r.signal else "")
                            + (" (output truncated)" if r.truncated else "")
                        )
                    if r.exit_code is not None:
                        return int(r.exit_code)
                    return 128 + (r.signal or 0) if r.signal else 1
            return 1
        finally:
            await aclose()

    raise typer.Exit(run_async(go()))
