"""``sandboxkit run FILE``: run a file in a sandbox, streaming its output live.

The program's stdin, in order: ``--stdin F``'s bytes; else, when FILE is a file and this
command's stdin is piped or redirected (not a terminal), what arrives there, forwarded
as it arrives (``producer | sandboxkit run f.py`` works live, and a program that never
reads its stdin is not kept waiting for it to end); else nothing (end of file at once).
``-`` as FILE reads the program's code from stdin, so its own stdin is empty unless
``--stdin F`` gives one; its language must come from ``--lang``.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import sys
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import typer

from .._default import aclose
from .._egress.policy import Egress
from .._errors import InvalidInput, SandboxError
from .._languages import REGISTRY
from .._models import Event, Limits
from .._process import Process
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

CHUNK = 1 << 16
_DEFAULTS = Limits()  # the SDK's defaults are the command's
AHEAD = 16  # chunks read from the pipe ahead of the program (then the pipe waits)


def guess_language(path: Path) -> str:
    lang = _EXTENSIONS.get(path.suffix.lower())
    if lang is None or lang not in REGISTRY.names():
        raise typer.BadParameter(f"cannot tell the language of {path.name}; pass --lang")
    return lang


def _piped() -> bool:
    """Whether this command's stdin is a pipe or a file (a terminal is not forwarded)."""
    return sys.stdin is not None and not sys.stdin.closed and not sys.stdin.isatty()


def _read_stdin_thread(loop: asyncio.AbstractEventLoop, chunks: asyncio.Queue[bytes]) -> None:
    """Read this command's stdin as it arrives into ``chunks`` (b"": its end). A daemon
    thread: a pipe nobody closes must not keep the command from exiting. The file
    descriptor is read directly (``sys.stdin``'s buffer lock, held by a thread blocked
    in a read, would abort the interpreter's exit)."""
    try:
        fd = sys.stdin.fileno()
    except (AttributeError, ValueError, io.UnsupportedOperation):
        fd = None  # a stand-in stdin (tests): read it whole
    while True:
        try:
            chunk = os.read(fd, CHUNK) if fd is not None else sys.stdin.buffer.read()
        except OSError:
            chunk = b""
        try:
            asyncio.run_coroutine_threadsafe(chunks.put(chunk), loop).result()
        except Exception:  # noqa: BLE001 - the run ended, the loop with it: nothing to feed
            return
        if not chunk:
            return


async def _forward_stdin(proc: Process) -> None:
    """Feed ``proc`` this command's stdin until its end (then close the program's) or
    the program's own end."""
    loop = asyncio.get_running_loop()
    chunks: asyncio.Queue[bytes] = asyncio.Queue(maxsize=AHEAD)
    threading.Thread(
        target=_read_stdin_thread, args=(loop, chunks), name="sandboxkit-stdin", daemon=True
    ).start()
    with contextlib.suppress(SandboxError):  # the program ended: the rest is not wanted
        while chunk := await chunks.get():
            await proc.write(chunk)
        await proc.close_stdin()


async def _events(
    code: str,
    language: str,
    data: bytes | None,
    forward: bool,
    limits: Limits,
    env: dict[str, str],
    args: list[str],
    network: Egress | None = None,
) -> AsyncIterator[Event]:
    """The run's events; with ``forward``, its stdin fed from this command's as it comes."""
    if not forward:
        stream = Sandbox.stream(
            code,
            language=language,
            stdin=data,
            limits=limits,
            env=env,
            args=args,
            network=network,
        )
        async with stream as events:
            async for ev in events:
                yield ev
        return
    started = Sandbox.start(
        code, language=language, limits=limits, env=env, args=args, network=network
    )
    async with await started as proc:
        feeder = asyncio.ensure_future(_forward_stdin(proc))
        try:
            async for ev in proc:
                yield ev
        finally:
            feeder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await feeder


def _variable(item: str) -> tuple[str, str]:
    name, sep, value = item.partition("=")
    if not sep or not name:
        raise typer.BadParameter(f"{item!r} is not NAME=VALUE", param_hint="'--env'")
    return name, value


def run(
    file: str = typer.Argument(
        ...,
        metavar="FILE",
        help="source file to run, or - to read the code from stdin (then --lang is needed)",
        show_default=False,
    ),
    args: list[str] | None = typer.Argument(
        None,
        metavar="[ARGS]...",
        help="the program's arguments (put -- before them when one starts with -)",
        show_default=False,
    ),
    env: list[str] | None = typer.Option(
        None, "--env", "-e", metavar="NAME=VALUE", help="a variable for the program (repeat)"
    ),
    lang: str | None = typer.Option(None, "--lang", "-l", help="language (default: by extension)"),
    stdin: Path | None = typer.Option(
        None,
        "--stdin",
        exists=True,
        dir_okay=False,
        help="file given to the program as its stdin (default: this command's stdin when "
        "piped or redirected and FILE is not -; else empty)",
    ),
    time: float = typer.Option(_DEFAULTS.time, "--time", help="wall-clock limit, seconds"),
    memory: int = typer.Option(_DEFAULTS.memory_mb, "--memory", help="memory limit, MB"),
    allow: list[str] | None = typer.Option(
        None,
        "--allow",
        metavar="DOMAIN",
        help="a host name (or *.suffix) the program may reach over HTTP(S) (repeat); "
        "default: no network",
    ),
    deny: list[str] | None = typer.Option(
        None, "--deny", metavar="DOMAIN", help="a name refused even when --allow covers it"
    ),
) -> None:
    """Run FILE in a fresh sandbox; output streams live.

    ARGS after FILE are the program's own (`sandboxkit run f.py -- -v x`); --env NAME=VALUE
    sets a variable for it. --allow DOMAIN lets it reach that host name over HTTP(S)
    (through the egress gateway: SANDBOXKIT_EGRESS_RESOLVERS and
    SANDBOXKIT_EGRESS_ALLOW_PRIVATE configure it); by default it has no network.

    Exits with the program's exit code (128+N when signal N ended it). Piped input
    reaches the program as it arrives: `echo 5 | sandboxkit run f.py`. With - as FILE
    the code comes from stdin (`sandboxkit run - --lang python < f.py`) and the
    program's own stdin is empty unless --stdin F gives one. A compiled language's
    compiler messages are printed on stderr first.
    """
    if file == "-":
        if lang is None:
            raise typer.BadParameter(
                "the code comes from stdin (FILE is -), so its language cannot be told "
                "from a file name: pass --lang, e.g. --lang python",
                param_hint="'--lang'",
            )
        language = lang
        code = sys.stdin.read() if sys.stdin is not None else ""
    else:
        path = Path(file)
        if not path.is_file():
            what = "is a directory" if path.is_dir() else "does not exist"
            raise typer.BadParameter(f"{file} {what}", param_hint="'FILE'")
        language = lang or guess_language(path)
        code = path.read_text()
    variables = dict(_variable(item) for item in env or [])
    data = stdin.read_bytes() if stdin is not None else None
    forward = data is None and file != "-" and _piped()
    limits = Limits(time=time, memory_mb=memory)
    try:
        network = Egress(allow=allow or [], deny=deny or []) if allow or deny else None
    except InvalidInput as exc:
        raise typer.BadParameter(str(exc), param_hint="'--allow'") from None

    async def go() -> int:
        try:
            async for ev in _events(
                code, language, data, forward, limits, variables, list(args or []), network
            ):
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
