"""A session's Python kernel: one interpreter kept between runs, one namespace.

Agent side, :class:`Kernel` forks it on a session's first cell and hands it each cell as
``{"path": FILE}`` with three descriptors (that run's stdin, stdout and stderr pipes) over
a Unix socket. Kernel side, :func:`serve_cells` runs each cell, lets go of the pipes (so
the agent sees end-of-file) and answers ``{"exit_code": N}``. A value of a cell's last
expression is printed, as in a notebook or a REPL.

A cell ends, the interpreter does not: ``sys.exit(n)``/``exit()`` end the cell with
status ``n``. Top-level ``await`` works, as in Jupyter: such a cell runs on one event loop
kept for the kernel's life (tasks it leaves survive to the next awaiting cell). Only the
interpreter's own end loses the namespace (a kill at a limit, ``os._exit``, a crash): the
agent notes it (:attr:`Kernel.lost`) and the next exit report says ``state_lost``.
"""

from __future__ import annotations

import json
import os
import signal
import sys

from . import _display
from ._inline import exit_status, flush_stdio, fresh_stdio, new_main, report_exception
from ._procs import prepare_child

TYPE_CHECKING = False
if TYPE_CHECKING:
    from asyncio import AbstractEventLoop
    from collections.abc import Coroutine
    from socket import socket
    from types import CodeType, TracebackType
    from typing import Any, NoReturn

    from .._protocol import RunJob

KERNEL_CPU = 3600  # the kernel's RLIMIT_CPU: cumulative over its cells, so not the run's
CO_COROUTINE = 0x80  # inspect.CO_COROUTINE: a cell with top-level await (no inspect import)


class Kernel:
    """The agent's handle on the session's kernel process (``pid`` 0: none running).

    ``lost``: a kernel ended (its namespace with it) and no exit report has said so yet.
    Set wherever its end is seen (:meth:`ended`), taken by the next kernel run's report.
    """

    def __init__(self) -> None:
        self.pid = 0
        self.sock: socket | None = None
        self.lost = False

    def cell(self, job: RunJob, fds: tuple[int, int, int], cwd: str) -> int:
        """Hand one run to the kernel, starting it if needed; the kernel's pid."""
        import socket

        argv = [str(a) for a in job["argv"]]  # python3 FILE ARGS...
        env = job.get("env") or {}
        message = json.dumps({"path": argv[1], "args": argv[2:], "env": env}).encode()
        if self.sock is not None and self._gone():
            self.ended()  # it died between runs and is not reaped yet: start anew
        for _attempt in range(2):
            if self.sock is None:
                self._start(job, fds, cwd)
            assert self.sock is not None
            try:
                socket.send_fds(self.sock, [message], list(fds))
                return self.pid
            except OSError:  # it ended as the cell was sent: a fresh one takes it
                os.kill(self.pid, signal.SIGKILL)
                try:
                    os.waitpid(self.pid, 0)
                except ChildProcessError:
                    pass
                self.ended()
        raise OSError("the session's kernel could not be started")

    def _start(self, job: RunJob, fds: tuple[int, int, int], cwd: str) -> None:
        import socket

        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        limits: dict[str, Any] = dict(job.get("rlimits") or {})
        limits["cpu"] = max(int(limits.get("cpu", 0)), KERNEL_CPU)
        pid = os.fork()
        if pid == 0:
            try:
                parent.close()
                _argv, env = prepare_child(job, fds, cwd, keep_fd=child.fileno(), rlimits=limits)
                serve_cells(3, env, cwd)
            finally:
                os._exit(126)
        child.close()
        self.pid, self.sock = pid, parent

    def _gone(self) -> bool:
        """Whether the kernel has ended (then it is reaped here)."""
        try:
            pid, _status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            return True
        return pid != 0

    def answer(self) -> int | None:
        """The exit status (as ``wait`` gives it) the kernel sent; None: it sent nothing
        usable (a broken kernel is killed, so the run ends by its death)."""
        assert self.sock is not None
        try:
            data = self.sock.recv(4096)
        except OSError:
            data = b""
        if not data:
            return None
        try:  # the kernel is user code: its answer is not trusted
            return (int(json.loads(data)["exit_code"]) & 0xFF) << 8
        except (ValueError, KeyError, TypeError):
            os.kill(self.pid, signal.SIGKILL)
            return None

    def ended(self) -> None:
        """The kernel process has ended (and was reaped): its state is gone."""
        self.forget()
        self.lost = True

    def take_lost(self) -> bool:
        """Whether a kernel's state was lost since the last report that said so."""
        lost, self.lost = self.lost, False
        return lost

    def forget(self) -> None:
        """Let go of the kernel: close our end of its socket."""
        if self.sock is not None:
            self.sock.close()
        self.pid, self.sock = 0, None


