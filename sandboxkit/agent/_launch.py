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

from . import _privs
from ._boot import LAUNCHER_FILE
from ._helper import Helper, keep_only

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from .._protocol import RunJob

MAX_ORDERS = 65536  # launch.c's MAX_MESSAGE


class Launcher(Helper):
    """The agent's end of the launcher: its pid and socket."""

    @classmethod
    def start(cls, workdir: str) -> Launcher | None:
        """In the agent, before ``_privs.separate``, in an image that has the launcher: the
        launcher, where the agent will be apart from the program (else None: runs fork as
        before)."""
        program = _privs.apart_uid(workdir)
        if program is None or _privs.nproc is not None:
            return None  # not apart, or gVisor (its own process accounting): as before
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = os.fork()
        if pid == 0:
            try:
                keep_only(theirs.fileno())
                argv = [LAUNCHER_FILE, str(program), str(_privs.SUPERVISOR_UID)]
                os.execve(LAUNCHER_FILE, argv, {})
            finally:
                os._exit(127)
        theirs.close()
        return cls(pid, mine)

    def spawn(self, job: RunJob, fds: tuple[int, int, int], cwd: str) -> int | None:
        """Start the job's program with ``fds`` as its stdin, stdout and stderr; its pid,
        a child of the agent. None: not started (the run forks it as before); a launcher
        that failed is given up for the sandbox's life."""
        orders = _orders(job, cwd)
        if orders is None:
            return None
        return self.ask(orders, fds)


def usable(launcher: Launcher | None, job: RunJob) -> bool:
    """Whether ``job`` would start by ``launcher`` (alive): a program to exec, not Python
    run inline nor a session kernel's cell."""
    if launcher is None or not launcher.usable():
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
