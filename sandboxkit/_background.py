"""Background processes and terminals of a session (``sb.start(cmd, shell=True)``,
``sb.connect(pid)``, ``sb.terminal()``): handles that poll the agent for output.

The agent keeps each background process's output in numbered chunks (see
``agent/_bg.py``); a handle remembers the last number it read, so it gets what was
written since it started or connected, and dropping a handle stops nothing: the process
runs on until it ends, is killed (``sb.kill``) or the session closes.
"""

from __future__ import annotations

import asyncio
import codecs
import signal as signals
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from types import TracebackType
from typing import Any

from ._errors import SandboxError, SandboxFileError
from ._models import Event, RunResult

POLL_MIN = 0.01  # seconds between polls while output flows
POLL_MAX = 0.2  # ... and at most, while nothing comes
# ... but sooner while the handle is young: most commands an agent or an E2B app runs
# (echo, ls, cat) end within a few milliseconds, and the backoff above made each wait for
# a poll 10-40 ms after its end. Until POLL_MIN, the pause is a quarter of the time since
# the start (at least POLL_FIRST): the wait after an end is at most a quarter of the run,
# for about ten polls (each one round trip to the agent, well under a millisecond).
POLL_FIRST = 0.002

# one job to the agent, its reply and data (the session runs it under its lock)
Call = Callable[[Mapping[str, object]], Awaitable[tuple[Mapping[str, Any], bytes]]]


def refused(reply: Mapping[str, Any], operation: str, what: str) -> None:
    if not reply.get("ok"):
        reason = str(reply.get("reason") or "io_error")
        raise SandboxFileError(operation, what, reason, str(reply.get("error") or ""))


class BackgroundProcess:
    """A process started in the background of a session, or connected to by pid.

    ::

        proc = await sb.start("python -m http.server 8000", shell=True, cwd="/tmp")
        await sb.run("import urllib.request as u; print(u.urlopen('http://127.0.0.1:8000').status)")
        await proc.kill()

    Iterating gives ``stdout``/``stderr`` events as they are read, then one ``exit``;
    :meth:`wait` collects them into a :class:`RunResult`. Leaving it (or ``async with``)
    does not stop the process.
    """

    def __init__(self, call: Call, kill: Callable[..., Awaitable[None]], pid: int, after: int = 0):
        self._call = call
        self._kill = kill
        self.pid = pid
        self._after = after
        self._decoders = {
            name: codecs.getincrementaldecoder("utf-8")("replace") for name in ("stdout", "stderr")
        }
        self._out: dict[str, bytearray] = {"stdout": bytearray(), "stderr": bytearray()}
        self._started = time.monotonic()
        self.result: RunResult | None = None

    async def _poll(self) -> tuple[list[Event], Mapping[str, Any]]:
        reply, data = await self._call({"op": "proc_read", "pid": self.pid, "after": self._after})
        refused(reply, "read the output of", str(self.pid))
        events: list[Event] = []
        at = 0
        for _seq, stream, length in reply.get("chunks") or []:
            chunk = data[at : at + int(length)]
            at += int(length)
            self._out[str(stream)] += chunk
            text = self._decoders[str(stream)].decode(chunk)
            events.append(Event(kind=stream, data=text, data_bytes=chunk))
        self._after = int(reply.get("next") or self._after)
        return events, reply

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._events()

    async def _events(self) -> AsyncIterator[Event]:
        if self.result is not None:
            return
        pause = POLL_MIN
        while True:
            events, reply = await self._poll()
            for event in events:
                yield event
            if reply.get("done") or (not reply.get("running") and not events):
                self.result = self._result(reply)
                yield Event(kind="exit", result=self.result)
                return
            young = max(POLL_FIRST, (time.monotonic() - self._started) / 4)
            if young < POLL_MIN:
                pause = young
            else:
                pause = POLL_MIN if events else min(POLL_MAX, max(POLL_MIN, pause * 2))
            await asyncio.sleep(pause)

    def _result(self, reply: Mapping[str, Any]) -> RunResult:
        code, sig = reply.get("exit_code"), reply.get("signal")
        return RunResult(
            status="ok" if code == 0 else "error",
            exit_code=code,
            signal=sig,
            stdout_bytes=bytes(self._out["stdout"]),
            stderr_bytes=bytes(self._out["stderr"]),
            truncated=bool(reply.get("dropped")),
            duration=time.monotonic() - self._started,
        )

    async def wait(self, timeout: float | None = None) -> RunResult:
        """Wait for the process to end (``TimeoutError`` past ``timeout``); its result,
        with the output this handle read."""

        async def drain() -> None:
            async for _ in self._events():
                pass

        await asyncio.wait_for(drain(), timeout)
        if self.result is None:  # pragma: no cover - _events ends with a result
            raise SandboxError("the process ended without a result")
        return self.result

    async def write(self, data: str | bytes) -> int:
        """Send ``data`` to its stdin (a terminal: as typed); the bytes taken."""
        import base64

        raw = data.encode() if isinstance(data, str) else bytes(data)
        job = {"op": "proc_write", "pid": self.pid, "data": base64.b64encode(raw).decode()}
        reply, _ = await self._call(job)
        refused(reply, "write to", str(self.pid))
        return int(reply.get("written") or 0)

    async def close_stdin(self) -> None:
        reply, _ = await self._call({"op": "proc_write", "pid": self.pid, "eof": True})
        refused(reply, "close the stdin of", str(self.pid))

    async def kill(self, signal: int = signals.SIGTERM, *, grace: float = 3.0) -> None:
        """Signal it and everything it started; past ``grace`` seconds, SIGKILL."""
        await self._kill(self.pid, signal, grace=grace)

    async def __aenter__(self) -> BackgroundProcess:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop reading; the process itself runs on (``kill`` ends it)."""


class Terminal(BackgroundProcess):
    """A shell on a pseudo-terminal (``sb.terminal(cols, rows)``): ``write`` what is
    typed, ``read`` what the screen gets, ``resize``, ``kill``."""

    async def read(self, timeout: float = 1.0) -> bytes:
        """What the terminal printed since the last read, waiting up to ``timeout``
        seconds for something; b"" when nothing came (or it ended)."""
        deadline = time.monotonic() + timeout
        pause = POLL_MIN
        while True:
            events, reply = await self._poll()
            data = b"".join(e.data_bytes for e in events)
            if data or not reply.get("running") or time.monotonic() >= deadline:
                if not reply.get("running") and reply.get("done"):
                    self.result = self._result(reply)
                return data
            await asyncio.sleep(min(pause, max(0.0, deadline - time.monotonic())))
            pause = min(POLL_MAX, pause * 2)

    async def resize(self, cols: int, rows: int) -> None:
        reply, _ = await self._call(
            {"op": "proc_resize", "pid": self.pid, "cols": int(cols), "rows": int(rows)}
        )
        refused(reply, "resize the terminal of", str(self.pid))

    @property
    def exit_code(self) -> int | None:
        return None if self.result is None else self.result.exit_code
