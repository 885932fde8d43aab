"""JavaScript contexts of the code interpreter: one node process per context.

Each JavaScript context runs :file:`_jskernel.js` as a background process of the
session, started at its first cell: the process is the context (its globals stay
between cells), restarting or removing the context kills it, and it ends with the
sandbox. A cell goes to its stdin as one JSON line with a token of its own; the kernel
ends the cell's output on both streams with that token (then, on stdout, the value or
the error), so the server knows where the cell's output stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import signal
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._background import BackgroundProcess
from .._errors import SandboxError, SandboxkitError
from .._models import Event
from .._sandbox import Sandbox

KERNEL = (Path(__file__).parent / "_jskernel.js").read_text(encoding="utf-8")
KERNEL_PATH = "/tmp/.sandboxkit-e2b-jskernel.js"
SEND_WAIT = 10.0  # seconds a cell may take to go into the kernel's stdin

_stopping: set[asyncio.Task[None]] = set()  # kernels killed after their cell was dropped


class KernelLost(Exception):
    """The kernel's process is gone (a sandbox paused and resumed keeps its files, not
    its processes): the cell did not go in, and may go to a new kernel."""


class Marked:
    """One of the kernel's streams during a cell: the text before the cell's token is
    the cell's output; what follows the token, up to a newline, is the kernel's reply.
    The start of a token split between two reads waits for the rest."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.pending = ""
        self.after: str | None = None

    def feed(self, text: str) -> str:
        """The cell's output in ``text`` (nothing once the token came)."""
        if self.after is not None:
            self.after += text
            return ""
        text = self.pending + text
        at = text.find(self.token)
        if at >= 0:
            self.pending, self.after = "", text[at + len(self.token) :]
            return text[:at]
        keep = next(
            (
                n
                for n in range(min(len(text), len(self.token) - 1), 0, -1)
                if self.token.startswith(text[-n:])
            ),
            0,
        )
        self.pending = text[len(text) - keep :]
        return text[: len(text) - keep]

    def rest(self) -> str:
        """Output held back for a token that never came (the kernel ended)."""
        text, self.pending = self.pending, ""
        return text

    @property
    def done(self) -> bool:
        return self.after is not None and "\n" in self.after

    def reply(self) -> dict[str, Any]:
        body = (self.after or "").split("\n", 1)[0]
        try:
            reply = json.loads(body) if body else {}
        except ValueError:
            return {}
        return reply if isinstance(reply, dict) else {}


@dataclass
class Kernel:
    """A context's node process. Its output is read only while a cell runs (no polling
    of the sandbox between cells), by a handle of that cell's: a young handle polls
    often (a quick cell ends within milliseconds), an old one every 10-200 ms."""

    session: Sandbox
    process: BackgroundProcess

    @classmethod
    async def start(cls, session: Sandbox, cwd: str, env: Mapping[str, str]) -> Kernel:
        await session.write_file(KERNEL_PATH, KERNEL)
        process = await session.start(["node", KERNEL_PATH], env=dict(env), cwd=cwd)
        assert isinstance(process, BackgroundProcess)  # a session's argv start is one
        return cls(session, process)

    async def submit(self, code: str, env: Mapping[str, str]) -> tuple[str, BackgroundProcess]:
        """Send a cell (run once the one before it ended): the token ending its output
        and a handle reading from there (output the kernel wrote between cells, a
        timer's, is not the cell's and is left unread). :class:`KernelLost` when the
        cell cannot go in."""
        try:
            reader = await self.session.connect(self.process.pid)
        except SandboxkitError as exc:
            raise KernelLost(str(exc)) from exc
        token = secrets.token_hex(16)
        message = json.dumps({"token": token, "code": code, "env": dict(env)}) + "\n"
        await self._send(reader, message)
        return token, reader

    @staticmethod
    async def _send(reader: BackgroundProcess, message: str) -> None:
        data = message.encode()
        deadline = time.monotonic() + SEND_WAIT
        while data:
            try:
                taken = await reader.write(data)
            except SandboxkitError as exc:
                raise KernelLost(str(exc)) from exc
            data = data[taken:]
            if data and time.monotonic() > deadline:
                raise SandboxError("the JavaScript kernel does not take its input")

    async def stop(self) -> None:
        with contextlib.suppress(SandboxkitError):  # it may have ended, or its sandbox
            await self.process.kill(signal.SIGKILL)

    def stop_later(self) -> None:
        """:meth:`stop` from code that may not wait (a response dropped mid-cell)."""
        task = asyncio.get_running_loop().create_task(self.stop())
        _stopping.add(task)
        task.add_done_callback(_stopping.discard)


def _error(name: str, value: str, traceback: str = "") -> dict[str, Any]:
    return {"type": "error", "name": name, "value": value, "traceback": traceback}


async def run_cell(
    kernel: Kernel, token: str, reader: BackgroundProcess, seconds: float
) -> AsyncIterator[dict[str, Any]]:
    """The cell submitted with ``token``, read by ``reader``: ``stdout``/``stderr``
    items as its output comes (raw text; the caller makes lines of it), then its result
    or error as E2B's lines. Ends with ``{"type": "gone"}`` when the kernel cannot be used again (it
    ended, or the cell ran past ``seconds`` and it was killed)."""
    marks = {"stdout": Marked(token), "stderr": Marked(token)}
    finished = False
    try:
        deadline = time.monotonic() + seconds
        ended: Event | None = None
        # a read given up at the deadline is safe: the next read starts where this began
        events = aiter(reader)
        try:
            while not all(mark.done for mark in marks.values()):
                try:
                    event = await asyncio.wait_for(
                        anext(events), max(0.0, deadline - time.monotonic())
                    )
                except TimeoutError:
                    break
                except StopAsyncIteration:  # pragma: no cover - an exit event comes first
                    ended = Event(kind="exit", result=reader.result)
                    break
                if event.kind in marks:
                    if text := marks[event.kind].feed(event.data):
                        yield {"type": event.kind, "text": text}
                elif event.kind == "exit":
                    ended = event
                    break
        finally:
            if isinstance(events, AsyncGenerator):
                await events.aclose()
        finished = True
        if not all(mark.done for mark in marks.values()):
            for kind, mark in marks.items():
                if text := mark.rest():
                    yield {"type": kind, "text": text}
            if ended is None:
                await kernel.stop()
                yield _error(
                    "TimeoutError",
                    f"the cell ran past {seconds:.0f} s: its context's JavaScript kernel "
                    "was stopped (its variables are gone; the next cell starts a new one)",
                )
            else:
                result = ended.result
                status: object = "?"
                if result is not None:
                    status = result.exit_code if result.exit_code is not None else result.signal
                yield _error(
                    "KernelExited",
                    f"the context's JavaScript kernel ended (status {status}); the next "
                    "cell starts a new one",
                )
            yield {"type": "gone"}
            return
        reply = marks["stdout"].reply()
        if isinstance(reply.get("text"), str):
            yield {"type": "result", "text": reply["text"], "is_main_result": True}
        error = reply.get("error")
        if isinstance(error, dict):
            yield _error(
                str(error.get("name") or "Error"),
                str(error.get("value") or ""),
                str(error.get("traceback") or ""),
            )
    finally:
        if not finished:  # the response was dropped mid-cell: the kernel is still in it
            kernel.stop_later()
