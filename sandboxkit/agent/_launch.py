"""The launcher: exec'd programs started by a fork of a small C process (``launch.c``,
compiled into every image that has a C compiler) instead of a fork of the agent.

A fork copies the forking process's page tables and write-protects its pages; the
agent then takes a copy-on-write fault for each page it writes, and the child's exec
tears the copy down. From the agent's ~12 MB of Python that is ~2 ms of CPU per program
(measured: a judge test's container CPU was agent 37 %, the forked child before its exec
47 %, the program 16 %); from the launcher's ~1 MB it is a few tens of microseconds.
The launcher makes each child with ``CLONE_PARENT``, so it is the agent's own child:
waited for, measured and reaped as a forked one.

The agent starts it first of all, as uid 0, and it separates itself as the agent does
(``_privs.separate``): the program can neither signal nor trace it. It is one of the
sandbox's processes (the pids limit counts it) that every run's kill and the reuse
mode's scrub leave alone (``_procs.FIXED``). Where anything fails (no launcher in the
image, orders too big, the launcher gone), the run forks as before.
"""

from __future__ import annotations

import os
import resource
import socket
import struct

from . import _privs, _procs

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from .._protocol import RunJob

LAUNCHER = "/opt/sandboxkit/launch"
MAX_ORDERS = 65536  # launch.c's MAX_MESSAGE
ANSWER_WAIT = 2.0  # seconds: a launcher that does not answer is given up


class Launcher:
    """The agent's end of the launcher: its pid and socket."""

    def __init__(self, pid: int, sock: socket.socket) -> None:
        self.pid, self.sock = pid, sock
        sock.settimeout(ANSWER_WAIT)

    @classmethod
    def start(cls, workdir: str) -> Launcher | None:
        """In the agent, before ``_privs.separate``: the launcher, where the image has one
        and the agent will be apart from the program (else None: runs fork as before)."""
        program = _privs.apart_uid(workdir)
        if program is None or _privs.nproc is not None:
            return None  # not apart, or gVisor (its own process accounting): as before
        if not os.access(LAUNCHER, os.X_OK):
            return None
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = os.fork()
        if pid == 0:
            try:
                null = os.open(os.devnull, os.O_RDWR)
                for fd in (0, 1, 2):
                    os.dup2(null, fd)
                os.dup2(theirs.fileno(), 3)
                os.closerange(4, 65536)
                argv = [LAUNCHER, str(program), str(_privs.SUPERVISOR_UID)]
                os.execve(LAUNCHER, argv, {})
            finally:
                os._exit(127)
        theirs.close()
        _procs.FIXED.add(pid)
        return cls(pid, mine)

    def spawn(self, job: RunJob, fds: tuple[int, int, int], cwd: str) -> int | None:
        """Start the job's program with ``fds`` as its stdin, stdout and stderr; its pid,
        a child of the agent. None: not started (the run forks it as before); a launcher
        that failed is given up for the sandbox's life."""
        orders = _orders(job, cwd)
        if orders is None:
            return None
        try:
            rights = (socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("3i", *fds))
            self.sock.sendmsg([orders], [rights])
            answer = self.sock.recv(8)
        except OSError:  # gone, or hung (timeout): from now on, runs fork
            self.close()
            return None
        pid = int.from_bytes(answer, "little", signed=True) if len(answer) == 4 else 0
        if pid <= 0:  # clone refused (out of pids, or a kernel without CLONE_PARENT)
            if len(answer) != 4:
                self.close()
            return None
        return pid

    def close(self) -> None:
        """Given up: killed (it could be hung) and left to the next reap; not killed once
        reaped (``_procs.note_exit`` forgets it: its pid may be another's by now)."""
        if self.pid in _procs.FIXED:
            _procs.FIXED.discard(self.pid)
            _procs.kill_each([self.pid])
        self.sock.close()


def usable(launcher: Launcher | None, job: RunJob) -> bool:
    """Whether ``job`` would start by ``launcher`` (alive): a program to exec, not Python
    run inline nor a session kernel's cell."""
    if launcher is None or launcher.pid not in _procs.FIXED:
        return False
    return not job.get("python_inline") and not job.get("kernel")


def _orders(job: RunJob, cwd: str) -> bytes | None:
    """The launcher's message (see launch.c), or None where it cannot carry the job."""
    limits: dict[str, Any] = dict(job.get("rlimits") or {})
    fields: list[str] = [job.get("cwd") or cwd, str(len(limits))]
    try:
        for name, value in limits.items():
            fields += [str(getattr(resource, "RLIMIT_" + name.upper())), str(int(value))]
    except (AttributeError, TypeError, ValueError):
        return None  # the fork path fails it as before
    argv = [str(a) for a in job["argv"]]
    pairs = [(str(k), str(v)) for k, v in (job.get("env") or {}).items()]
    if any(not k or "=" in k for k, _ in pairs):
        return None  # os.execve refuses such a name: the fork path says so as before
    env = [f"{k}={v}" for k, v in pairs]
    fields += [str(len(argv)), *argv, str(len(env)), *env]
    if any("\0" in f for f in fields):
        return None  # exec would refuse it: the fork path says so as before
    data = "\0".join(fields).encode("utf-8", "surrogateescape") + b"\0"
    return data if len(data) <= MAX_ORDERS else None
