"""A session's Python kernel: one interpreter kept between runs, one namespace.

Agent side, :class:`Kernel` forks it on a session's first cell and hands it each cell as
``{"path": FILE}`` with three descriptors (that run's stdin, stdout and stderr pipes) over
a Unix socket. Kernel side, :func:`serve_cells` runs each cell, lets go of the pipes (so
the agent sees end-of-file) and answers ``{"exit_code": N}``. A value of a cell's last
expression is printed, as in a notebook or a REPL.
"""

from __future__ import annotations

import json
import os
import signal
import sys

from ._inline import exit_status, flush_stdio, fresh_stdio, new_main, report_exception
from ._procs import prepare_child

TYPE_CHECKING = False
if TYPE_CHECKING:
    from socket import socket
    from typing import Any, NoReturn

    from .._protocol import RunJob

KERNEL_CPU = 3600  # the kernel's RLIMIT_CPU: cumulative over its cells, so not the run's


class Kernel:
    """The agent's handle on the session's kernel process (``pid`` 0: none running)."""

    def __init__(self) -> None:
        self.pid = 0
        self.sock: socket | None = None

    def cell(self, job: RunJob, fds: tuple[int, int, int], cwd: str) -> int:
        """Hand one run to the kernel, starting it if needed; the kernel's pid."""
        import socket

        if self.sock is None:
            parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            limits: dict[str, Any] = dict(job.get("rlimits") or {})
            limits["cpu"] = max(int(limits.get("cpu", 0)), KERNEL_CPU)
            pid = os.fork()
            if pid == 0:
                try:
                    parent.close()
                    _argv, env = prepare_child(
                        job, fds, cwd, keep_fd=child.fileno(), rlimits=limits
                    )
                    serve_cells(3, env, cwd)
                finally:
                    os._exit(126)
            child.close()
            self.pid, self.sock = pid, parent
        message = json.dumps({"path": str(job["argv"][-1])}).encode()
        socket.send_fds(self.sock, [message], list(fds))
        return self.pid

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

    def forget(self) -> None:
        """The kernel has ended (or must be let go of): close our end of its socket."""
        if self.sock is not None:
            self.sock.close()
        self.pid, self.sock = 0, None


def serve_cells(sock_fd: int, env: dict[str, str], workdir: str) -> NoReturn:
    """The kernel's loop: run each cell sent over ``sock_fd`` in one ``__main__``."""
    import ast
    import socket

    os.environ.clear()
    os.environ.update(env)
    sock = socket.socket(fileno=sock_fd)
    main = new_main()
    sys.path[0:0] = [workdir]
    while True:
        msg, fds, _, _ = socket.recv_fds(sock, 65536, 3)
        if not msg or len(fds) != 3:
            os._exit(0)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        fresh_stdio()
        code = 0
        try:
            path = json.loads(msg)["path"]
            with open(path, "rb") as f:
                tree = ast.parse(f.read(), path)
            last = tree.body[-1] if tree.body and isinstance(tree.body[-1], ast.Expr) else None
            if last is not None:
                tree.body.pop()
            cell = compile(tree, path, "exec", dont_inherit=True)
            exec(cell, main.__dict__)  # noqa: S102 - that is the job
            if last is not None:
                value = eval(  # noqa: S307 - the user's own expression
                    compile(ast.Expression(last.value), path, "eval", dont_inherit=True),
                    main.__dict__,
                )
                if value is not None:
                    print(repr(value))
        except SystemExit as exc:
            status = exit_status(exc)
            flush_stdio()
            os._exit(status)
        except BaseException:  # noqa: BLE001 - reported as the interpreter would
            report_exception()
            code = 1
        flush_stdio()
        null = os.open("/dev/null", os.O_RDWR)
        for target in (0, 1, 2):
            os.dup2(null, target)
        os.close(null)
        sock.send(json.dumps({"exit_code": code}).encode())
