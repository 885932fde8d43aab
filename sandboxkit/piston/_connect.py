"""``/api/v2/connect``: Piston's interactive WebSocket, over ``Sandbox.start``.

The client sends ``init`` (an execute request; its stdin is not used) within a second,
then ``data`` (stdin) and ``signal`` messages as the program runs. The server answers
``runtime``, then for each stage ``stage``, ``data`` (stdout, stderr) and ``exit``
(code and signal), and closes with 4999 "Job Completed". Protocol faults close with
Piston's codes: 4000 Already Initialized, 4001 Initialization Timeout, 4002 Notified Error
(after an ``error`` message), 4003 Not yet Initialized, 4004 Can only write to stdin,
4005 Invalid signal.

Where this differs from Piston, it is because a sandbox run is one step: the compile
stage's ``exit`` comes once the compiler is done, and the compiler's warnings (when it
succeeded) are streamed after ``stage: run``; a ``signal`` stops the program (SIGKILL,
whichever signal is named: the sandbox delivers no other).
"""

from __future__ import annotations

import contextlib
import json
import logging
from typing import Any

import anyio
from anyio.abc import TaskGroup
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from .._errors import InvalidInput, SandboxkitError
from .._process import Process
from .._sandbox import Sandbox
from ._catalogue import SIGNALS
from ._job import Job, JobError, check_request, parse_job
from ._result import ending
from ._service import PistonService

log = logging.getLogger("sandboxkit.piston")

INIT_TIMEOUT = 1.0  # seconds a client has to send init, as in Piston


class _Closed(Exception):
    """The connection is closed (by us, with a code, or by the client)."""


class Connection:
    """One client's WebSocket: its job, and the program's stdin once it runs."""

    def __init__(self, ws: WebSocket, service: PistonService) -> None:
        self.ws = ws
        self.service = service
        self.initialized = False
        self.proc: Process | None = None
        self.pending: list[str] = []  # stdin sent before the program started
        self.kill_pending = False  # a signal sent before the program started
        self.closed = False
        self._tasks: TaskGroup | None = None

    async def serve(self) -> None:
        await self.ws.accept()
        try:
            async with anyio.create_task_group() as tasks:
                self._tasks = tasks
                tasks.start_soon(self._init_deadline)
                with contextlib.suppress(_Closed):
                    await self._read()
                self._stop()
        finally:
            if self.proc is not None:
                await self.proc.aclose()

    async def _init_deadline(self) -> None:
        await anyio.sleep(INIT_TIMEOUT)
        if not self.initialized:
            await self._close(4001, "Initialization Timeout")

    def _stop(self) -> None:
        """End every task of this connection (the reader, the job)."""
        if self._tasks is not None:
            self._tasks.cancel_scope.cancel()

    async def _send(self, message: dict[str, Any]) -> None:
        if self.closed:
            raise _Closed
        try:
            await self.ws.send_text(json.dumps(message))
        except (WebSocketDisconnect, RuntimeError):
            self.closed = True
            raise _Closed from None

    async def _close(self, code: int, reason: str) -> None:
        """Close with ``code`` and stop everything this connection runs."""
        if not self.closed:
            self.closed = True
            if self.ws.application_state != WebSocketState.DISCONNECTED:
                with contextlib.suppress(WebSocketDisconnect, RuntimeError):
                    await self.ws.close(code, reason)
        self._stop()

    async def _fail(self, message: str) -> None:
        """Piston's notified error: an ``error`` message, then close 4002."""
        with contextlib.suppress(_Closed):
            await self._send({"type": "error", "message": message})
        await self._close(4002, "Notified Error")

    async def _read(self) -> None:
        while not self.closed:
            try:
                received = await self.ws.receive()
            except (WebSocketDisconnect, RuntimeError):
                received = {"type": "websocket.disconnect"}
            if received["type"] == "websocket.disconnect":
                self.closed = True
                self._stop()
                return
            text = received.get("text") or (received.get("bytes") or b"").decode("utf-8", "replace")
            try:
                message = json.loads(text)
                if not isinstance(message, dict):
                    raise JobError("a message must be a JSON object")
                await self._handle(message)
            except ValueError as exc:
                await self._fail(str(exc))
            except JobError as exc:
                await self._fail(exc.message)

    async def _handle(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "init":
            if self.initialized:
                await self._close(4000, "Already Initialized")
                return
            check_request(message)  # before the runtimes are asked for, as Piston orders it
            runtimes = await self.service.runtimes()
            job = parse_job(message, runtimes, self.service.settings, live=True)
            self.initialized = True
            if self._tasks is not None:
                self._tasks.start_soon(self._run, job)
        elif kind == "data":
            if not self.initialized:
                await self._close(4003, "Not yet initialized")
            elif message.get("stream") != "stdin":
                await self._close(4004, "Can only write to stdin")
            else:
                await self._write(str(message.get("data", "")))
        elif kind == "signal":
            if not self.initialized:
                await self._close(4003, "Not yet initialized")
            elif message.get("signal") not in SIGNALS.values():
                await self._close(4005, "Invalid signal")
            else:
                await self._kill()

    async def _kill(self) -> None:
        """Stop the program; asked before it started (it is still being compiled or
        started), it is stopped as soon as it starts."""
        if self.proc is None:
            self.kill_pending = True
            return
        with contextlib.suppress(SandboxkitError):  # it has ended already
            await self.proc.kill()

    async def _write(self, data: str) -> None:
        if self.proc is None:
            self.pending.append(data)
            return
        with contextlib.suppress(SandboxkitError):  # the program has ended: nobody reads
            await self.proc.write(data)

    async def _run(self, job: Job) -> None:
        try:
            async with self.service.slots:
                await self._stages(job)
            await self._close(4999, "Job Completed")
        except _Closed:
            self._stop()

    async def _stages(self, job: Job) -> None:
        rt = job.runtime
        compiled = rt.spec.compiled
        await self._send({"type": "runtime", "language": rt.language, "version": str(rt.version)})
        await self._send({"type": "stage", "stage": "compile" if compiled else "run"})
        try:
            # returns once the program runs: after its compile step, if it has one
            self.proc = await Sandbox.start(
                job.code,
                language=rt.spec.name,
                files=job.files,
                limits=job.limits,
                args=job.args,
                pool=self.service.pool,
            )
        except (InvalidInput, SandboxkitError) as exc:
            await self._fail(str(exc))
            return
        ended = self.proc.result
        failed_compile = ended is not None and ended.status == "compile_error"
        if compiled and not failed_compile:
            await self._send({"type": "exit", "stage": "compile", "code": 0, "signal": None})
            await self._send({"type": "stage", "stage": "run"})
        for data in self.pending:
            await self._write(data)
        self.pending.clear()
        if self.kill_pending:
            await self._kill()
        try:
            async for event in self.proc:
                if event.kind == "exit" and event.result is not None:
                    end = ending(event.result, None)
                    step = "compile" if failed_compile else "run"
                    await self._send(
                        {"type": "exit", "stage": step, "code": end.code, "signal": end.signal}
                    )
                elif event.kind in ("stdout", "stderr"):
                    await self._send({"type": "data", "stream": event.kind, "data": event.data})
        except SandboxkitError as exc:
            log.warning("interactive %s-%s failed: %s", rt.language, rt.version, exc)
            await self._fail(str(exc))


async def serve_connection(ws: WebSocket, service: PistonService) -> None:
    """Run Piston's interactive protocol on ``ws`` until the job ends or the client goes."""
    await Connection(ws, service).serve()