class Cells:
    """Runs cells in one namespace; top-level ``await`` on the kernel's event loop."""

    def __init__(self, namespace: dict[str, Any]) -> None:
        self.namespace = namespace
        self.loop: AbstractEventLoop | None = None  # made by the first cell that awaits

    def run(self, path: str) -> None:
        """Run the cell in ``path``; its last expression's value is shown. A cell that
        awaits anywhere runs whole as one task of the kernel's loop, as in Jupyter (so
        its other statements see a running loop: ``asyncio.create_task`` works)."""
        import ast

        flags = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
        with open(path, "rb") as f:
            tree = ast.parse(f.read(), path)
        last = tree.body[-1] if tree.body and isinstance(tree.body[-1], ast.Expr) else None
        if last is not None:
            tree.body.pop()
        body = compile(tree, path, "exec", flags=flags, dont_inherit=True)
        value = None
        if last is not None:
            expr = ast.Expression(last.value)
            value = compile(expr, path, "eval", flags=flags, dont_inherit=True)
        if (body.co_flags | (value.co_flags if value else 0)) & CO_COROUTINE:
            value = self.on_loop(self.awaiting(body, value))
        else:
            exec(body, self.namespace)  # noqa: S102 - that is the job
            if value is not None:
                value = eval(value, self.namespace)  # noqa: S307 - the user's own expression
        if value is not None:
            _display.result(value)

    async def awaiting(self, body: CodeType, last: CodeType | None) -> Any:
        """A cell with top-level ``await``: its statements, then its last expression's
        value (either may be a coroutine: compiled with top-level await, it is one)."""
        step = eval(body, self.namespace)  # noqa: S307 - the user's own cell
        if body.co_flags & CO_COROUTINE:
            await step
        if last is None:
            return None
        value = eval(last, self.namespace)  # noqa: S307 - the user's own expression
        if last.co_flags & CO_COROUTINE:
            value = await value
        return value

    def on_loop(self, cell: Coroutine[Any, Any, Any]) -> Any:
        """Run ``cell`` to its end on the kernel's event loop, made on first use."""
        import asyncio  # only a cell that awaits pays for it

        if self.loop is None or self.loop.is_closed():
            self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)  # get_event_loop() in a later cell finds it
        return self.loop.run_until_complete(cell)


def user_frames(tb: TracebackType | None, path: str) -> int:
    """How many leading traceback entries are the kernel's (and asyncio's), before the
    first of the cell's own file; all of them when the cell has none (a syntax error)."""
    skip = 0
    entry = tb
    while entry is not None and entry.tb_frame.f_code.co_filename != path:
        entry = entry.tb_next
        skip += 1
    return skip


def serve_cells(sock_fd: int, env: dict[str, str], workdir: str) -> NoReturn:
    """The kernel's loop: run each cell sent over ``sock_fd`` in one ``__main__``."""
    import socket

    os.environ.clear()
    os.environ.update(env)
    started_with = dict(env)
    sock = socket.socket(fileno=sock_fd)
    cells = Cells(new_main().__dict__)
    sys.path[0:0] = [workdir]
    while True:
        msg, fds, _, _ = socket.recv_fds(sock, 65536, 3)
        if not msg or len(fds) != 3:
            os._exit(0)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        cell = json.loads(msg)  # the agent's own message
        path = cell["path"]
        # a cell's env= sets what it asks for beyond the kernel's start: from that cell
        # on, like any change of os.environ a cell makes (as in a notebook)
        wanted = {str(k): str(v) for k, v in (cell.get("env") or {}).items()}
        os.environ.update({k: v for k, v in wanted.items() if started_with.get(k) != v})
        sys.argv = [path, *cell.get("args", [])]
        fresh_stdio(dict(os.environ))  # unbuffered in a session (its live_env)
        _display.install()
        code = 0
        try:
            cells.run(path)
            _display.end_cell()
        except SystemExit as exc:  # the cell ends with its status, the interpreter lives on
            code = exit_status(exc)
        except BaseException:  # noqa: BLE001 - reported as the interpreter would
            report_exception(skip=user_frames(sys.exc_info()[2], path))
            code = 1
        flush_stdio()
        null = os.open("/dev/null", os.O_RDWR)
        for target in (0, 1, 2):
            os.dup2(null, target)
        os.close(null)
        sock.send(json.dumps({"exit_code": code}).encode())
